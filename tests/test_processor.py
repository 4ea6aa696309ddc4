"""InstructAudioProcessor: text -> phoneme tokens -> ids, errors, serialization, diffusers round trip."""

import json
import pickle
import subprocess
import sys
import textwrap
import time
import warnings

import pytest
import torch
from diffusers import DiffusionPipeline

from instructaudio_diffusers import InstructAudioProcessor
from instructaudio_diffusers.processing import chinese, english
from instructaudio_diffusers.processing.text_segmentation import TextSegment, split_language_runs
from instructaudio_diffusers.processing.vocab import (
    LYRICS_TOKENS,
    MAX_SPEAKERS,
    SPEAKER_TOKENS,
    SPECIAL_TOKENS,
    build_default_vocab,
)


@pytest.fixture(scope="module")
def processor() -> InstructAudioProcessor:
    return InstructAudioProcessor()


# Written by hand from CMUdict (first pronunciation), the pinyin of each word with surface tones (docs/design.md §4)
# and the token layout in processor.py: never generated from the implementation's output.
GOLDEN = [
    # English
    ("Hello world.", "<en> HH AH0 L OW1 <wb> W ER1 L D <.>"),
    (
        "The cat sat on the mat.",
        "<en> DH AH0 <wb> K AE1 T <wb> S AE1 T <wb> AA1 N <wb> DH AH0 <wb> M AE1 T <.>",
    ),
    ("How are you?", "<en> HH AW1 <wb> AA1 R <wb> Y UW1 <?>"),
    ("Wait, what?!", "<en> W EY1 T <,> W AH1 T <?>"),
    ("Yes; no: maybe.", "<en> Y EH1 S <,> N OW1 <,> M EY1 B IY0 <.>"),
    ("I have 3 cats", "<en> AY1 <wb> HH AE1 V <wb> TH R IY1 <wb> K AE1 T S"),
    (
        "Dr. Smith paid $5.",
        "<en> D AA1 K T ER0 <wb> S M IH1 TH <wb> P EY1 D <wb> F AY1 V <wb> D AA1 L ER0 Z <.>",
    ),
    ("It was 1990", "<en> IH1 T <wb> W AA1 Z <wb> N AY1 N T IY1 N <wb> N AY1 N T IY0"),
    ("Mr. Brown came 2nd.", "<en> M IH1 S T ER0 <wb> B R AW1 N <wb> K EY1 M <wb> S EH1 K AH0 N D <.>"),
    # CMUdict: "thirty" is TH ER1 D IY2 (flapped t, secondary stress)
    ("Call me at 7:30.", "<en> K AO1 L <wb> M IY1 <wb> AE1 T <wb> S EH1 V AH0 N <wb> TH ER1 D IY2 <.>"),
    # Chinese: polyphones from word context, then tone sandhi (3-3, 一, 不)
    ("你好", "<zh> n i2 h ao3"),
    ("银行", "<zh> y in2 h ang2"),
    ("他在行走", "<zh> t a1 <wb> z ai4 <wb> x ing2 z ou3"),
    ("重庆", "<zh> ch ong2 q ing4"),
    ("一样", "<zh> y i2 y ang4"),
    ("一起", "<zh> y i4 q i3"),
    ("不是。", "<zh> b u2 sh i4 <.>"),
    ("现在是3点", "<zh> x ian4 z ai4 <wb> sh i4 <wb> s an1 d ian3"),
    ("我爱音乐！", "<zh> w o3 <wb> ai4 <wb> y in1 y ue4 <!>"),
    # jieba's dictionary has 我爱你 as one word
    ("我爱你", "<zh> w o3 ai4 n i3"),
    # Mixed languages: every run starts with its language token
    (
        "我喜欢Python编程",
        "<zh> w o2 <wb> x i3 h uan1 <en> P AY1 TH AA0 N <zh> b ian1 ch eng2",
    ),
    ("I love 北京 in autumn", "<en> AY1 <wb> L AH1 V <zh> b ei3 j ing1 <en> IH0 N <wb> AO1 T AH0 M"),
    ("你好, hello!", "<zh> n i2 h ao3 <,> <en> HH AH0 L OW1 <!>"),
    # Dialogue: a speaker tag ends a run, so the next turn starts with its language token again
    (
        "[S0] 你好呀,今天天气怎么样? [S1] Hello! What a sunny day!",
        "[S0] <zh> n i2 h ao3 <wb> y a5 <,> j in1 t ian1 t ian1 q i4 <wb> z en3 m e5 y ang4 <?> "
        "[S1] <en> HH AH0 L OW1 <!> W AH1 T <wb> AH0 <wb> S AH1 N IY0 <wb> D EY1 <!>",
    ),
    ("[S1] Yes. [S0] 好。", "[S1] <en> Y EH1 S <.> [S0] <zh> h ao3 <.>"),
    # Lyrics tags, case-insensitive, numbered sections folded to their tag
    (
        "[Verse] I love you [CHORUS 2] 我爱你",
        "[verse] <en> AY1 <wb> L AH1 V <wb> Y UW1 [chorus] <zh> w o3 ai4 n i3",
    ),
    ("[intro] [inst]", "[intro] [inst]"),
    # Overrides: a Han character's syllable (sandhi then follows it), an English word's phones
    ("你好{hao4}", "<zh> n i3 h ao4"),
    ("行{hang2}", "<zh> h ang2"),
    ("I read{R EH1 D} it", "<en> AY1 <wb> R EH1 D <wb> IH1 T"),
    ("tomato{t ah0 m aa1 t ow2}!", "<en> T AH0 M AA1 T OW2 <!>"),
    ("Meet at the co-op{K OW1 AA2 P}.", "<en> M IY1 T <wb> AE1 T <wb> DH AH0 <wb> K OW1 AA2 P <.>"),
    # the override does not cut the normalizer's context: "Dr." before a name is still "doctor"
    ("Dr. Smith{S M AY1 TH} sang", "<en> D AA1 K T ER0 <wb> S M AY1 TH <wb> S AE1 NG"),
]


