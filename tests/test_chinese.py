"""Mandarin front end: normalization, syllable spelling and G2P with polyphones and surface tones.

The expected values are written from Mandarin usage (standard Putonghua readings), not generated from the
code under test.
"""

from __future__ import annotations

import itertools
import subprocess
import sys

import pytest
from pypinyin import Style, lazy_pinyin
from pypinyin.contrib.tone_convert import to_tone3
from pypinyin.pinyin_dict import pinyin_dict

from instructaudio_diffusers.processing.chinese import (
    PINYIN_FINAL_TOKENS,
    PINYIN_INITIALS,
    ChineseG2P,
    drop_unsupported,
    normalize_chinese,
    split_syllable,
)


@pytest.fixture(scope="module")
def g2p() -> ChineseG2P:
    return ChineseG2P()


def _flat(words: list[list[str]]) -> str:
    return " ".join(itertools.chain.from_iterable(words))


# --------------------------------------------------------------------------- normalization

NORMALIZATION_CASES = [
    ("123", "一百二十三"),
    ("10", "十"),
    ("15", "十五"),
    ("110", "一百一十"),
    ("1001", "一千零一"),
    ("100010", "十万零一十"),
    ("我有2本书和12个苹果", "我有两本书和十二个苹果"),
    ("2个", "两个"),
    ("2000人", "两千人"),
    ("3.14", "三点一四"),
    ("0.5", "零点五"),
    ("版本1.2.3", "版本一点二点三"),
    ("50%", "百分之五十"),
    ("3.5%", "百分之三点五"),
    ("10%-20%", "百分之十到百分之二十"),
    ("¥5", "五元"),
    ("￥100", "一百元"),
    ("5元", "五元"),
    ("$5", "五美元"),
    ("$5-$10", "五美元到十美元"),
    ("花了¥2,500", "花了两千五百元"),
    ("¥2", "两元"),
    ("2025年", "二零二五年"),
    ("1990年代", "一九九零年代"),
    ("2025年3月5日", "二零二五年三月五日"),
    ("2025-03-05", "二零二五年三月五日"),
    ("日期是2025-03-05.", "日期是二零二五年三月五日."),
    ("2月2日", "二月二日"),
    ("3:30", "三点三十分"),
    ("12:05", "十二点零五分"),
    ("2:15", "两点十五分"),
    ("比分3:2。", "比分三比二."),
    ("第3", "第三"),
    ("第2名", "第二名"),
    ("2号楼", "二号楼"),
    ("13800138000", "幺三八零零幺三八零零零"),
    ("010-12345678", "零幺零幺二三四五六七八"),
    ("-5", "负五"),
    ("气温-3.5度", "气温负三点五度"),
    ("3~5天", "三到五天"),
    ("3-5个", "三到五个"),
    ("1/2", "二分之一"),
    ("25℃", "二十五摄氏度"),
    ("1,000,000元", "一百万元"),
    ("3+2=5", "三加二等于五"),
    ("１２３", "一百二十三"),
    ("你好，世界！", "你好,世界!"),
    ("他说：“好的。”", "他说,好的."),
    ("我喜欢《红楼梦》（上）", "我喜欢红楼梦上"),
    ("苹果、香蕉；橘子", "苹果,香蕉,橘子"),
    ("真的吗？！", "真的吗?"),
    ("好吧……", "好吧."),
    ("二〇二五年", "二零二五年"),
]


@pytest.mark.parametrize(("raw", "expected"), NORMALIZATION_CASES)
def test_normalize_chinese(raw: str, expected: str) -> None:
    assert normalize_chinese(raw) == expected


def test_normalize_output_alphabet() -> None:
    text = normalize_chinese("2025年3月5日，他花了¥1,234.5买了3台电脑（打九折）😀！你呢？")
    assert set(text) - set(",.?!") <= {c for c in text if ord(c) in pinyin_dict}
    assert "😀" not in text


def test_normalize_rejects_latin_letters() -> None:
    with pytest.raises(ValueError, match="Latin"):
        normalize_chinese("我用iPhone")


def test_drop_unsupported_names_what_it_drops() -> None:
    clean, dropped = drop_unsupported("你好😀👍🏽世界★3👨‍👩‍👧🇨🇳，好！")
    assert clean == "你好世界3，好！"
    assert dropped == ["😀", "👍🏽", "★", "👨\u200d👩\u200d👧", "🇨🇳"]
    assert drop_unsupported("没有问题。") == ("没有问题。", [])


# --------------------------------------------------------------------------- spelling and vocabulary


