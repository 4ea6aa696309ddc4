"""Phone units shared by the processor's tokens and the synthesizers' phones, so the two can be aligned.

The processor speaks ARPAbet with stress (English) and pinyin initials plus toned finals (Mandarin); flite
speaks a CMU-like set without stress (`ax` for a reduced vowel, `pau` for silence); espeak-ng reports its
own phoneme mnemonics (`@`, `aI@`, `tS;h`, `_:`). Each is mapped onto *units*: stressless ARPAbet for
English, a small IPA-like lower-case inventory for Mandarin, and `SIL` for silence. One symbol may stand
for several units (espeak-ng's `A@` is AA R, a pinyin `ian` is i E n), and some stand for none (espeak-ng's
`;` marks linking and carries no sound of its own).

Each unit has a broad class, vowel, consonant, glide or silence, which sets the cost of aligning two
different units and decides which aligned phones count as matched.
"""

from __future__ import annotations

import re

__all__ = [
    "CONSONANT",
    "GLIDE",
    "OPTIONAL_SILENCE",
    "PAUSE",
    "PHONE",
    "SILENCE",
    "SILENCE_CLASS",
    "VOWEL",
    "engine_units",
    "token_units",
    "unit_class",
]

SILENCE = "SIL"
VOWEL, CONSONANT, GLIDE, SILENCE_CLASS, UNKNOWN_CLASS = "vowel", "consonant", "glide", "silence", "unknown"
# Kinds of processor token: a phone, a pause (punctuation: silence when the engine pauses there), or a
# token that may take a silence but needs none (language and speaker tags, word boundaries).
PHONE, PAUSE, OPTIONAL_SILENCE = "phone", "pause", "optional"

_ENGLISH_VOWELS = frozenset("AA AE AH AO AW AY EH ER EY IH IY OW OY UH UW".split())
_ENGLISH_GLIDES = frozenset({"W", "Y"})
_MANDARIN_VOWELS = frozenset("a ai au e E ei er i o ou u v".split())
_MANDARIN_GLIDES = frozenset({"j", "w"})

# ---------------------------------------------------------------------------------------------- processor
_PINYIN_INITIAL_UNITS = {
    "b": "p", "p": "ph", "m": "m", "f": "f", "d": "t", "t": "th", "n": "n", "l": "l", "g": "k", "k": "kh",
    "h": "x", "j": "tc", "q": "tch", "x": "c", "zh": "tr", "ch": "trh", "sh": "sr", "r": "zr", "z": "ts",
    "c": "tsh", "s": "s", "y": "j", "w": "w",
}  # fmt: skip
# Finals as units, chosen to follow espeak-ng's cmn-latn-pinyin readings (ian -> iE n, un -> u@ n).
_PINYIN_FINAL_UNITS = {
    "a": "a", "ai": "ai", "an": "a n", "ang": "a ng", "ao": "au", "e": "e", "ei": "ei", "en": "e n",
    "eng": "e ng", "er": "er", "i": "i", "ia": "i a", "ian": "i E n", "iang": "i a ng", "iao": "i au",
    "ie": "i E", "in": "i n", "ing": "i ng", "iong": "v ng", "iu": "i ou", "o": "o", "ong": "o ng",
    "ou": "ou", "u": "u", "ua": "u a", "uai": "u ai", "uan": "u a n", "uang": "u a ng", "ue": "v E",
    "ui": "u ei", "un": "u e n", "uo": "u o", "v": "v", "ve": "v E", "ê": "E", "m": "m", "n": "n",
    "ng": "ng",
}  # fmt: skip
_PAUSE_TOKENS = frozenset({"<,>", "<.>", "<?>", "<!>"})
_ARPABET = re.compile(r"^([A-Z]{1,2})[0-2]?$")
_TONED_FINAL = re.compile(r"^([a-zê]+)[1-5]$")


def token_units(token: str) -> tuple[tuple[str, ...], str]:
    """A processor token's units and kind (`PHONE`, `PAUSE` or `OPTIONAL_SILENCE`).

    Tags, word boundaries and anything unknown are `OPTIONAL_SILENCE` with the single unit `SIL`: they
    may take a silence the engine put there, or nothing.
    """
    if token in _PAUSE_TOKENS:
        return (SILENCE,), PAUSE
    english = _ARPABET.match(token)
    if english:
        return (english.group(1),), PHONE
    if token in _PINYIN_INITIAL_UNITS:
        return (_PINYIN_INITIAL_UNITS[token],), PHONE
    final = _TONED_FINAL.match(token)
    if final and final.group(1) in _PINYIN_FINAL_UNITS:
        return tuple(_PINYIN_FINAL_UNITS[final.group(1)].split()), PHONE
    return (SILENCE,), OPTIONAL_SILENCE