@pytest.mark.parametrize(("text", "expected"), GOLDEN, ids=[text for text, _ in GOLDEN])
def test_phonemize_golden(processor, text, expected):
    assert processor.phonemize(text) == expected.split()


# ---------------------------------------------------------------------------------------------- vocabulary


def test_vocabulary_layout():
    vocab = build_default_vocab()
    assert vocab["<pad>"] == 0 and vocab["<unk>"] == 1
    assert sorted(vocab.values()) == list(range(len(vocab)))
    assert list(vocab)[: len(SPECIAL_TOKENS)] == list(SPECIAL_TOKENS)
    assert len(vocab) == len(SPECIAL_TOKENS) + 69 + len(chinese.PINYIN_INITIALS) + len(
        chinese.PINYIN_FINAL_TOKENS
    )
    # 15 vowels x 3 stresses + 24 consonants; every phone, initial and toned final is present
    assert len(english.ARPABET_PHONES) == 69
    for token in (*english.ARPABET_PHONES, *chinese.PINYIN_INITIALS, *chinese.PINYIN_FINAL_TOKENS):
        assert token in vocab
    assert {f"{base}{tone}" for base in ("a", "er", "ang", "v") for tone in range(1, 6)} <= vocab.keys()


def test_phone_inventories_are_disjoint():
    english_phones = set(english.ARPABET_PHONES)
    pinyin = set(chinese.PINYIN_INITIALS) | set(chinese.PINYIN_FINAL_TOKENS)
    assert not english_phones & pinyin
    assert not (english_phones | pinyin) & set(SPECIAL_TOKENS)
    assert len(set(chinese.PINYIN_INITIALS)) == len(chinese.PINYIN_INITIALS)


def test_speaker_ids_do_not_depend_on_num_speakers():
    two, eight = InstructAudioProcessor(num_speakers=2), InstructAudioProcessor(num_speakers=MAX_SPEAKERS)
    assert two.get_vocab() == eight.get_vocab()
    assert two.convert_tokens_to_ids("[S1]") == eight.convert_tokens_to_ids("[S1]")
    assert eight.phonemize("[S7] hi")[0] == SPEAKER_TOKENS[7]
    with pytest.raises(ValueError, match="num_speakers"):
        InstructAudioProcessor(num_speakers=MAX_SPEAKERS + 1)


def test_every_emitted_token_is_in_the_vocabulary(processor):
    vocab = processor.get_vocab()
    for text, _ in GOLDEN:
        assert all(token in vocab for token in processor.phonemize(text))
    assert set(LYRICS_TOKENS) <= vocab.keys()


# ---------------------------------------------------------------------------------------------- segmentation


