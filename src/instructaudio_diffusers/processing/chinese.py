"""Mandarin G2P: Han characters -> surface-tone pinyin, spelled as initial + toned final tokens.

Words come from jieba (dictionary words only) so that pypinyin's phrase dictionary resolves
polyphones in context (行走 xing2, 银行 hang2); tones are then rewritten to what a speaker says, by rules
written here rather than pypinyin's `tone_sandhi`:

- Third-tone sandhi. Inside a word a chain of third tones keeps its last one: 你好 ni2 hao3, 展览馆
  zhan2 lan2 guan3 (a 1+2 word such as 纸老虎 reads zhi3 lao2 hu3); a 4+ chain goes in pairs (岂有此理
  qi2 you3 ci2 li3). Across words, boundaries are resolved right to left: a word-final 3 before a 3
  becomes 2. That follows the syntactic structure, so 我很好 is wo3 hen2 hao3 (我 | 很好) and 买雨伞
  mai3 yu2 san3, while 我也很好 is wo2 ye3 hen2 hao3.
- 一: yi1 alone, at the end of a word (统一, 第一, 万一), after 第, in digit strings and at the end of
  numbers (一九八四, 十一, 二十一个), before 月/号 (dates); yi5 between a reduplicated verb (看一看);
  otherwise yi2 before a fourth tone (一样, 一个) and yi4 before the others (一起, 一天).
- 不: bu5 in A不A questions (是不是), in the middle of a three-character word (potential complements:
  对不起, 来不及, 差不多); bu2 before a fourth tone (不是, 不对); bu4 otherwise.
- Erhua: a suffix 儿 (哪儿, 一点儿, 玩儿) stays its own syllable with the neutral tone, er5, rather than a
  merged final (nar3): the vocabulary stays small and closed, every character keeps exactly one syllable
  (so overrides stay aligned), and espeak-ng's pinyin voice reads er5. It is transparent to third-tone
  sandhi (哪儿有 na2 er5 you3). 儿 as a morpheme keeps er2: word-initially (儿子, 儿童) and after
  女/婴/幼/孤/... (女儿, 婴儿, 幼儿园).
- Reduplicated kinship and address terms read their second syllable in the neutral tone: 妈妈 ma1 ma5,
  爸爸 ba4 ba5, 姐姐 jie3 jie5, 爷爷奶奶 ye2 ye5 nai3 nai5, 宝宝 bao3 bao5. pypinyin's phrase dictionary
  marks only some of them (弟弟, 姥姥, 伯伯), so the class is a rule here. The first syllable keeps its
  tone (a neutral syllable does not trigger third-tone sandhi) but still counts as a third tone for the
  word before it (我姐姐 wo2 jie3 jie5). Verb and adverb reduplications keep their tones (看看, 天天).

Spelling follows pypinyin's `Style.INITIALS` and `Style.FINALS_TONE3` with ``strict=False`` (x + ing2,
y + ang4, w + o3, n + v3, q + u4, er2 alone); the syllabic nasals m, n, ng have no initial (pypinyin's
own output for their usual readings) and hm/hng split as h + m/ng.
"""

from __future__ import annotations

import functools
import logging
import re
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pypinyin import Style, lazy_pinyin
from pypinyin.contrib.tone_convert import to_finals_tone3, to_initials, to_tone3
from pypinyin.pinyin_dict import pinyin_dict

from .chinese_normalizer import drop_unsupported, is_readable_han, normalize_chinese

if TYPE_CHECKING:
    import jieba

__all__ = [
    "PINYIN_FINAL_TOKENS",
    "PINYIN_INITIALS",
    "ChineseG2P",
    "drop_unsupported",
    "is_readable_han",
    "normalize_chinese",
    "split_syllable",
]

_TOKENIZER_LOCK = threading.Lock()

PINYIN_INITIALS: tuple[str, ...] = (
    "b", "p", "m", "f", "d", "t", "n", "l", "g", "k", "h",
    "j", "q", "x", "zh", "ch", "sh", "r", "z", "c", "s", "y", "w",
)  # fmt: skip

