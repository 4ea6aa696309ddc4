"""Mandarin text normalization: digits, symbols and punctuation to Han characters.

`normalize_chinese` turns one Chinese run of raw user text into what the G2P can read: Han characters
(each with a pypinyin reading) and the ASCII pauses ``, . ? !``. Numbers are read the way a Mandarin
speaker reads them in context: quantities, years digit by digit, dates, clock times,
percentages, currencies, ordinals, phone numbers with 1 as 幺, negatives and ranges.

`drop_unsupported` removes what no Mandarin reader can pronounce (emoji, pictographs, kana, rare Han
characters without a reading) and names it, so that the caller can warn instead of failing.
"""

from __future__ import annotations

import re
import unicodedata

from pypinyin.pinyin_dict import pinyin_dict

__all__ = ["drop_unsupported", "is_readable_han", "normalize_chinese", "read_integer"]

_DIGITS = "零一二三四五六七八九"
# Telephone-style readings say 1 as 幺 so that it cannot be confused with 七.
_PHONE_DIGITS = "零幺二三四五六七八九"
_SECTION_UNITS = ("", "万", "亿", "万亿")
# Numbers above this are never said as quantities; they are read digit by digit.
_MAX_QUANTITY_DIGITS = 16

# A bare 2 before these is 两 (两个, 两天, 两点); a leading 2 of 千/万/亿 is 两 anyway (两千).
# Dates (月, 日, 号), floors (楼) and grades (年级) keep 二.
_MEASURE_WORDS = tuple(
    sorted(
        (
            "个 位 只 本 张 条 件 种 次 遍 回 天 年 岁 周 星期 小时 钟头 分钟 秒钟 刻 点 人 口 家 户 台 辆 架 艘 "
            "双 对 块 元 角 毛 分 美元 欧元 英镑 日元 港币 斤 公斤 千克 克 吨 米 公里 千米 厘米 毫米 里 升 毫升 倍 "
            "杯 瓶 碗 盘 份 套 支 枝 把 根 头 匹 所 座 栋 间 片 颗 粒 首 部 篇 句 段 门 节 场 项 名 样 组 群 排 封 "
            "盒 包 袋 箱 桶 届 批 笔 顿 趟 下 步 声 眼 层 成 万 千 百 亿"
        ).split(),
        key=len,
        reverse=True,
    )
)
_NOT_MEASURE_WORDS = ("年级",)

_CURRENCY_WORDS = {"¥": "元", "￥": "元", "$": "美元", "€": "欧元", "£": "英镑"}

# Pauses the acoustic model knows; every other mark is mapped onto one of them or dropped.
_PUNCTUATION_MAP = str.maketrans(
    {
        "，": ",",
        "、": ",",
        "；": ",",
        ";": ",",
        "：": ",",
        ":": ",",
        "—": ",",
        "–": ",",
        "。": ".",
        "…": ".",
        "？": "?",
        "！": "!",
    }
)
# Quotes, brackets and decorations carry no sound: removed silently, never reported as dropped.
_SILENT_MARKS = frozenset("「」『』“”‘’\"'《》〈〉（）()[]【】〔〕{}<>·・~～〜-−/\\_|*#^`")
# Symbols `normalize_chinese` knows how to read (in some context); they survive `drop_unsupported`.
_READABLE_SYMBOLS = frozenset("0123456789.,?!;:%‰℃°¥￥$€£+=×÷&⁄−…—–、，。？！；：")
# Emoji are often several code points; these continue the previous one and are reported with it.
_EMOJI_CONTINUATIONS = frozenset("\u200d\ufe0e\ufe0f\u20e3")
_PUNCTUATION_STRENGTH = {",": 0, ".": 1, "!": 2, "?": 3}


def is_readable_han(char: str) -> bool:
    """Whether `char` is a Han character that pypinyin can read (the G2P's alphabet)."""
    return len(char) == 1 and ord(char) in pinyin_dict


def _to_halfwidth(text: str) -> str:
    # Only the full-width ASCII block and the ideographic space: NFKC would also rewrite ①, ㎏ or ½.
    return "".join(
        chr(ord(c) - 0xFEE0) if "\uff01" <= c <= "\uff5e" else (" " if c == "\u3000" else c) for c in text
    )


def _is_continuation(char: str) -> bool:
    code = ord(char)
    return (
        char in _EMOJI_CONTINUATIONS
        or 0x1F3FB <= code <= 0x1F3FF  # skin tones
        or 0xE0020 <= code <= 0xE007F  # tag sequences (subdivision flags)
        or unicodedata.category(char) == "Mn"
    )