@pytest.mark.parametrize(
    ("text", "runs"),
    [
        ("2025年", [("zh", "2025年")]),
        ("I have 3 cats", [("en", "I have 3 cats")]),
        ("我喜欢Python编程", [("zh", "我喜欢"), ("en", "Python"), ("zh", "编程")]),
        ("Python3编程", [("en", "Python3"), ("zh", "编程")]),
        ("重5kg的箱子", [("zh", "重"), ("en", "5kg"), ("zh", "的箱子")]),
        ("I bought 3个苹果", [("en", "I bought "), ("zh", "3个苹果")]),
        ("Hello, 你好", [("en", "Hello, "), ("zh", "你好")]),
        ("123", [("en", "123")]),
    ],
)
def test_language_runs(text, runs):
    found = split_language_runs(TextSegment(text), default_language="en")
    assert [(run.language, run.text) for run in found] == runs


def test_digits_alone_follow_default_language():
    assert InstructAudioProcessor(default_language="zh").phonemize("3")[0] == "<zh>"
    assert InstructAudioProcessor().phonemize("3") == ["<en>", "TH", "R", "IY1"]


def test_full_width_text_is_folded(processor):
    assert processor.phonemize("你好，ｈｅｌｌｏ！") == processor.phonemize("你好, hello!")


# ---------------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "Nothing to speak"),
        ("...!?", "Nothing to speak"),
        ("😀🎉", "Nothing to speak"),
        ("[S9] hello", r"Unknown speaker tag '\[S9\]' at character 0.*num_speakers=4"),
        ("[S0] hi [S1]", r"Speaker tag \[S1\] at character 8 has no text"),
        ("hello [laughs] there", r"Unknown tag '\[laughs\]' at character 6"),
        ("hello [S0 there", r"Unbalanced '\[' at character 6"),
        ("银行{hang2", r"Unbalanced '\{' at character 2"),
        ("银行hang2}", r"Unmatched '\}' at character 7"),
        ("hi {AH0}", "at character 3 must directly follow a Han character or an English word"),
        ("about{AH0 B AW T}", r"Invalid phones \['AW'\].*at character 5"),
        ("行{hang9}", "Invalid Chinese pronunciation override '{hang9}' at character 1"),
        ("行{yin2 hang2}", "exactly one pinyin syllable"),
        ("行{hang2}{xing2}", "Second pronunciation override"),
    ],
)
def test_bad_input_raises_clear_value_error(processor, text, message):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # emoji input also warns; the error is what is tested here
        with pytest.raises(ValueError, match=message):
            processor.phonemize(text)


def test_long_text_fails_fast_on_raw_length(processor):
    start = time.perf_counter()
    with pytest.raises(ValueError, match="20000 characters"):
        processor.phonemize("hello " * 3333 + "hi")
    assert time.perf_counter() - start < 0.1


def test_too_many_phoneme_tokens_is_an_error_not_a_truncation():
    small = InstructAudioProcessor(model_max_length=8)
    assert len(small.phonemize("hello")) == 5
    with pytest.raises(ValueError, match="gives 10 phoneme tokens.*model_max_length=8"):
        small.phonemize("hello world")
    with pytest.raises(ValueError, match="model_max_length=8"):
        small(["hi", "hello world"])


def test_unsupported_characters_are_dropped_with_a_warning(processor):
    with pytest.warns(UserWarning, match="😀"):
        tokens = processor.phonemize("你好😀 hello 🎉")
    assert tokens == processor.phonemize("你好 hello")


# ---------------------------------------------------------------------------------------------- tokenizer API


def test_batch_is_padded_with_pad_id_zero(processor):
    texts = ["你好", "Hello world, how are you?"]
    batch = processor(texts)
    lengths = [len(processor.phonemize(text)) for text in texts]
    assert batch["input_ids"].shape == (2, max(lengths))
    assert batch["input_ids"].dtype == torch.long
    assert batch["attention_mask"].sum(dim=1).tolist() == lengths
    assert batch["input_ids"][0, lengths[0] :].eq(0).all()
    assert processor.pad_token_id == 0
    assert processor.convert_ids_to_tokens(
        batch["input_ids"][0, : lengths[0]].tolist()
    ) == processor.phonemize(texts[0])
    decoded = processor.batch_decode(batch["input_ids"], skip_special_tokens=True)
    assert decoded == [" ".join(processor.phonemize(text)) for text in texts]
    # without skipping, padding decodes as <pad> and the rest is untouched by "clean-up"
    assert processor.batch_decode(batch["input_ids"])[0].endswith("<pad>")


def test_single_text_and_plain_lists(processor):
    one = processor("I read{R EH1 D} it")
    assert one["input_ids"].shape[0] == 1
    plain = processor(["你好", "hi"], padding=False, return_tensors=None)
    assert plain["input_ids"] == [
        processor.convert_tokens_to_ids(processor.phonemize(t)) for t in ["你好", "hi"]
    ]