# ---------------------------------------------------------------------------------------------- engines
_FLITE = {
    "ax": "AH", "axr": "ER", "ix": "IH", "dx": "T", "nx": "N", "hv": "HH", "el": "AH L", "em": "AH M",
    "en": "AH N", "pau": SILENCE, "h#": SILENCE, "brth": SILENCE,
}  # fmt: skip
_ESPEAK_ENGLISH = {
    # vowels
    "@": "AH", "@2": "AH", "@5": "AH", "@-": "AH", "V": "AH", "a#": "AH", "3": "ER", "3:": "ER",
    "VR": "ER", "IR": "ER", "a": "AE", "aa": "AE", "A:": "AA", "0": "AA", "A@": "AA R", "E": "EH",
    "e@": "EH R", "eI": "EY", "I": "IH", "I2": "IH", "I#": "IH", "i": "IY", "i:": "IY", "i@": "IY AH",
    "i@3": "IH R", "O:": "AO", "O2": "AO", "O@": "AO R", "o@": "AO R", "OI": "OY", "oU": "OW", "U": "UH",
    "U@": "UH R", "u:": "UW", "aI": "AY", "aI2": "AY", "aI3": "AY ER", "aI@": "AY ER", "aU": "AW",
    "@L": "AH L", "n-": "AH N",
    # consonants
    "D": "DH", "T": "TH", "N": "NG", "S": "SH", "Z": "ZH", "tS": "CH", "dZ": "JH", "j": "Y", "h": "HH",
    "r": "R", "r-": "R", "t#": "T", "t2": "T", "?": "T", "w#": "W", "x": "K",
    ";": "",
}  # fmt: skip
_ESPEAK_MANDARIN = {
    "p": "p", "ph": "ph", "m": "m", "f": "f", "t": "t", "th": "th", "n": "n", "l": "l", "k": "k",
    "kh": "kh", "X": "x", "tS;": "tc", "tS;h": "tch", "S;": "c", "ts.": "tr", "ts.h": "trh", "s.": "sr",
    "z.": "zr", "ts": "ts", "tsh": "tsh", "s": "s", "w": "w", "j": "j", "N": "ng", "N-": "ng",
    "A": "a", "a": "a", "iA": "i a", "ai": "ai", "Au": "au", "@": "e", "o-": "e", "iE": "i E", "E": "E",
    "ei": "ei", "u@": "u e", "@r": "er", "i": "i", "i.": "i", "i[": "i", "iou": "i ou", "io": "i o",
    "ou": "ou", "o": "o", "ong": "o ng", "u": "u", "y": "v", "y&": "v a", "yu": "v", "yE": "v E",
    "yi": "v i", "y@": "v e", "uai": "u ai", "uei": "u ei", "ua": "u a", "uo": "u o",
    ";": "",
}  # fmt: skip
_ENGINE_TABLES = {"espeak_en": _ESPEAK_ENGLISH, "espeak_zh": _ESPEAK_MANDARIN}


def engine_units(phone_set: str, name: str) -> tuple[str, ...] | None:
    """Units of one synthesizer phone; `None` for a name the tables do not know (aligned as unknown).

    Args:
        phone_set: `"flite"`, `"espeak_en"`, `"espeak_zh"` or `"silence"` (margins and turn gaps).
        name: the engine's phone name (`"ax"`, `"aI@"`, `"_:"`).
    """
    if phone_set == "silence" or (phone_set.startswith("espeak") and name.startswith("_")):
        return (SILENCE,)
    if phone_set == "flite":
        if name in _FLITE:
            return tuple(_FLITE[name].split())
        upper = name.upper()
        return (upper,) if upper in _ENGLISH_VOWELS or re.fullmatch(r"[A-Z]{1,2}", upper) else None
    table = _ENGINE_TABLES.get(phone_set)
    if table is None:
        raise ValueError(f"Unknown phone set {phone_set!r}.")
    if name in table:
        return tuple(table[name].split())
    if phone_set == "espeak_en" and re.fullmatch(r"[bdfgklmnpstvwz]", name):
        return (name.upper(),)
    return None


def unit_class(unit: str) -> str:
    """The broad class of a unit: `VOWEL`, `CONSONANT`, `GLIDE`, `SILENCE_CLASS`, or unknown."""
    if unit == SILENCE:
        return SILENCE_CLASS
    if unit in _ENGLISH_VOWELS or unit in _MANDARIN_VOWELS:
        return VOWEL
    if unit in _ENGLISH_GLIDES or unit in _MANDARIN_GLIDES:
        return GLIDE
    if unit == "?":
        return UNKNOWN_CLASS
    return CONSONANT