def drop_unsupported(text: str) -> tuple[str, list[str]]:
    """Remove characters that the Mandarin front end cannot read.

    Kept: Han characters with a pypinyin reading, digits, Latin letters (they belong to the English front
    end, which the caller routes them to), whitespace, the punctuation and symbols `normalize_chinese`
    reads, and quotes/brackets (which it removes silently). Dropped: emoji, pictographs, other scripts,
    Han characters without a reading, unknown symbols.

    Args:
        text: raw user text of one Chinese run.

    Returns:
        `(clean_text, dropped)` where `dropped` lists each removed character (an emoji sequence with its
        joiners, modifiers and variation selectors counts as one) once, in order of first appearance.
    """
    kept: list[str] = []
    dropped: list[str] = []
    current = ""  # the dropped sequence being collected
    regional_pending = False
    for char in text:
        half = _to_halfwidth(char)
        readable = (
            is_readable_han(char)
            or half.isspace()
            or (half.isascii() and half.isalnum())
            or half in _READABLE_SYMBOLS
            or half in _SILENT_MARKS
            or char in _SILENT_MARKS
            or char == "〇"
        )
        if readable:
            if current:
                dropped.append(current)
                current = ""
            regional_pending = False
            kept.append(char)
            continue
        is_regional = 0x1F1E6 <= ord(char) <= 0x1F1FF  # flags are pairs of regional indicators
        joins = current and (
            _is_continuation(char) or current.endswith("\u200d") or (is_regional and regional_pending)
        )
        if joins:
            current += char
            regional_pending = False
        else:
            if current:
                dropped.append(current)
            current = char
            regional_pending = is_regional
    if current:
        dropped.append(current)
    unique = list(dict.fromkeys(dropped))
    return "".join(kept), unique


def _read_digits(digits: str, *, phone: bool = False) -> str:
    table = _PHONE_DIGITS if phone else _DIGITS
    return "".join(table[int(d)] for d in digits)


def _read_section(value: int) -> str:
    """Read 1..9999 with 千百十 and one 零 per gap (1001 -> 一千零一, 1010 -> 一千零一十)."""
    out: list[str] = []
    gap = False
    for unit_value, unit in ((1000, "千"), (100, "百"), (10, "十"), (1, "")):
        digit = value // unit_value % 10
        if digit == 0:
            gap = gap or bool(out)
            continue
        if gap:
            out.append("零")
            gap = False
        out.append(_DIGITS[digit] + unit)
    return "".join(out)


def read_integer(digits: str, *, liang: bool = True) -> str:
    """Read a non-negative integer as a Mandarin quantity.

    Args:
        digits: ASCII digits, e.g. ``"10010"``.
        liang: say a leading 2 of 千/万/亿 as 两 (两千, 两万); ordinals and dates pass False.

    Returns:
        Han numerals: ``"10"`` -> 十, ``"123"`` -> 一百二十三, ``"100010"`` -> 十万零一十. Numbers with
        more than 16 digits are read digit by digit.
    """
    value = int(digits)
    if value == 0:
        return "零"
    if len(digits.lstrip("0")) > _MAX_QUANTITY_DIGITS:
        return _read_digits(digits)
    sections: list[int] = []
    while value:
        sections.append(value % 10000)
        value //= 10000
    out: list[str] = []
    for power in range(len(sections) - 1, -1, -1):
        section = sections[power]
        if section == 0:
            continue
        is_top = power == len(sections) - 1
        # A lower section under 1000 needs 零 (一万零五十); so does one after an empty section (一亿零五).
        if not is_top and (section < 1000 or sections[power + 1] == 0) and out and out[-1] != "零":
            out.append("零")
        text = _read_section(section)
        if is_top and liang and text.startswith("二") and (section >= 1000 or (section == 2 and power > 0)):
            text = "两" + text[1:]
        out.append(text + _SECTION_UNITS[power])
    result = "".join(out)
    # 10-19 at the head of a number drop the 一: 十五, 十万, but 一百一十 keeps its inner 一十.
    return result[1:] if result.startswith("一十") else result


def _read_decimal(integer: str, fraction: str | None, *, liang: bool = False) -> str:
    text = read_integer(integer, liang=liang)
    return text + "点" + _read_digits(fraction) if fraction else text


def _followed_by_measure(rest: str) -> bool:
    rest = rest.lstrip()
    return rest.startswith(_MEASURE_WORDS) and not rest.startswith(_NOT_MEASURE_WORDS)