def test_save_and_load_keep_ids_and_config(tmp_path):
    original = InstructAudioProcessor(num_speakers=2, default_language="zh", model_max_length=512)
    saved = original.save_pretrained(tmp_path)
    assert (tmp_path / "vocab.json").exists() and str(tmp_path / "vocab.json") in map(str, saved)
    on_disk = json.loads((tmp_path / "vocab.json").read_text(encoding="utf-8"))
    assert on_disk == build_default_vocab()
    loaded = InstructAudioProcessor.from_pretrained(tmp_path)
    assert loaded.get_vocab() == original.get_vocab()
    assert (loaded.num_speakers, loaded.default_language, loaded.model_max_length) == (2, "zh", 512)
    text = "[S1] 我喜欢Python编程, 123!"
    assert loaded(text)["input_ids"].tolist() == original(text)["input_ids"].tolist()
    with pytest.raises(ValueError, match="num_speakers=2"):
        loaded.phonemize("[S2] hi")


def test_loaded_vocab_is_used_and_checked(tmp_path):
    vocab = build_default_vocab()
    # A vocabulary with its own ids (here: phones reversed) must be honoured, not rebuilt.
    tokens = list(vocab)
    custom = {
        token: index
        for index, token in enumerate(tokens[: len(SPECIAL_TOKENS)] + tokens[len(SPECIAL_TOKENS) :][::-1])
    }
    (tmp_path / "vocab.json").write_text(json.dumps(custom), encoding="utf-8")
    processor = InstructAudioProcessor(vocab_file=str(tmp_path / "vocab.json"))
    assert processor.convert_tokens_to_ids("ZH") == custom["ZH"] != vocab["ZH"]
    without_zh = {token: index for index, token in enumerate(token for token in vocab if token != "ZH")}
    (tmp_path / "vocab.json").write_text(json.dumps(without_zh), encoding="utf-8")
    with pytest.raises(ValueError, match="lacks tokens"):
        InstructAudioProcessor(vocab_file=str(tmp_path / "vocab.json"))


class _ProcessorOnlyPipeline(DiffusionPipeline):
    def __init__(self, processor: InstructAudioProcessor):
        super().__init__()
        self.register_modules(processor=processor)


def test_diffusion_pipeline_round_trip(tmp_path):
    original = InstructAudioProcessor(num_speakers=3)
    _ProcessorOnlyPipeline(original).save_pretrained(tmp_path)
    index = json.loads((tmp_path / "model_index.json").read_text())
    assert index["processor"] == ["instructaudio_diffusers.processing.processor", "InstructAudioProcessor"]
    assert (tmp_path / "processor" / "vocab.json").exists()
    pipe = _ProcessorOnlyPipeline.from_pretrained(tmp_path)
    assert isinstance(pipe.processor, InstructAudioProcessor)
    assert pipe.processor.num_speakers == 3
    text = "[S2] 你好呀, what a day!"
    assert pipe.processor.phonemize(text) == original.phonemize(text)
    assert pipe.processor(text)["input_ids"].tolist() == original(text)["input_ids"].tolist()


# ---------------------------------------------------------------------------------------------- behaviour


def test_deterministic_and_stateless_across_calls(processor):
    texts = [text for text, _ in GOLDEN]
    first = [processor.phonemize(text) for text in texts]
    # An override in one call must not leak into the next one.
    assert processor.phonemize("银行{xing2}") == ["<zh>", "y", "in2", "x", "ing2"]
    assert processor.phonemize("银行") == ["<zh>", "y", "in2", "h", "ang2"]
    assert [processor.phonemize(text) for text in reversed(texts)][::-1] == first
    fresh = InstructAudioProcessor()
    assert [fresh.phonemize(text) for text in texts] == first


def test_pickled_processor_gives_the_same_tokens(processor):
    text = "[S0] 你好, hello!"
    expected = processor.phonemize(text)
    clone = pickle.loads(pickle.dumps(processor))
    assert clone.phonemize(text) == expected


def test_phonemize_never_touches_the_network():
    script = textwrap.dedent(
        """
        import socket
        import nltk

        def refuse(*args, **kwargs):
            raise RuntimeError("network access attempted")

        nltk.download = refuse
        socket.socket.connect = refuse
        socket.create_connection = refuse

        from instructaudio_diffusers import InstructAudioProcessor

        tokens = InstructAudioProcessor().phonemize("[S0] Dr. Smith 读了3本书, supercalifragilistic!")
        print(" ".join(tokens))
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("[S0] <en> D AA1 K T ER0")
