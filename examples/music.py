"""Instrumental music (empty text) or a song with lyrics: python examples/music.py [--model PATH] [--lyrics]"""

import sys

from _common import generate_and_save, parse_args

if __name__ == "__main__":
    with_lyrics = "--lyrics" in sys.argv
    args = parse_args(__doc__, "music.wav", [a for a in sys.argv[1:] if a != "--lyrics"])
    generate_and_save(
        args,
        instruction="Upbeat electronic dance track at 128 BPM with a bright synth lead, happy atmosphere.",
        text="[verse] Lights on the city tonight [chorus] We keep dancing" if with_lyrics else "",
        audio_length_in_s=10.0,
    )