_NUMBER = r"\d+(?:\.\d+)?"
# A number's edges: no digit (or decimal point and digit) next to it, while a sentence-final "." is fine.
_START = r"(?<!\d)(?<!\d\.)"
_END = r"(?!\.?\d)"
_GROUPED_NUMBER = re.compile(rf"{_START}(?<!,)(-?)(\d{{1,3}}(?:,\d{{3}})+)(?:\.(\d+))?(?!,?\d)")
_COUNTRY_CODE = re.compile(r"(?<!\d)\+(\d{1,4})(?=[\s-]*\d)")
_FULL_DATE = re.compile(rf"{_START}(\d{{4}})\s*([-/.])\s*(\d{{1,2}})\s*\2\s*(\d{{1,2}}){_END}")
_DOTTED = re.compile(rf"{_START}\d+(?:\.\d+){{2,}}{_END}")  # version numbers: 1.2.3
_YEAR_RANGE = re.compile(rf"{_START}(\d{{4}})\s*[-~至到]\s*(\d{{4}})(?=\s*年)")
_YEAR = re.compile(rf"{_START}(\d{{4}})(?=\s*年)")
_CLOCK = r"(\d{1,2}):(\d{2})(?::(\d{2}))?"
_TIME = re.compile(rf"{_START}(?<!:){_CLOCK}(?:\s*[-~]\s*{_CLOCK})?(?![\d:])")
_RATIO = re.compile(rf"{_START}(\d+)\s*:\s*(\d+){_END}")
_DASHED_DIGITS = re.compile(rf"{_START}(\+?)(\d+(?:-\d+)+){_END}")
_CURRENCY = re.compile(r"([¥￥$€£])\s*(-?\d{1,3}(?:,\d{3})+(?:\.\d+)?|-?\d+(?:\.\d+)?)(\s*[万亿千百])?")
_PERCENT_RANGE = re.compile(rf"({_NUMBER})\s*[-~]\s*({_NUMBER})\s*%")
_PERCENT = re.compile(rf"(-?)({_NUMBER})\s*([%‰])")
# After a digit, a percent sign or a currency word (5美元-10美元): a range, not a minus.
_RANGE = re.compile(r"(?<=[\d%‰元镑])\s*[~〜-]\s*(?=-?\d)")
_FRACTION = re.compile(rf"{_START}(\d+)\s*/\s*(\d+){_END}")
_ORDINAL = re.compile(r"第\s*(\d+)")
_SIGNED_NUMBER = re.compile(rf"{_START}(-?)(\d+)(?:\.(\d+))?")
_LATIN = re.compile(r"[A-Za-z]+")
_PUNCTUATION_RUN = re.compile(r"[,.?!]{2,}")


def _read_signed(sign: str, number: str) -> str:
    integer, _, fraction = number.partition(".")
    return ("负" if sign else "") + _read_decimal(integer, fraction or None)


def _expand_date(match: re.Match[str]) -> str:
    year, _, month, day = match.groups()
    if not (1 <= int(month) <= 12 and 1 <= int(day) <= 31):
        return match.group(0)  # not a date: left to the range/fraction/decimal rules
    return (
        _read_digits(year)
        + "年"
        + read_integer(month, liang=False)
        + "月"
        + read_integer(day, liang=False)
        + "日"
    )


def _read_clock(hours: str, minutes: str, seconds: str | None) -> str | None:
    if int(hours) > 24 or int(minutes) > 59 or (seconds is not None and int(seconds) > 59):
        return None
    text = ("两" if int(hours) == 2 else read_integer(hours)) + "点"
    if int(minutes) or seconds:
        # 3:05 is 三点零五分: the leading zero of the minutes is spoken.
        text += (
            ("零" if minutes[0] == "0" and int(minutes) else "") + read_integer(minutes, liang=False) + "分"
        )
    if seconds is not None and int(seconds):
        text += read_integer(seconds, liang=False) + "秒"
    return text


def _expand_time(match: re.Match[str]) -> str:
    start = _read_clock(*match.group(1, 2, 3))
    end = _read_clock(*match.group(4, 5, 6)) if match.group(4) else ""
    if start is None or end is None:
        return match.group(0)  # 3:75 is no time: the ratio rule reads it
    return start + ("到" + end if end else "")


def _expand_dashed(match: re.Match[str]) -> str:
    plus, body = match.groups()
    groups = body.split("-")
    digit_count = sum(len(g) for g in groups)
    looks_like_phone = digit_count >= 7 or len(groups) > 2 or any(len(g) > 1 and g[0] == "0" for g in groups)
    if looks_like_phone:
        return ("加" if plus else "") + _read_digits("".join(groups), phone=True)
    return match.group(0)  # 3-5: a range, read later


def _expand_currency(match: re.Match[str]) -> str:
    symbol, number, magnitude = match.groups()
    # Keep the digits: the quantity rule below then says 两元 for ¥2 and reads the sign.
    return number + (magnitude or "").strip() + _CURRENCY_WORDS[symbol]


def _expand_percent(match: re.Match[str]) -> str:
    sign, number, symbol = match.groups()
    return ("百分之" if symbol == "%" else "千分之") + _read_signed(sign, number)


