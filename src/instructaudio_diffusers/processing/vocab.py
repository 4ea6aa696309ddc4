"""The fixed phoneme vocabulary of `InstructAudioProcessor`.

Layout (ids in this order, append-only):

1. special and structural tokens: `<pad>` (id 0), `<unk>`, `<bos>`, `<eos>`, the word boundary `<wb>`,
   the language tokens `<en>` and `<zh>`, the pause tokens `<,>` `<.>` `<?>` `<!>`, the speaker tags
   `[S0]`..`[S7]` and the lyrics structure tags;
2. English: the CMUdict ARPAbet phones with stress, upper case (`AA0`, `AA1`, `AA2`, ..., `ZH`);
3. Chinese: the pinyin initials, lower case (`b`, ..., `zh`, `y`, `w`);
4. Chinese: the finals with their tone digit 1-5, lower case (`a1`, ..., `er2`, ..., `v4`).

Room for `MAX_SPEAKERS` speaker tags is always reserved, so a processor configured for fewer speakers has
the same ids as one configured for more; `num_speakers` only decides which tags the text may use. Case
keeps the three phone inventories apart (English upper case, pinyin lower case, specials bracketed), and
`build_default_vocab` refuses to build a vocabulary in which any two of them collide.

New tokens must only ever be appended, so that ids of an existing checkpoint never move.
"""

from __future__ import annotations

import re

from .chinese import PINYIN_FINAL_TOKENS, PINYIN_INITIALS
from .english import ARPABET_PHONES

PAD_TOKEN = "<pad>"
UNK_TOKEN = "<unk>"
# Reserved, never emitted by `phonemize`: the phoneme encoder is not autoregressive and every sequence
# already starts with a language token. They exist so a future model can use them without moving ids.
BOS_TOKEN = "<bos>"
EOS_TOKEN = "<eos>"
WORD_BOUNDARY_TOKEN = "<wb>"

#: Language token emitted at the start of every language run, by language code.
LANGUAGE_TOKENS: dict[str, str] = {"en": "<en>", "zh": "<zh>"}

#: Pause token for each ASCII punctuation mark the language normalizers emit. Semicolons and colons
#: (and the dashes the normalizers turn into commas) are short pauses like a comma.
PAUSE_TOKENS: dict[str, str] = {
    ",": "<,>",
    ";": "<,>",
    ":": "<,>",
    ".": "<.>",
    "?": "<?>",
    "!": "<!>",
}

#: Speaker tags the vocabulary always has room for, whatever `num_speakers` a processor uses.
MAX_SPEAKERS = 8
SPEAKER_TOKENS: tuple[str, ...] = tuple(f"[S{index}]" for index in range(MAX_SPEAKERS))

#: Lyrics structure tags, in their canonical (lower-case) spelling.
LYRICS_TOKENS: tuple[str, ...] = (
    "[verse]",
    "[chorus]",
    "[bridge]",
    "[inst]",
    "[intro]",
    "[outro]",
    "[pre-chorus]",
)
#: What the processor reads for a clip without words (instrumental music): the pipeline, the app and training
#: all give an empty text this instead.
INSTRUMENTAL_TEXT = "[inst]"

SPECIAL_TOKENS: tuple[str, ...] = (
    PAD_TOKEN,
    UNK_TOKEN,
    BOS_TOKEN,
    EOS_TOKEN,
    WORD_BOUNDARY_TOKEN,
    *LANGUAGE_TOKENS.values(),
    *dict.fromkeys(PAUSE_TOKENS.values()),
    *SPEAKER_TOKENS,
    *LYRICS_TOKENS,
)

#: Tokens that are never heard: structure for the phoneme encoder, not sound. An aligner gives them no frames
#: (pauses and lyrics tags are heard, as silence or as an instrumental passage, and keep theirs).
SILENT_TOKENS: tuple[str, ...] = (
    PAD_TOKEN,
    UNK_TOKEN,
    BOS_TOKEN,
    EOS_TOKEN,
    WORD_BOUNDARY_TOKEN,
    *LANGUAGE_TOKENS.values(),
    *SPEAKER_TOKENS,
)

# Spellings users write for the canonical lyrics tags ("[Verse 2]", "[Pre Chorus]", "[Instrumental]").
_LYRICS_ALIASES = {"instrumental": "inst", "prechorus": "pre-chorus"}
_LYRICS_TAG_PATTERN = re.compile(r"^([a-z]+(?:-[a-z]+)?)(?:-?\d+)?$")


def canonical_lyrics_token(tag_body: str) -> str | None:
    """Return the lyrics token for the inside of a bracket tag, or `None` if it is not a lyrics tag.

    Matching ignores case, treats spaces and underscores like hyphens, and ignores a trailing section number,
    so `"Verse 2"`, `"pre_chorus"` and `"INTRO"` map to `[verse]`, `[pre-chorus]` and `[intro]`.
    """
    body = re.sub(r"[\s_-]+", "-", tag_body.strip().lower())
    match = _LYRICS_TAG_PATTERN.match(body)
    if match is None:
        return None
    name = _LYRICS_ALIASES.get(match.group(1), match.group(1))
    token = f"[{name}]"
    return token if token in LYRICS_TOKENS else None


def build_default_vocab() -> dict[str, int]:
    """Build the default token -> id mapping in the fixed order described in the module docstring.

    Raises:
        ValueError: if two inventories share a spelling (a token would get two ids).
    """
    tokens = [*SPECIAL_TOKENS, *ARPABET_PHONES, *PINYIN_INITIALS, *PINYIN_FINAL_TOKENS]
    seen: set[str] = set()
    duplicates = sorted({token for token in tokens if token in seen or seen.add(token)})
    if duplicates:
        raise ValueError(f"Phoneme inventories collide on {duplicates}; every token needs one id.")
    return {token: index for index, token in enumerate(tokens)}


def required_tokens() -> frozenset[str]:
    """Tokens a loaded `vocab.json` must contain for the processor to emit any valid sequence."""
    return frozenset(build_default_vocab())
