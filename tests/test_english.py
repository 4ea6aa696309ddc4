"""English front end: normalization golden cases, G2P golden cases, offline guarantee, determinism, cache.

Expected values are written by hand from English usage and the CMU Pronouncing Dictionary, not copied
from the implementation's output.
"""

import json
import os
import subprocess
import sys
import textwrap
import warnings

import pytest

from instructaudio_diffusers.processing.english import (
    ARPABET_PHONES,
    EnglishG2P,
    drop_unsupported,
    normalize_english,
)

NORMALIZATION_CASES = [
    # integers, negatives, decimals, percentages
    ("I have 1,234 apples.", "i have one thousand two hundred thirty four apples ."),
    ("It fell to -5 overnight", "it fell to minus five overnight"),
    ("Pi is about 3.14", "pi is about three point one four"),
    ("Only .5 left", "only point five left"),
    ("Sales rose 50% and then 2.5%", "sales rose fifty percent and then two point five percent"),
    ("Agent 007", "agent zero zero seven"),
    # currency
    ("It costs $5.", "it costs five dollars ."),
    ("It costs $5.50", "it costs five dollars fifty cents"),
    ("Just $1 or $0.99", "just one dollar or ninety nine cents"),
    ("£3.20, €10 and ¥100", "three pounds twenty pence , ten euros and one hundred yen"),
    ("A $2.5 million deal", "a two point five million dollars deal"),
    # years and decades
    ("In 1990 and 2005", "in nineteen ninety and two thousand five"),
    ("By 2025, not 1900 or 1905", "by twenty twenty five , not nineteen hundred or nineteen oh five"),
    ("Music of the 1990s", "music of the nineteen nineties"),
    ("Back in the '90s", "back in the nineties"),
    # dates
    ("Born on March 3, 2024.", "born on march third , twenty twenty four ."),
    ("Due 3/14/2024", "due march fourteenth , twenty twenty four"),
    ("Due 2024-03-14", "due march fourteenth , twenty twenty four"),
    ("On 3 March 2024", "on the third of march twenty twenty four"),
    # times
    ("Meet at 3:30 pm", "meet at three thirty p m"),
    ("The train leaves at 10:05", "the train leaves at ten oh five"),
    ("Wake up at 7 am", "wake up at seven ay m"),
    ("Lunch at 12:00", "lunch at twelve o'clock"),
    ("Home by 5 p.m. Then dinner.", "home by five p m . then dinner ."),
    # ordinals, fractions, ranges, units
    ("The 1st, 22nd and 103rd runners", "the first , twenty second and one hundred third runners"),
    ("Add 1½ cups, then 3/4 cup", "add one and a half cups , then three quarters cup"),
    ("For 10-20 people", "for ten to twenty people"),
    ("It was 25°C and 5 km away", "it was twenty five degrees celsius and five kilometers away"),
    # phone numbers, digit by digit
    ("Call 555-1234 now", "call five five five , one two three four now"),
    (
        "Dial +1 415 555 0100",
        "dial plus one , four one five , five five five , zero one zero zero",
    ),
    # abbreviations: expanded, and their periods are not pauses
    ("Dr. Smith is here", "doctor smith is here"),
    ("Mr. and Mrs. Smith met Ms. Jones", "mister and missus smith met miz jones"),
    ("We flew to St. Louis", "we flew to saint louis"),
    ("She lives on Main St.", "she lives on main street ."),
    ("Apples, pears, etc. are fruit", "apples , pears , et cetera are fruit"),
    ("Fruit, e.g. apples, i.e. food", "fruit , for example apples , that is food"),
    ("Cats vs. dogs", "cats versus dogs"),
    ("Room No. 5", "room number five"),
    ("Ask Prof. Lee or John Smith Jr. today", "ask professor lee or john smith junior today"),
    ("It weighs approx. 10 kg", "it weighs approximately ten kilograms"),
    ("The U.S. Army", "the u s army"),
    # acronyms: dictionary words stay words, others are spelled; ALL-CAPS text is not acronyms
    ("NASA and the FBI", "nasa and the f b i"),
    ("Watch TV in the US", "watch t v in the u s"),
    ("The ABC news in the U.S.A.", "the ay b c news in the u s ay ."),
    ("Plan A, or plan B.", "plan ay , or plan b ."),
    ("STOP THE CAR NOW", "stop the car now"),
    # punctuation, quotes, brackets, apostrophes, hyphens, full-width forms
    ("Wait; listen: now - go", "wait , listen , now , go"),
    ("Well… maybe...", "well . maybe ."),
    ('"Hello" (she said) [quietly]', "hello she said quietly"),
    ("Really?! Wow!!!", "really ? wow !"),
    ("你好 Hello，world！Right？", "hello , world ! right ?"),
    ("Don't stop rock'n'roll, it's well-known", "don't stop rock'n'roll , it's well-known"),
    ("Café “naïve” — yes", "cafe naive , yes"),
]