def _expand_fraction(match: re.Match[str]) -> str:
    numerator, denominator = match.groups()
    return read_integer(denominator, liang=False) + "分之" + read_integer(numerator, liang=False)


def _expand_number(match: re.Match[str]) -> str:
    sign, integer, fraction = match.groups()
    rest = match.string[match.end() :]
    if fraction is None and not sign:
        if len(integer) >= 7 and not _followed_by_measure(rest):
            return _read_digits(integer, phone=True)
        if len(integer) > 1 and integer[0] == "0":
            return _read_digits(integer)  # codes such as 007
        if integer == "2" and _followed_by_measure(rest):
            return "两"
        return read_integer(integer)
    return ("负" if sign else "") + _read_decimal(integer, fraction, liang=True)


def normalize_chinese(text: str) -> str:
    """Normalize one Chinese run of raw text to Han characters and the pauses ``, . ? !``.

    Full-width forms become half-width first. Digits and symbols are expanded to Han characters:
    quantities (123 -> 一百二十三, 2个 -> 两个), decimals (3.14 -> 三点一四), percentages
    (50% -> 百分之五十), currencies (¥5 -> 五元, $5 -> 五美元), years digit by digit (2025年 -> 二零二五年),
    dates (2025-03-05 -> 二零二五年三月五日), clock times (3:30 -> 三点三十分), ratios (3:2 -> 三比二),
    ordinals (第3 -> 第三), phone-like digit strings (7+ digits or dashed, 1 read as 幺), negatives
    (-5 -> 负五), ranges (3~5 -> 三到五), fractions (1/2 -> 二分之一), temperatures (25℃ -> 二十五摄氏度)
    and ``+ = × ÷ &``. ``，、；：—`` become ``,``; ``。…`` become ``.``; quotes and brackets are removed;
    a run of pauses collapses into its strongest one (``? ! . ,`` in that order); whitespace is removed.

    Characters `drop_unsupported` would drop are removed silently here: call it first to warn about them.

    Args:
        text: one Chinese run of user text.

    Returns:
        The normalized run; possibly empty.

    Raises:
        ValueError: if Latin letters remain after expansion (they belong to an English run).
    """
    text = _to_halfwidth(text).replace("〇", "零").replace("−", "-").replace("⁄", "/")
    text = text.replace("°C", "摄氏度").replace("℃", "摄氏度").replace("°F", "华氏度").replace("°", "度")
    text = _CURRENCY.sub(_expand_currency, text)
    # Digit groups (1,000,000) mark a quantity, however long: read it now, before the phone rule sees it.
    text = _GROUPED_NUMBER.sub(
        lambda m: (
            ("负" if m.group(1) else "") + _read_decimal(m.group(2).replace(",", ""), m.group(3), liang=True)
        ),
        text,
    )
    text = _FULL_DATE.sub(_expand_date, text)
    text = _DOTTED.sub(lambda m: "点".join(read_integer(part) for part in m.group(0).split(".")), text)
    text = _YEAR_RANGE.sub(lambda m: _read_digits(m.group(1)) + "到" + _read_digits(m.group(2)), text)
    text = _YEAR.sub(lambda m: _read_digits(m.group(1)), text)
    text = _TIME.sub(_expand_time, text)
    text = _RATIO.sub(lambda m: read_integer(m.group(1)) + "比" + read_integer(m.group(2)), text)
    text = _COUNTRY_CODE.sub(lambda m: "加" + _read_digits(m.group(1), phone=True), text)
    text = _DASHED_DIGITS.sub(_expand_dashed, text)
    text = _PERCENT_RANGE.sub(r"\1%到\2%", text)
    text = _RANGE.sub("到", text)
    text = _PERCENT.sub(_expand_percent, text)
    text = _FRACTION.sub(_expand_fraction, text)
    text = _ORDINAL.sub(lambda m: "第" + read_integer(m.group(1), liang=False), text)
    text = _SIGNED_NUMBER.sub(_expand_number, text)
    text = (
        text.replace("+", "加")
        .replace("=", "等于")
        .replace("×", "乘")
        .replace("÷", "除以")
        .replace("&", "和")
    )
    text = text.translate(_PUNCTUATION_MAP)
    text, _ = drop_unsupported(text)
    text = "".join(c for c in text if not c.isspace() and c not in _SILENT_MARKS)
    latin = _LATIN.findall(text)
    if latin:
        raise ValueError(
            f"Latin letters {latin!r} in a Chinese run: route them to the English front end before "
            "calling normalize_chinese"
        )
    # Leftover symbols that only make sense next to a number (a lone %) are not spoken.
    text = "".join(c for c in text if is_readable_han(c) or c in _PUNCTUATION_STRENGTH)
    return _PUNCTUATION_RUN.sub(lambda m: max(m.group(0), key=_PUNCTUATION_STRENGTH.__getitem__), text)
