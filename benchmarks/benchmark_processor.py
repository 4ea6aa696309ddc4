"""Throughput of `InstructAudioProcessor.phonemize` on mixed English/Chinese text.

Phonemizes a deterministic set of sentences (English, Chinese, code-switched, with numbers, dialogue and
lyrics tags) twice with one processor: the first pass is "cold" (a new processor, so it includes building
the G2P front ends and their dictionaries), the second "warm". Prints sentences per second for both and
writes them as JSON with `--output`.

    python benchmarks/benchmark_processor.py --num-sentences 2000 --output processor_benchmark.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import time
import warnings

# A benchmark must never wait on the Hub; the processor itself needs no files.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from instructaudio_diffusers import InstructAudioProcessor  # noqa: E402

_ENGLISH_SUBJECTS = [
    "The old captain",
    "My sister",
    "Doctor Smith",
    "A small robot",
    "Our teacher",
    "The band",
]
_ENGLISH_VERBS = ["bought", "painted", "found", "sold", "remembered", "carried", "described"]
_ENGLISH_OBJECTS = ["cats", "books", "red apples", "songs", "tickets", "old maps", "blue chairs"]
_ENGLISH_TAILS = [
    "before the storm.",
    "in {year}.",
    "for ${price}.",
    "at {hour} o'clock!",
    "on the {ordinal} floor?",
    "with great care, as always.",
]
_CHINESE_SUBJECTS = ["我的朋友", "老师", "他", "这位歌手", "我们", "小明"]
_CHINESE_VERBS = ["买了", "看到了", "喜欢", "写了", "带来了", "找到了"]
_CHINESE_OBJECTS = ["本书", "只猫", "首歌", "张票", "个苹果", "辆自行车"]
_CHINESE_TAILS = ["。", "，真不错！", "，你知道吗？", "，在{year}年。", "，花了{price}元。"]
_CODE_SWITCH = [
    "我喜欢Python编程",
    "今天的meeting改到{hour}点了",
    "这首song真的很好听",
    "I really love 北京 in autumn",
    "我们用GPU训练了{count}个model",
    "She said 你好 and smiled",
]


def make_sentences(num_sentences: int, seed: int = 0) -> list[str]:
    """Deterministic mix: 35% English, 35% Chinese, 20% code-switched, 10% dialogue or lyrics."""
    rng = random.Random(seed)

    def fill(template: str) -> str:
        return template.format(
            year=rng.randint(1900, 2030),
            price=rng.randint(1, 999),
            hour=rng.randint(1, 12),
            ordinal=rng.choice(["first", "3rd", "21st", "second"]),
            count=rng.randint(2, 99),
        )

    def english() -> str:
        return fill(
            f"{rng.choice(_ENGLISH_SUBJECTS)} {rng.choice(_ENGLISH_VERBS)} {rng.randint(2, 40)} "
            f"{rng.choice(_ENGLISH_OBJECTS)} {rng.choice(_ENGLISH_TAILS)}"
        )

    def chinese() -> str:
        return fill(
            f"{rng.choice(_CHINESE_SUBJECTS)}{rng.choice(_CHINESE_VERBS)}{rng.randint(2, 40)}"
            f"{rng.choice(_CHINESE_OBJECTS)}{rng.choice(_CHINESE_TAILS)}"
        )

    sentences = []
    for _ in range(num_sentences):
        kind = rng.random()
        if kind < 0.35:
            sentences.append(english())
        elif kind < 0.70:
            sentences.append(chinese())
        elif kind < 0.90:
            sentences.append(fill(rng.choice(_CODE_SWITCH)))
        elif kind < 0.95:
            sentences.append(f"[S0] {chinese()} [S1] {english()}")
        else:
            sentences.append(f"[verse] {english()} [chorus] {chinese()}")
    return sentences


def _timed_pass(processor: InstructAudioProcessor, sentences: list[str]) -> tuple[float, int]:
    start = time.perf_counter()
    num_tokens = sum(len(processor.phonemize(sentence)) for sentence in sentences)
    return time.perf_counter() - start, num_tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num-sentences", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=str, default=None, help="write the results as JSON here")
    args = parser.parse_args()

    sentences = make_sentences(args.num_sentences, args.seed)
    construct_start = time.perf_counter()
    processor = InstructAudioProcessor()
    construct_seconds = time.perf_counter() - construct_start
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the generated text has nothing to drop; keep the output clean
        cold_seconds, num_tokens = _timed_pass(processor, sentences)
        warm_seconds, _ = _timed_pass(processor, sentences)

    results = {
        "num_sentences": len(sentences),
        "num_characters": sum(map(len, sentences)),
        "num_phoneme_tokens": num_tokens,
        "construct_seconds": round(construct_seconds, 4),
        "cold_seconds": round(cold_seconds, 3),
        "warm_seconds": round(warm_seconds, 3),
        "cold_sentences_per_second": round(len(sentences) / cold_seconds, 1),
        "warm_sentences_per_second": round(len(sentences) / warm_seconds, 1),
        "python": platform.python_version(),
        "machine": platform.machine(),
    }
    print(
        f"{len(sentences)} sentences, {num_tokens} phoneme tokens: "
        f"cold {results['cold_sentences_per_second']} sentences/s ({cold_seconds:.2f} s, G2P set-up included), "
        f"warm {results['warm_sentences_per_second']} sentences/s ({warm_seconds:.2f} s)"
    )
    if args.output:
        with open(args.output, "w", encoding="utf-8") as handle:
            json.dump(results, handle, indent=2)
            handle.write("\n")


if __name__ == "__main__":
    main()