@pytest.mark.parametrize(
    ("syllable", "tokens"),
    [
        ("hang2", ["h", "ang2"]),
        ("xing2", ["x", "ing2"]),
        ("yang4", ["y", "ang4"]),
        ("wo3", ["w", "o3"]),
        ("er2", ["er2"]),
        ("er5", ["er5"]),
        ("le5", ["l", "e5"]),
        ("nv3", ["n", "v3"]),
        ("lve4", ["l", "ve4"]),
        ("qu4", ["q", "u4"]),
        ("yue4", ["y", "ue4"]),
        ("zhi1", ["zh", "i1"]),
        ("ai4", ["ai4"]),
        ("n2", ["n2"]),
        ("m2", ["m2"]),
        ("ng2", ["ng2"]),
        ("hm5", ["h", "m5"]),
    ],
)
def test_split_syllable(syllable: str, tokens: list[str]) -> None:
    assert split_syllable(syllable) == tokens


@pytest.mark.parametrize("bad", ["hang", "hang6", "hang0", "", "xx2", "Hang2", "lü4", "shang 2"])
def test_split_syllable_rejects(bad: str) -> None:
    with pytest.raises(ValueError, match="Invalid pinyin syllable") as error:
        split_syllable(bad)
    assert repr(bad) in str(error.value)
    if "ü" in bad:
        assert "write ü as v" in str(error.value)


def test_vocabulary_sizes_and_pypinyin_agreement() -> None:
    assert PINYIN_INITIALS == tuple("b p m f d t n l g k h j q x zh ch sh r z c s y w".split())
    assert len(PINYIN_FINAL_TOKENS) == len(set(PINYIN_FINAL_TOKENS)) == 38 * 5
    # Every reading pypinyin knows splits into vocabulary tokens.
    vocabulary = set(PINYIN_INITIALS) | set(PINYIN_FINAL_TOKENS)
    readings = {to_tone3(r, neutral_tone_with_five=True) for v in pinyin_dict.values() for r in v.split(",")}
    for reading in readings:
        assert set(split_syllable(reading)) <= vocabulary, reading
    # And splits them exactly as pypinyin's own INITIALS / FINALS_TONE3 (strict=False) styles do.
    chars = "".join(chr(code) for code in list(pinyin_dict)[::40]) + "嗯呣女绿去月略儿爱鹅样我"
    tone3 = lazy_pinyin(chars, style=Style.TONE3, neutral_tone_with_five=True)
    initials = lazy_pinyin(chars, style=Style.INITIALS, strict=False)
    finals = lazy_pinyin(chars, style=Style.FINALS_TONE3, strict=False, neutral_tone_with_five=True)
    for syllable, initial, final in zip(tone3, initials, finals):
        assert split_syllable(syllable) == ([initial, final] if initial else [final]), syllable


# --------------------------------------------------------------------------- G2P goldens

