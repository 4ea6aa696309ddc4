"""Two-speaker dialogue with [S0]/[S1] tags: python examples/dialogue.py [--model PATH]"""

from _common import generate_and_save, parse_args

if __name__ == "__main__":
    args = parse_args(__doc__, "dialogue.wav")
    generate_and_save(
        args,
        instruction="Speaker 0 is a cheerful young woman; speaker 1 is a calm middle-aged man.",
        text="[S0] 你好呀，今天天气怎么样？ [S1] Hello! What a sunny day!",
    )