# Finals as pypinyin's FINALS_TONE3 (strict=False) spells them: ü is v after n/l (nv, lve) and u after
# j/q/x/y (qu, yue); i is written once for zhi/ci/ji alike. ê, ng and the syllabic nasals only occur in
# interjections; er covers both the morpheme 儿 and the erhua suffix (er5).
_FINAL_BASES: tuple[str, ...] = (
    "a", "ai", "an", "ang", "ao", "e", "ei", "en", "eng", "er", "i", "ia", "ian", "iang", "iao", "ie",
    "in", "ing", "iong", "iu", "o", "ong", "ou", "u", "ua", "uai", "uan", "uang", "ue", "ui", "un", "uo",
    "v", "ve", "ê", "m", "n", "ng",
)  # fmt: skip
PINYIN_FINAL_TOKENS: tuple[str, ...] = tuple(f"{base}{tone}" for base in _FINAL_BASES for tone in "12345")

_SYLLABIC_NASALS = frozenset({"m", "n", "ng"})
_TONE3_SHAPE = re.compile(r"^([a-zê]+)([1-5])$")


@functools.cache
def _syllable_table() -> dict[str, tuple[str, str]]:
    """Every valid TONE3 syllable -> (initial, final): pypinyin's inventory of readings, tones 1-5."""
    readings = {reading for joined in pinyin_dict.values() for reading in joined.split(",")}
    bases = {to_tone3(reading, neutral_tone_with_five=True)[:-1] for reading in readings}
    finals = frozenset(PINYIN_FINAL_TOKENS)
    table: dict[str, tuple[str, str]] = {}
    for base in bases:
        for tone in "12345":
            syllable = base + tone
            if base in _SYLLABIC_NASALS:
                initial, final = "", syllable
            else:
                initial = to_initials(syllable, strict=False)
                final = to_finals_tone3(syllable, strict=False, neutral_tone_with_five=True)
            if (
                initial + final != syllable
                or (initial and initial not in PINYIN_INITIALS)
                or final not in finals
            ):
                raise RuntimeError(
                    f"pypinyin spells {syllable!r} as {initial!r} + {final!r}, outside the vocabulary"
                )
            table[syllable] = (initial, final)
    return table


def split_syllable(syllable: str) -> list[str]:
    """Split one TONE3 syllable into its tokens: the initial (omitted when empty), then the toned final.

    Examples: ``"hang2"`` -> ``["h", "ang2"]``, ``"yang4"`` -> ``["y", "ang4"]``, ``"er2"`` -> ``["er2"]``,
    ``"nv3"`` -> ``["n", "v3"]``, ``"le5"`` -> ``["l", "e5"]``.

    Raises:
        ValueError: naming the syllable when it is not pinyin with a tone digit 1-5 (5 = neutral), or is
            spelled differently from pypinyin (ü must be written v: lv4, nve4).
    """
    parts = _syllable_table().get(syllable)
    if parts is None:
        if isinstance(syllable, str) and ("u:" in syllable or "ü" in syllable):
            problem = "write ü as v, e.g. lv4"
        elif not isinstance(syllable, str) or not _TONE3_SHAPE.match(syllable):
            problem = "expected lower-case pinyin followed by a tone digit 1-5, e.g. hang2 or le5"
        else:
            problem = "no Mandarin syllable is spelled this way"
        raise ValueError(f"Invalid pinyin syllable {syllable!r}: {problem}.")
    initial, final = parts
    return [initial, final] if initial else [final]


# Readings pypinyin gets wrong for words jieba (HMM off) produces, looked up before pypinyin. A standalone
# 长 is mostly the adjective (很长, 时间长了; pypinyin says zhang3); a standalone 得 mostly the complement
# particle (写得好; pypinyin says de2); a standalone 教 the verb (教我).
_WORD_READINGS: dict[str, tuple[str, ...]] = {
    "长": ("chang2",),
    "最长": ("zui4", "chang2"),
    "多长": ("duo1", "chang2"),
    "得": ("de5",),
    "长得": ("zhang3", "de5"),
    "教": ("jiao1",),
}
# Words jieba's dictionary lacks, so that a polyphone is not cut off from its context (他长高了 would
# otherwise split as 他长 / 高).
_EXTRA_WORDS: tuple[str, ...] = ("长高", "长胖", "长得")
_PRONOUNS = frozenset({"我", "你", "他", "她", "它", "我们", "你们", "他们", "她们", "咱们"})
_MEASURE_LIKE = frozenset("块片亩")

# Kinship and address terms whose reduplication reads the second syllable neutral (妈妈 ma1 ma5).
_NEUTRAL_REDUPLICATED = frozenset("妈爸爹娘哥姐弟妹奶爷叔伯姑舅婶姨姥公婆嫂宝娃太")

