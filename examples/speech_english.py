"""English speech from an instruction: python examples/speech_english.py [--model PATH]"""

from _common import generate_and_save, parse_args

if __name__ == "__main__":
    args = parse_args(__doc__, "speech_english.wav")
    generate_and_save(
        args,
        instruction="A young woman speaks cheerfully at a brisk pace.",
        text="Good morning! Dr. Smith's appointment moved to 3:30 pm on March 3rd.",
    )