G2P_CASES = [
    # polyphones resolved by the word they are in
    ("他在行走", "ta1 zai4 xing2 zou3"),
    ("我去银行取钱", "wo3 qu4 yin2 hang2 qu3 qian2"),
    ("重庆", "chong2 qing4"),
    ("我喜欢音乐", "wo2 xi3 huan1 yin1 yue4"),
    ("祝你快乐", "zhu4 ni3 kuai4 le4"),
    ("长城", "chang2 cheng2"),
    ("孩子长高了", "hai2 zi5 zhang3 gao1 le5"),
    ("他长高了", "ta1 zhang3 gao1 le5"),
    ("这条路很长", "zhe4 tiao2 lu4 hen3 chang2"),
    # third-tone sandhi
    ("你好", "ni2 hao3"),
    ("老虎", "lao2 hu3"),
    ("水果", "shui2 guo3"),
    ("展览馆", "zhan2 lan2 guan3"),
    ("我很好", "wo3 hen2 hao3"),
    ("买雨伞", "mai3 yu2 san3"),
    ("我也很好", "wo2 ye3 hen2 hao3"),
    ("岂有此理", "qi2 you3 ci2 li3"),
    # 一
    ("一", "yi1"),
    ("一样", "yi2 yang4"),
    ("一个", "yi2 ge4"),
    ("一起", "yi4 qi3"),
    ("一天", "yi4 tian1"),
    ("一年", "yi4 nian2"),
    ("第一", "di4 yi1"),
    ("一一", "yi1 yi1"),
    ("统一", "tong3 yi1"),
    ("十一", "shi2 yi1"),
    ("二十一个", "er4 shi2 yi1 ge4"),
    ("一九八四年", "yi1 jiu3 ba1 si4 nian2"),
    ("一月", "yi1 yue4"),
    ("看一看", "kan4 yi5 kan4"),
    # 不
    ("不是", "bu2 shi4"),
    ("不对", "bu2 dui4"),
    ("不好", "bu4 hao3"),
    ("不来", "bu4 lai2"),
    ("不吃", "bu4 chi1"),
    ("不", "bu4"),
    ("是不是", "shi4 bu5 shi4"),
    ("对不起", "dui4 bu5 qi3"),
    # erhua suffix vs. the morpheme 儿
    ("哪儿", "na3 er5"),
    ("一点儿", "yi4 dian3 er5"),
    ("玩儿", "wan2 er5"),
    ("哪儿有", "na2 er5 you3"),
    ("儿子", "er2 zi5"),
    ("女儿", "nv3 er2"),
    ("儿童", "er2 tong2"),
    ("幼儿园", "you4 er2 yuan2"),
    # neutral tones
    ("我的", "wo3 de5"),
    ("走了", "zou3 le5"),
    ("好吗", "hao3 ma5"),
    ("我们", "wo3 men5"),
    # reduplicated kinship and address terms: the second syllable is neutral
    ("我的妈妈", "wo3 de5 ma1 ma5"),
    ("爸爸", "ba4 ba5"),
    ("哥哥", "ge1 ge5"),
    ("姐姐", "jie3 jie5"),
    ("弟弟", "di4 di5"),
    ("妹妹", "mei4 mei5"),
    ("奶奶", "nai3 nai5"),
    ("爷爷", "ye2 ye5"),
    ("叔叔", "shu1 shu5"),
    ("宝宝", "bao3 bao5"),
    ("姑姑", "gu1 gu5"),
    ("舅舅", "jiu4 jiu5"),
    ("姥姥", "lao3 lao5"),
    ("姨姨", "yi2 yi5"),  # jieba splits it into two words
    ("爷爷奶奶", "ye2 ye5 nai3 nai5"),  # one jieba word, two pairs
    ("我奶奶", "wo2 nai3 nai5"),  # the first syllable still counts as a third tone for 我
    ("奶奶好", "nai3 nai5 hao3"),  # a neutral syllable does not make 奶 change
    ("大哥哥", "da4 ge1 ge5"),
    ("妈妈妈妈", "ma1 ma5 ma1 ma5"),  # pairs, not a run
    ("看看", "kan4 kan4"),  # verb reduplication keeps its tones
    ("天天", "tian1 tian1"),
    # zero initials, y/w spellings, ü
    ("爱", "ai4"),
    ("鹅", "e2"),
    ("女", "nv3"),
    ("绿", "lv4"),
    ("去", "qu4"),
    ("月亮", "yue4 liang4"),
]


@pytest.mark.parametrize(("text", "expected"), G2P_CASES)
def test_g2p_surface_pinyin(g2p: ChineseG2P, text: str, expected: str) -> None:
    assert _flat(g2p.pinyin(text)) == expected


def test_g2p_groups_by_word(g2p: ChineseG2P) -> None:
    assert g2p.pinyin("他在行走") == [["ta1"], ["zai4"], ["xing2", "zou3"]]
    assert g2p.pinyin("") == []


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("你好", [["n", "i2", "h", "ao3"]]),
        ("爱", [["ai4"]]),
        ("鹅", [["e2"]]),
        ("女", [["n", "v3"]]),
        ("绿", [["l", "v4"]]),
        ("去", [["q", "u4"]]),
        ("样", [["y", "ang4"]]),
        ("我", [["w", "o3"]]),
        ("儿童", [["er2", "t", "ong2"]]),
        ("一点儿", [["y", "i4", "d", "ian3", "er5"]]),
    ],
)
def test_g2p_tokens(g2p: ChineseG2P, text: str, tokens: list[list[str]]) -> None:
    assert g2p(text) == tokens


def test_overrides_replace_and_survive_sandhi(g2p: ChineseG2P) -> None:
    assert _flat(g2p.pinyin("他在行走", {2: "hang2"})) == "ta1 zai4 hang2 zou3"
    assert _flat(g2p.pinyin("你好", {0: "ni3"})) == "ni3 hao3"  # sandhi may not touch it
    assert _flat(g2p.pinyin("一样", {0: "yi1"})) == "yi1 yang4"
    # An override is a real tone for its neighbours: 好 forced to hao4 leaves 你 third.
    assert _flat(g2p.pinyin("你好", {1: "hao4"})) == "ni3 hao4"
    assert g2p("银行", {1: "xing2"}) == [["y", "in2", "x", "ing2"]]
    assert _flat(g2p.pinyin("妈妈", {1: "ma1"})) == "ma1 ma1"  # an override beats the neutral tone