# 儿 after these keeps its full reading (女儿, 婴儿, 幼儿园, 孤儿, 新生儿): it is a morpheme, not erhua.
_ER_MORPHEME_AFTER = frozenset("女婴幼孤健胎侄孙宠患弃育托男产乳少生血")
_NUMERALS = frozenset("零〇一二三四五六七八九十百千万亿两")
_DIGIT_CHARS = frozenset("零〇一二三四五六七八九")
# Determiners that jieba glues to 一 (这一) although the 一 still changes tone before what follows.
_YI_DETERMINERS = frozenset("这那每哪另")


@dataclass(slots=True)
class _Syllable:
    """One character's syllable while the rules run."""

    char: str
    word: int  # index of the jieba word that holds it
    base: str  # toneless spelling
    tone: int
    lexical_tone: int  # the dictionary tone, before sandhi
    fixed: bool = False  # a user override: no rule may change it
    attached: bool = False  # an erhua 儿: invisible to third-tone sandhi

    @property
    def text(self) -> str:
        return f"{self.base}{self.tone}"


class ChineseG2P:
    """Mandarin grapheme-to-phoneme conversion with word-aware polyphones and surface tones.

    A jieba tokenizer of its own is built on first use (~0.6 s; it reads jieba's shipped dictionary and
    cache) so that the words added here never leak into other users of jieba. Readings are cached per word,
    so repeated vocabulary costs a dictionary lookup.

    Example:
        >>> g2p = ChineseG2P()
        >>> g2p.pinyin("你好")
        [['ni2', 'hao3']]
        >>> g2p("银行")
        [['y', 'in2', 'h', 'ang2']]
    """

    def __init__(self) -> None:
        self._tokenizer: jieba.Tokenizer | None = None
        self._word_cache: dict[str, tuple[str, ...]] = {}
        self._char_tone_cache: dict[str, int] = {}

    @property
    def tokenizer(self) -> jieba.Tokenizer:
        if self._tokenizer is None:
            with _TOKENIZER_LOCK:  # several server threads may make the first call at once
                if self._tokenizer is None:
                    import jieba  # here, not at module level: English-only use never loads it

                    jieba.setLogLevel(logging.ERROR)  # its "Building prefix dict" chatter is not our output
                    tokenizer = jieba.Tokenizer()
                    tokenizer.initialize()
                    for word in _EXTRA_WORDS:
                        tokenizer.add_word(word)  # jieba picks a frequency that keeps the word whole
                    self._tokenizer = tokenizer
        return self._tokenizer

    # ------------------------------------------------------------------ public API

    def pinyin(self, text: str, overrides: dict[int, str] | None = None) -> list[list[str]]:
        """Surface-tone TONE3 syllables of `text`, one list per word.

        Args:
            text: Han characters only (one run without punctuation, as `normalize_chinese` leaves it
                between pauses).
            overrides: ``{character index in text: TONE3 syllable}``; the syllable replaces that
                character's reading and no sandhi rule changes it.

        Returns:
            e.g. ``[["ta1"], ["zai4"], ["xing2", "zou3"]]`` for 他在行走; ``[]`` for empty text.

        Raises:
            ValueError: for a character that is not a readable Han character, or an invalid override.
        """
        return [[syllable.text for syllable in word] for word in self._surface(text, overrides)]

    def __call__(self, text: str, overrides: dict[int, str] | None = None) -> list[list[str]]:
        """Phoneme tokens of `text`, one flat list per word: initial, toned final, initial, toned final...

        The initial is omitted for zero-initial syllables (爱 -> ``["ai4"]``). Arguments and errors as in
        `pinyin`.
        """
        return [
            [token for syllable in word for token in split_syllable(syllable.text)]
            for word in self._surface(text, overrides)
        ]

    # ------------------------------------------------------------------ steps

    def _surface(self, text: str, overrides: dict[int, str] | None) -> list[list[_Syllable]]:
        self._check_text(text)
        forced = self._check_overrides(text, overrides or {})
        if not text:
            return []
        words = self.tokenizer.lcut(text, HMM=False)
        syllables = self._lexical_syllables(words)
        for index, syllable in forced.items():
            target = syllables[index]
            target.base, target.tone, target.fixed = syllable[:-1], int(syllable[-1]), True
        self._mark_erhua(words, syllables)
        self._yi_bu_sandhi(words, syllables)
        self._third_tone_sandhi(words, syllables)
        grouped: list[list[_Syllable]] = [[] for _ in words]
        for syllable in syllables:
            grouped[syllable.word].append(syllable)
        return grouped

    @staticmethod
    def _check_text(text: str) -> None:
        if not isinstance(text, str):
            raise ValueError(f"ChineseG2P expects a string, got {type(text).__name__}.")
        bad = [(i, c) for i, c in enumerate(text) if not is_readable_han(c)]
        if bad:
            shown = ", ".join(f"{c!r} at {i}" for i, c in bad[:5])
            raise ValueError(
                f"ChineseG2P reads Han characters only; found {shown} in {text!r}. Normalize the run with "
                "normalize_chinese and split it at punctuation first."
            )

    @staticmethod
    def _check_overrides(text: str, overrides: dict[int, str]) -> dict[int, str]:
        for index, syllable in overrides.items():
            if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(text):
                raise ValueError(
                    f"Pronunciation override index {index!r} is outside the text {text!r} "
                    f"(valid: 0..{len(text) - 1})."
                )
            try:
                split_syllable(syllable)
            except ValueError as error:
                raise ValueError(
                    f"Invalid pronunciation override {syllable!r} for {text[index]!r} at index {index}: {error}"
                ) from None
        return overrides

    def _word_reading(self, word: str) -> tuple[str, ...]:
        reading = self._word_cache.get(word)
        if reading is None:
            reading = _WORD_READINGS.get(word) or tuple(
                lazy_pinyin(word, style=Style.TONE3, neutral_tone_with_five=True)
            )
            if len(reading) != len(word):
                raise RuntimeError(
                    f"pypinyin returned {reading} for {word!r}: not one syllable per character"
                )
            self._word_cache[word] = reading
        return reading

    def _char_tone(self, char: str) -> int:
        """The tone of `char` read alone: what a neutral-tone syllable counts as for 一/不 sandhi (一个)."""
        tone = self._char_tone_cache.get(char)
        if tone is None:
            tone = int(lazy_pinyin(char, style=Style.TONE3, neutral_tone_with_five=True)[0][-1])
            self._char_tone_cache[char] = tone
        return tone

    def _lexical_syllables(self, words: list[str]) -> list[_Syllable]:
        syllables: list[_Syllable] = []
        for word_index, word in enumerate(words):
            reading = self._word_reading(word)
            if word == "得" and word_index > 0 and words[word_index - 1] in _PRONOUNS:
                reading = ("dei3",)  # 我得走了: "must"
            elif len(word) == 3 and word[1] == "得" and word[0] != "不":
                # Degree complements (说得对, 跑得快, 来得及) take the particle; 不得不 keeps de2.
                reading = (reading[0], "de5", reading[2])
            elif word == "地" and word_index > 0:
                previous = words[word_index - 1]
                # After an adverbial (高兴地说, 慢慢地走) it is the particle; after 这块 it is the ground.
                reading = ("de5",) if len(previous) > 1 and previous[-1] not in _MEASURE_LIKE else reading
            for char, syllable in zip(word, reading):
                tone = int(syllable[-1])
                syllables.append(_Syllable(char, word_index, syllable[:-1], tone, tone))
        # By characters, not words: jieba splits some pairs (姨姨 -> 姨 / 姨). A pair takes two characters,
        # so 妈妈妈妈 reads ma1 ma5 ma1 ma5.
        second_of_pair = False
        for previous, syllable in zip(syllables, syllables[1:]):
            second_of_pair = (
                not second_of_pair
                and syllable.char in _NEUTRAL_REDUPLICATED
                and previous.char == syllable.char
            )
            if second_of_pair:
                syllable.tone = syllable.lexical_tone = 5
        return syllables

    @staticmethod
    def _mark_erhua(words: list[str], syllables: list[_Syllable]) -> None:
        position_in_word = 0
        for index, syllable in enumerate(syllables):
            position_in_word = (
                position_in_word + 1 if index and syllables[index - 1].word == syllable.word else 0
            )
            if syllable.char != "儿" or syllable.fixed or index == 0:
                continue
            word = words[syllable.word]
            if position_in_word == 0 and len(word) > 1:
                continue  # 儿子, 儿童: word-initial morpheme
            if syllables[index - 1].char in _ER_MORPHEME_AFTER:
                continue
            syllable.base, syllable.tone, syllable.attached = "er", 5, True

    def _yi_bu_sandhi(self, words: list[str], syllables: list[_Syllable]) -> None:
        for index, syllable in enumerate(syllables):
            if syllable.fixed or syllable.char not in "一不":
                continue
            previous = syllables[index - 1] if index else None
            following = syllables[index + 1] if index + 1 < len(syllables) else None
            word = words[syllable.word]
            in_longer_word = len(word) > 1
            reduplicated = previous is not None and following is not None and previous.char == following.char
            if reduplicated and previous.char not in _NUMERALS:
                syllable.tone = 5  # 看一看, 是不是
                continue
            if in_longer_word and syllable.lexical_tone == 5:
                continue  # the dictionary's neutral tone: 差不多
            if syllable.char == "不" and len(word) == 3 and word[1] == "不":
                syllable.tone = 5  # potential complements are unstressed: 对不起, 来不及, 看不见
                continue
            if syllable.char == "一":
                syllable.tone = self._yi_tone(word, syllable, previous, following)
            else:
                syllable.tone = 2 if following is not None and self._effective_tone(following) == 4 else 4

    def _yi_tone(
        self, word: str, syllable: _Syllable, previous: _Syllable | None, following: _Syllable | None
    ) -> int:
        if following is None:
            return 1
        if previous is not None and (previous.char in _DIGIT_CHARS or previous.char in "第十"):
            return 1  # 第一, digit strings (二零一九, 一一) and number ends (十一, 二十一个, 十一万)
        if following.char in _DIGIT_CHARS or following.char in "十月号":
            return 1  # 一九八四, 一十, 一月 (January), 一号
        word_final = (
            previous is not None and previous.word == syllable.word and following.word != syllable.word
        )
        if word_final and word[-2] not in _YI_DETERMINERS:
            return 1  # 统一, 唯一, 万一, 之一
        # Everything else, a leading digit after 万/千/百 included (一万一千 yi4 qian1), changes tone.
        return 2 if self._effective_tone(following) == 4 else 4

    def _effective_tone(self, syllable: _Syllable) -> int:
        return self._char_tone(syllable.char) if syllable.tone == 5 and not syllable.fixed else syllable.tone

    def _third_tone_sandhi(self, words: list[str], syllables: list[_Syllable]) -> None:
        units = [s for s in syllables if not s.attached]  # erhua rides on the syllable before it
        by_word: list[list[_Syllable]] = [[] for _ in words]
        for unit in units:
            by_word[unit.word].append(unit)
        for word, members in zip(words, by_word):
            self._word_internal_sandhi(word, members)
        # Right to left, so that the right-hand word has its final tones when its left neighbour looks.
        spoken = [members for members in by_word if members]  # a word that is only an erhua 儿 is skipped
        for right in range(len(spoken) - 1, 0, -1):
            last, first = spoken[right - 1][-1], spoken[right][0]
            if last.tone == 3 and first.tone == 3 and not last.fixed:
                last.tone = 2

    def _word_internal_sandhi(self, word: str, members: list[_Syllable]) -> None:
        start = 0
        while start < len(members):
            if members[start].tone != 3:
                start += 1
                continue
            end = start
            while end < len(members) and members[end].tone == 3:
                end += 1
            chain = members[start:end]
            if len(chain) == 3 and len(members) == 3 and self._is_one_plus_two(word):
                targets = [2, 2, 3]
                targets[0] = 3  # 纸老虎: the monosyllable stays third before the 2+3 foot
            elif len(chain) <= 3:
                targets = [2] * (len(chain) - 1) + [3]
            else:
                # Longer chains fall into feet of two (岂有此理 -> 2 3 2 3); an odd one joins the last foot.
                targets = [2, 3] * (len(chain) // 2)
                if len(chain) % 2:
                    targets[-1:] = [2, 3]
            for syllable, tone in zip(chain, targets):
                if not syllable.fixed:
                    syllable.tone = tone
            start = end

    def _is_one_plus_two(self, word: str) -> bool:
        """Whether a three-character word splits 1+2 (纸|老虎) rather than 2+1 (展览|馆), per jieba's dictionary."""
        freq = self.tokenizer.FREQ
        return bool(freq.get(word[1:])) and not freq.get(word[:2])