@pytest.mark.parametrize(("text", "expected"), NORMALIZATION_CASES)
def test_normalize_english_golden(text, expected):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the Han characters in one case are dropped with a warning
        assert normalize_english(text) == expected


def test_abbreviation_periods_are_not_pauses():
    normalized = normalize_english("Mr. Smith, Dr. Jones, Prof. Lee and Ms. Wu met at St. Mary's, e.g. today")
    assert "." not in normalized.split()
    assert "drive" not in normalized


def test_dropped_characters_are_named_in_a_warning():
    with pytest.warns(UserWarning, match=r"'😀' \(U\+1F600\).*'©' \(U\+00A9\)"):
        assert normalize_english("I love 😀 pizza ©!") == "i love pizza !"


def test_drop_unsupported_folds_and_reports():
    clean, dropped = drop_unsupported("Naïve “quote” 😀 x😀 ★")
    assert clean.startswith('Naive "quote" ')
    assert dropped == ["😀", "★"]
    assert drop_unsupported("plain text, 3.5%") == ("plain text, 3.5%", [])


def test_nothing_speakable_gives_empty_string():
    with pytest.warns(UserWarning):
        assert normalize_english("😀 ★") == ""
    assert normalize_english(" ... , ") == ""


@pytest.mark.parametrize("function", [normalize_english, drop_unsupported])
def test_normalization_rejects_non_str(function):
    with pytest.raises(ValueError, match="expects a str"):
        function(b"bytes")


def test_arpabet_inventory():
    assert len(ARPABET_PHONES) == 69  # 15 vowels x 3 stresses + 24 consonants
    assert ARPABET_PHONES[:3] == ("AA0", "AA1", "AA2") and ARPABET_PHONES[-1] == "ZH"
    assert list(ARPABET_PHONES) == sorted(set(ARPABET_PHONES))


@pytest.fixture(scope="module")
def g2p():
    return EnglishG2P()


G2P_CASES = [
    # dictionary words
    ("hello world", [["HH", "AH0", "L", "OW1"], ["W", "ER1", "L", "D"]]),
    ("doctor smith", [["D", "AA1", "K", "T", "ER0"], ["S", "M", "IH1", "TH"]]),
    ("music and speech", [["M", "Y", "UW1", "Z", "IH0", "K"], ["AH0", "N", "D"], ["S", "P", "IY1", "CH"]]),
    ("don't", [["D", "OW1", "N", "T"]]),
    ("twelve o'clock", [["T", "W", "EH1", "L", "V"], ["AH0", "K", "L", "AA1", "K"]]),
    # hyphenated and possessive forms built from dictionary words
    ("sun-kissed", [["S", "AH1", "N", "K", "IH1", "S", "T"]]),
    ("the robot's", [["DH", "AH0"], ["R", "OW1", "B", "AA2", "T", "S"]]),
    # homographs in context
    ("i will read it", [["AY1"], ["W", "IH1", "L"], ["R", "IY1", "D"], ["IH1", "T"]]),
    ("i have read it", [["AY1"], ["HH", "AE1", "V"], ["R", "EH1", "D"], ["IH1", "T"]]),
    ("a live show", [["AH0"], ["L", "AY1", "V"], ["SH", "OW1"]]),
    ("we live here", [["W", "IY1"], ["L", "IH1", "V"], ["HH", "IY1", "R"]]),
    ("they record a record", [["DH", "EY1"], ["R", "IH0", "K", "AO1", "R", "D"], ["AH0"], ["R", "EH1", "K", "ER0", "D"]]),
    ("i object to the object", [["AY1"], ["AH0", "B", "JH", "EH1", "K", "T"], ["T", "UW1"], ["DH", "AH0"], ["AA1", "B", "JH", "EH0", "K", "T"]]),
    ("close the door", [["K", "L", "OW1", "Z"], ["DH", "AH0"], ["D", "AO1", "R"]]),
    ("a close friend", [["AH0"], ["K", "L", "OW1", "S"], ["F", "R", "EH1", "N", "D"]]),
    ("the wind", [["DH", "AH0"], ["W", "IH1", "N", "D"]]),
    ("wind the clock", [["W", "AY1", "N", "D"], ["DH", "AH0"], ["K", "L", "AA1", "K"]]),
    ("i used to sing", [["AY1"], ["Y", "UW1", "S", "T"], ["T", "UW1"], ["S", "IH1", "NG"]]),
    ("bass guitar", [["B", "EY1", "S"], ["G", "IH0", "T", "AA1", "R"]]),
    # spelled letters (the normalizer writes the letter A as "ay" so it is never the article)
    ("ay m", [["EY1"], ["EH1", "M"]]),
]  # fmt: skip