@pytest.mark.parametrize(
    ("overrides", "message"),
    [({0: "xyz9"}, "xyz9"), ({0: "lü4"}, "lü4"), ({5: "hao3"}, "index 5"), ({-1: "hao3"}, "index -1")],
)
def test_invalid_override(g2p: ChineseG2P, overrides: dict[int, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        g2p("你好", overrides)


@pytest.mark.parametrize("text", ["你好,", "abc", "你 好", "３"])
def test_non_han_input_is_rejected(g2p: ChineseG2P, text: str) -> None:
    with pytest.raises(ValueError, match="Han characters only"):
        g2p(text)


def test_deterministic(g2p: ChineseG2P) -> None:
    text = "我们一起去重庆银行看一看不同的展览馆"
    first = g2p(text)
    assert g2p(text) == first
    assert ChineseG2P()(text) == first


# A few hundred varied sentences: every token emitted must be in the fixed vocabulary.
_SENTENCES = [
    "今天天气怎么样", "我们一起去公园玩儿吧", "他每天早上六点起床", "这本书的内容非常丰富",
    "请问去火车站怎么走", "她唱歌唱得特别好听", "老师说明天不上课", "我们要保护环境",
    "中国有五千年的历史", "你吃饭了吗", "人工智能正在改变世界", "他在银行工作了十年",
    "小朋友们在操场上跑来跑去", "这个问题很重要", "我觉得你说得对", "医生让他多喝水",
    "春眠不觉晓处处闻啼鸟", "床前明月光疑是地上霜", "学而时习之不亦说乎", "欸你怎么还没走",
    "嗯我知道了", "哼我才不管呢", "姥姥给我讲了一个故事", "弟弟把杯子打破了",
    "我们明天下午三点开会", "他长得很像他爸爸", "音乐会在晚上八点开始", "我想买一点儿水果",
    "这儿离那儿不远", "女儿和儿子都上大学了", "绿色的树叶在风中摇摆", "略微有点冷",
    "虐待动物是不对的", "我们应该互相帮助", "他一边走一边唱歌", "一会儿就好",
    "不管怎么样我都支持你", "你到底去不去", "这件衣服不大不小正合适", "他是我的好朋友",
    "谁也不知道明天会发生什么", "军队的行动非常迅速", "他们为了理想而奋斗", "日月星辰",
    "熊猫是中国的国宝", "长江是中国最长的河流", "重新开始吧", "这道菜有点儿咸",
    "我们在北京的胡同里散步", "饺子是过年必吃的食物", "给我一杯热茶", "你要的东西我已经准备好了",
]  # fmt: skip
_SUBJECTS = ["我", "你们", "老王", "那个小女孩儿", "我的朋友"]
_PREDICATES = ["很想去云南旅行", "昨天买了两本书", "不喜欢吃辣的", "一直在学习汉语", "觉得这里很美"]


def test_all_tokens_are_in_the_vocabulary(g2p: ChineseG2P) -> None:
    sentences = _SENTENCES + [s + p for s, p in itertools.product(_SUBJECTS, _PREDICATES)]
    # Plus a sweep over the whole basic CJK block, ten characters at a time.
    block = [chr(code) for code in range(0x4E00, 0x9FA6, 9) if code in pinyin_dict]
    sentences += ["".join(block[i : i + 10]) for i in range(0, len(block), 10)]
    assert len(sentences) > 300
    vocabulary = set(PINYIN_INITIALS) | set(PINYIN_FINAL_TOKENS)
    emitted = {token for sentence in sentences for word in g2p(sentence) for token in word}
    assert emitted <= vocabulary, emitted - vocabulary
    assert _flat(g2p.pinyin(_SENTENCES[0])) == "jin1 tian1 tian1 qi4 zen3 me5 yang4"


def test_jieba_loads_only_when_chinese_is_segmented():
    # English-only users (and `import instructaudio_diffusers`) do not pay for jieba's import.
    code = (
        "import sys, instructaudio_diffusers\n"
        "from instructaudio_diffusers import InstructAudioProcessor\n"
        "processor = InstructAudioProcessor()\n"
        "processor('Hello there.')\n"
        "assert 'jieba' not in sys.modules, 'jieba imported for English text'\n"
        "processor('你好')\n"
        "assert 'jieba' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
