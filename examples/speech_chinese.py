"""Chinese speech from an instruction: python examples/speech_chinese.py [--model PATH]"""

from _common import generate_and_save, parse_args

if __name__ == "__main__":
    args = parse_args(__doc__, "speech_chinese.wav")
    generate_and_save(
        args,
        instruction="一位年长的男性用缓慢而平静的语气说话。",
        text="我们二零二五年去银行办事，一起走吧。",
    )