@pytest.mark.parametrize(("text", "expected"), G2P_CASES)
def test_g2p_golden(g2p, text, expected):
    assert g2p(text) == expected


def test_g2p_out_of_vocabulary_words(g2p):
    (zorblax,) = g2p("zorblax")
    assert zorblax[0] == "Z" and set(zorblax) <= set(ARPABET_PHONES)
    assert any(phone.endswith("1") for phone in zorblax)  # a primary stress
    # g2p_en's decoder stops at 20 phones; long words must not be cut off.
    (long_word,) = g2p("pneumonoultramicroscopicsilicovolcanoconiosis")
    assert len(long_word) > 30 and set(long_word) <= set(ARPABET_PHONES)


def test_g2p_one_list_per_token(g2p):
    text = "the quick brown zorblaxian fox jumped over well-known dogs' tails"
    phones = g2p(text)
    assert len(phones) == len(text.split())
    assert all(phone_list and set(phone_list) <= set(ARPABET_PHONES) for phone_list in phones)
    assert g2p("") == [] and g2p("hello ,") == [["HH", "AH0", "L", "OW1"], []]


def test_g2p_end_to_end_with_normalizer(g2p):
    words = normalize_english("Dr. Smith paid $5 at 3:30 pm.").replace(" .", "")
    assert words == "doctor smith paid five dollars at three thirty p m"
    assert g2p(words)[0] == ["D", "AA1", "K", "T", "ER0"]


def test_g2p_rejects_bad_input(g2p):
    with pytest.raises(ValueError, match="expects a str"):
        g2p(["hello"])
    with pytest.raises(ValueError, match="normalize_english"):
        g2p("room 101")


def test_g2p_is_deterministic(g2p):
    text = "the zorblaxian record will lead the wind section live"
    first = g2p(text)
    assert g2p(text) == first
    assert EnglishG2P()(text) == first


def test_g2p_caches_word_pronunciations(g2p):
    before = g2p.cache_info()
    g2p("quintessentially flummoxed")
    after_first = g2p.cache_info()
    assert after_first.misses >= before.misses + 2
    result = g2p("quintessentially flummoxed")
    after_second = g2p.cache_info()
    assert after_second.misses == after_first.misses and after_second.hits >= after_first.hits + 2
    result[0].clear()  # callers get fresh lists: mutating one must not corrupt the cache
    assert g2p("quintessentially")[0]


OFFLINE_SCRIPT = textwrap.dedent(
    """
    import json, socket, sys, types
    import nltk

    def refuse(*args, **kwargs):
        raise RuntimeError("network access attempted")

    socket.socket.connect = socket.socket.connect_ex = refuse
    socket.create_connection = refuse
    nltk.download = refuse
    nltk.data.path[:] = []  # as on a machine without NLTK data: g2p_en's import wants to download it

    # Import the English modules without the package __init__ (torch, diffusers, the processor): they
    # are not under test here and would triple the run time.
    for name, path in json.loads(sys.argv[1]).items():
        package = sys.modules[name] = types.ModuleType(name)
        package.__path__ = [path]
    from instructaudio_diffusers.processing.english import EnglishG2P, normalize_english

    g2p = EnglishG2P()
    assert nltk.download is refuse, "nltk.download was not restored"
    print(json.dumps(g2p(normalize_english("I have read it, zorblax!").replace(" ,", "").replace(" !", ""))))
    """
)


def test_g2p_never_touches_the_network(tmp_path):
    import instructaudio_diffusers.processing as processing

    packages = {
        "instructaudio_diffusers": os.path.dirname(os.path.dirname(processing.__file__)),
        "instructaudio_diffusers.processing": os.path.dirname(processing.__file__),
    }
    env = dict(os.environ, HF_HUB_OFFLINE="1", NLTK_DATA=str(tmp_path))
    result = subprocess.run(
        [sys.executable, "-c", OFFLINE_SCRIPT, json.dumps(packages)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "nltk_data" not in result.stderr  # NLTK reports a failed download there
    phones = json.loads(result.stdout.strip().splitlines()[-1])
    assert phones[:3] == [["AY1"], ["HH", "AE1", "V"], ["R", "EH1", "D"]]
    assert phones[4][0] == "Z"
