"""`InstructAudioProcessor`: instruction-audio text -> phoneme tokens -> ids.

`phonemize` reads plain text with speaker tags, lyrics tags and pronunciation overrides (see
`text_segmentation`), splits it into English and Chinese runs, normalizes each run with its language's
normalizer, turns punctuation into pause tokens and words into phones, and returns token strings:

    >>> processor = InstructAudioProcessor()
    >>> processor.phonemize("[S0] 你好, hello!")
    ['[S0]', '<zh>', 'n', 'i2', 'h', 'ao3', '<,>', '<en>', 'HH', 'AH0', 'L', 'OW1', '<!>']

Token layout of one sequence:

- every language run starts with its language token (`<en>`, `<zh>`): at the start of the text, at every
  switch of language and again after every speaker or lyrics tag, so that each turn or section is
  self-describing;
- `<wb>` separates two words of a run that have no punctuation between them;
- a run of punctuation becomes one pause token, the strongest of it (`<?>` > `<!>` > `<.>` > `<,>`);
  pauses before the first word of a run are dropped;
- tags are single tokens where they stand.

Calling the processor returns padded `input_ids` and `attention_mask` like any transformers tokenizer.
The class derives from transformers' `PreTrainedTokenizer` so that a diffusers pipeline saves and loads
it as a component (`vocab.json` + `tokenizer_config.json`).
"""

from __future__ import annotations

import json
import os
import threading
import unicodedata
import warnings
from typing import Any

# Diffusers records this module's path in `model_index.json` and, when loading, looks up its loadable base
# classes *on this module* (`getattr(module, "PreTrainedTokenizer")`), so the base class must be importable
# from here under exactly this name.
from transformers import BatchEncoding, PreTrainedTokenizer

from . import chinese, english
from .text_segmentation import LanguageRun, Override, StructureTag, parse_markup, split_language_runs
from .vocab import (
    BOS_TOKEN,
    EOS_TOKEN,
    LANGUAGE_TOKENS,
    MAX_SPEAKERS,
    PAD_TOKEN,
    PAUSE_TOKENS,
    UNK_TOKEN,
    WORD_BOUNDARY_TOKEN,
    build_default_vocab,
    required_tokens,
)

__all__ = ["InstructAudioProcessor", "PreTrainedTokenizer"]

DEFAULT_MODEL_MAX_LENGTH = 2048
# Fail fast on absurdly long inputs before any G2P work: no realistic text needs more than this many
# characters per phoneme token (English averages ~1 token per 2 characters, Chinese ~2-3 per character),
# so a longer text could never fit `model_max_length` and is rejected on its raw length alone.
MAX_CHARACTERS_PER_TOKEN = 4
# When punctuation marks meet ("?!", "...,") the strongest pause wins, ranked like the normalizers rank
# the marks they merge: question over exclamation over full stop over comma.
_PAUSE_RANK = {"<,>": 0, "<.>": 1, "<!>": 2, "<?>": 3}
_LANGUAGES = tuple(LANGUAGE_TOKENS)
# Servers (the web demo) phonemize from several threads; the lazy G2P builds must happen once, and the
# English one temporarily patches process-wide state, so all builds share one lock.
_G2P_BUILD_LOCK = threading.RLock()


class InstructAudioProcessor(PreTrainedTokenizer):
    r"""Phoneme tokenizer for InstructAudio: English ARPAbet + Mandarin pinyin initials/finals with tones.

    With no arguments it builds the default fixed vocabulary in code (no files needed). `save_pretrained`
    writes `vocab.json` and `tokenizer_config.json`; `from_pretrained` reads them back with identical ids.

    Parameters:
        vocab_file (`str`, *optional*):
            Path to a `vocab.json` (`{token: id}`); defaults to the built-in vocabulary.
        num_speakers (`int`, defaults to 4):
            Speaker tags `[S0]`..`[S<num_speakers - 1>]` are accepted in the text (at most 8; the vocabulary
            always reserves 8, so changing this never moves ids).
        default_language (`str`, defaults to `"en"`):
            Language (`"en"` or `"zh"`) of a text segment without any Han character or Latin letter
            (e.g. only digits).
        model_max_length (`int`, defaults to 2048):
            Longest phoneme sequence the model can place. Longer texts raise a `ValueError` (never silently
            truncated); texts over `MAX_CHARACTERS_PER_TOKEN * model_max_length` characters are rejected before
            any G2P work.
    """

    vocab_files_names = {"vocab_file": "vocab.json"}
    model_input_names = ["input_ids", "attention_mask"]

    def __init__(
        self,
        vocab_file: str | None = None,
        num_speakers: int = 4,
        default_language: str = "en",
        model_max_length: int = DEFAULT_MODEL_MAX_LENGTH,
        pad_token: str = PAD_TOKEN,
        unk_token: str = UNK_TOKEN,
        bos_token: str = BOS_TOKEN,
        eos_token: str = EOS_TOKEN,
        **kwargs: Any,
    ):
        if not 1 <= num_speakers <= MAX_SPEAKERS:
            raise ValueError(f"num_speakers must be between 1 and {MAX_SPEAKERS}, got {num_speakers}.")
        if default_language not in _LANGUAGES:
            raise ValueError(f"default_language must be one of {_LANGUAGES}, got {default_language!r}.")
        # The base class asks for the vocabulary during its own __init__, so it must exist before.
        self.vocab: dict[str, int] = _load_vocab(vocab_file) if vocab_file else build_default_vocab()
        self.ids_to_tokens: dict[int, str] = {index: token for token, index in self.vocab.items()}
        self.num_speakers = num_speakers
        self.default_language = default_language
        # G2P front ends load dictionaries and models, so they are built on first use only.
        self._english_g2p: english.EnglishG2P | None = None
        self._chinese_g2p: chinese.ChineseG2P | None = None
        # Token strings like "<.>" must come back verbatim from decode, not "cleaned up".
        kwargs.setdefault("clean_up_tokenization_spaces", False)
        super().__init__(
            num_speakers=num_speakers,
            default_language=default_language,
            model_max_length=model_max_length,
            pad_token=pad_token,
            unk_token=unk_token,
            bos_token=bos_token,
            eos_token=eos_token,
            **kwargs,
        )

    # ------------------------------------------------------------------ vocabulary (tokenizer API)

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def get_vocab(self) -> dict[str, int]:
        return {**self.vocab, **self._added_tokens_encoder}

    def _convert_token_to_id(self, token: str) -> int:
        return self.vocab.get(token, self.vocab[UNK_TOKEN])

    def _convert_id_to_token(self, index: int) -> str:
        return self.ids_to_tokens.get(index, UNK_TOKEN)

    def save_vocabulary(self, save_directory: str, filename_prefix: str | None = None) -> tuple[str, ...]:
        """Write `vocab.json` (tokens in id order, so the file reads like the vocabulary layout)."""
        if not os.path.isdir(save_directory):
            raise ValueError(f"Vocabulary path {save_directory!r} should be a directory.")
        prefix = f"{filename_prefix}-" if filename_prefix else ""
        path = os.path.join(save_directory, prefix + self.vocab_files_names["vocab_file"])
        ordered = dict(sorted(self.vocab.items(), key=lambda item: item[1]))
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(ordered, handle, ensure_ascii=False, indent=1)
            handle.write("\n")
        return (path,)

    def __getstate__(self) -> dict[str, Any]:
        # The G2P front ends hold models and caches; a pickled processor (e.g. sent to `datasets.map`
        # workers) rebuilds them on first use instead of shipping them.
        state = self.__dict__.copy()
        state["_english_g2p"] = None
        state["_chinese_g2p"] = None
        return state

    # ------------------------------------------------------------------ text -> tokens

    @property
    def max_text_characters(self) -> int:
        """Longest raw text accepted before G2P; see `MAX_CHARACTERS_PER_TOKEN`."""
        return MAX_CHARACTERS_PER_TOKEN * self.model_max_length

    def __call__(
        self,
        text: str | list[str],
        padding: bool | str = True,
        return_tensors: str | None = "pt",
        **kwargs: Any,
    ) -> BatchEncoding:
        """Phonemize and encode one text or a batch.

        Unlike the transformers default, batches are padded (with `<pad>`, id 0) and returned as PyTorch
        tensors unless asked otherwise, since a phoneme batch is only ever fed to the model that way.

        Returns:
            `BatchEncoding` with `input_ids` and `attention_mask` of shape `(batch, max_phoneme_tokens)`
            (a single string gives a batch of one when `return_tensors` is set).
        """
        return super().__call__(text, padding=padding, return_tensors=return_tensors, **kwargs)

    def tokenize(self, text: str, **kwargs: Any) -> list[str]:
        # The whole text is one unit (tags, overrides and language runs interact), so the base class's
        # splitting on special tokens is bypassed.
        return self.phonemize(text)

    def _tokenize(self, text: str, **kwargs: Any) -> list[str]:
        return self.phonemize(text)

    def phonemize(self, text: str) -> list[str]:
        """Turn instruction-audio text into phoneme token strings.

        Args:
            text: English and/or Chinese text, optionally with `[S0]`..`[S<n-1>]` speaker tags, lyrics tags
                and pronunciation overrides (`行{hang2}`, `about{AH0 B AW1 T}`).

        Returns:
            The token strings, all in the vocabulary. Characters no normalizer supports (emoji, foreign
            scripts) are dropped with a `UserWarning` naming them.

        Raises:
            ValueError: for malformed markup (with its position), an invalid override, a speaker turn
                without text, a text with nothing to speak after normalization, or a text longer than
                `model_max_length` tokens (or `max_text_characters` characters).
        """
        if not isinstance(text, str):
            raise TypeError(f"phonemize expects a string, got {type(text).__name__}.")
        if len(text) > self.max_text_characters:
            raise ValueError(
                f"Text is {len(text)} characters long; at most {self.max_text_characters} characters "
                f"({MAX_CHARACTERS_PER_TOKEN} per token of model_max_length={self.model_max_length}) are accepted."
            )
        tokens: list[str] = []
        dropped: list[str] = []
        speaker: StructureTag | None = None  # the speaker tag whose turn is being read
        turn_has_words = True
        has_words = has_lyrics_tag = False
        for item in parse_markup(text, self.num_speakers):
            if isinstance(item, StructureTag):
                if item.is_speaker:
                    _check_turn(speaker, turn_has_words)
                    speaker, turn_has_words = item, False
                else:
                    has_lyrics_tag = True
                tokens.append(item.token)
                continue
            for run in split_language_runs(item, self.default_language):  # type: ignore[arg-type]
                run_tokens = self._phonemize_run(run, dropped)
                if run_tokens:
                    tokens.extend(run_tokens)
                    has_words = turn_has_words = True
        _check_turn(speaker, turn_has_words)
        if dropped:
            warnings.warn(
                f"Dropped characters no normalizer supports: {', '.join(map(repr, dict.fromkeys(dropped)))}.",
                UserWarning,
                stacklevel=2,
            )
        # A lyrics sheet may be all structure ("[inst]" for an instrumental); anything else needs words.
        if not has_words and not has_lyrics_tag:
            raise ValueError(
                f"Nothing to speak in {_preview(text)} after normalization: it has no words, only "
                "punctuation, symbols or unsupported characters."
            )
        if len(tokens) > self.model_max_length:
            raise ValueError(
                f"Text gives {len(tokens)} phoneme tokens; the model can place at most "
                f"model_max_length={self.model_max_length}. Split it into shorter texts."
            )
        return self._known_tokens(tokens)

    def _known_tokens(self, tokens: list[str]) -> list[str]:
        """Map tokens outside the vocabulary to `<unk>`, loudly: a G2P front end produced something odd."""
        unknown = [token for token in tokens if token not in self.vocab]
        if not unknown:
            return tokens
        warnings.warn(
            f"G2P produced tokens outside the vocabulary, encoded as <unk>: {sorted(set(unknown))}.",
            UserWarning,
            stacklevel=3,
        )
        return [token if token in self.vocab else UNK_TOKEN for token in tokens]

    def _phonemize_run(self, run: LanguageRun, dropped: list[str]) -> list[str]:
        """Tokens of one language run: its language token, words separated by `<wb>` or pauses."""
        if run.language == "en":
            items = self._english_items(run, dropped)
        else:
            items = self._chinese_items(run, dropped)
        return _assemble_run(LANGUAGE_TOKENS[run.language], items)

    # ------------------------------------------------------------------ English

    @property
    def english_g2p(self) -> english.EnglishG2P:
        if self._english_g2p is None:
            with _G2P_BUILD_LOCK:  # the first build patches process-wide state (nltk.download, sys.modules)
                if self._english_g2p is None:
                    self._english_g2p = english.EnglishG2P()
        return self._english_g2p

    def _english_items(self, run: LanguageRun, dropped: list[str]) -> list[list[str] | str]:
        """Words (as phone lists) and pause tokens of an English run.

        Each overridden word is swapped for a placeholder word before normalization, so that the text
        around it is normalized in full context ("Dr. Smith{...}" still reads "doctor"), and the
        placeholder is swapped for the override's phones afterwards.
        """
        placeholders: dict[str, list[str]] = {}
        prefix = _placeholder_prefix(run.text)
        pieces: list[str] = []
        cursor = 0
        for override in sorted(run.overrides, key=lambda override: override.start):
            placeholder = prefix + _letters_for(len(placeholders))
            placeholders[placeholder] = _english_override_phones(override)
            pieces += [run.text[cursor : override.start], f" {placeholder} "]
            cursor = override.end
        pieces.append(run.text[cursor:])
        kept, removed = english.drop_unsupported(unicodedata.normalize("NFKC", "".join(pieces)))
        dropped.extend(removed)

        items: list[list[str] | str] = []
        placed = 0
        for phrase, pause in _phrases(english.normalize_english(kept) if kept.strip() else ""):
            words: list[str] = []  # a stretch of ordinary words, sent to G2P together for context
            for word in [*phrase.split(), None]:
                if word is not None and word not in placeholders:
                    words.append(word)
                    continue
                if words:
                    items.extend(phones for phones in self.english_g2p(" ".join(words)) if phones)
                    words = []
                if word is not None:
                    items.append(placeholders[word])
                    placed += 1
            if pause:
                items.append(pause)
        if placed != len(placeholders):
            raise ValueError(
                f"Could not place the English pronunciation overrides of {run.text!r}; put each right after "
                "a plain word."
            )
        return items

    # ------------------------------------------------------------------ Chinese

    @property
    def chinese_g2p(self) -> chinese.ChineseG2P:
        if self._chinese_g2p is None:
            with _G2P_BUILD_LOCK:
                if self._chinese_g2p is None:
                    self._chinese_g2p = chinese.ChineseG2P()
        return self._chinese_g2p

    def _normalize_chinese(self, text: str, dropped: list[str] | None) -> str:
        kept, removed = chinese.drop_unsupported(unicodedata.normalize("NFKC", text))
        if dropped is not None:
            dropped.extend(removed)
        # Spaces carry nothing in Chinese and would shift override indices inside G2P's segmentation.
        return "".join(chinese.normalize_chinese(kept).split())

    def _chinese_items(self, run: LanguageRun, dropped: list[str]) -> list[list[str] | str]:
        """Words (as initial/final token lists) and pause tokens of a Chinese run.

        The run is normalized as a whole ("2025年" must be read as a year), and each override is placed in
        the normalized text through the normalized prefix that ends with its character.
        """
        normalized = self._normalize_chinese(run.text, dropped)
        overrides = {
            self._locate_chinese_override(run, override, normalized): override for override in run.overrides
        }
        items: list[list[str] | str] = []
        offset = 0
        for phrase, pause in _phrases(normalized):
            if phrase:
                phrase_overrides = {
                    index - offset: _chinese_override_syllable(override)
                    for index, override in overrides.items()
                    if offset <= index < offset + len(phrase)
                }
                words = self.chinese_g2p(phrase, overrides=phrase_overrides or None)
                items.extend(word for word in words if word)
            if pause:
                items.append(pause)
            offset += len(phrase) + (1 if pause else 0)
        return items

    def _locate_chinese_override(self, run: LanguageRun, override: Override, normalized: str) -> int:
        char = unicodedata.normalize("NFKC", run.text[override.start])
        index = len(self._normalize_chinese(run.text[: override.end], None)) - 1
        if 0 <= index < len(normalized) and normalized[index] == char:
            return index
        # The prefix did not normalize like the whole run (context to the right changed a reading):
        # fall back to the nearest occurrence of the character.
        candidates = [position for position, other in enumerate(normalized) if other == char]
        if not candidates:
            raise ValueError(
                f"Pronunciation override '{{{override.value}}}' at character {override.position}: its "
                f"character {char!r} does not survive normalization."
            )
        return min(candidates, key=lambda position: abs(position - index))


def _load_vocab(vocab_file: str) -> dict[str, int]:
    """Read and check a `vocab.json`: unique ids 0..n-1 covering every token the processor emits."""
    with open(vocab_file, encoding="utf-8") as handle:
        vocab = json.load(handle)
    if not isinstance(vocab, dict) or not all(isinstance(index, int) for index in vocab.values()):
        raise ValueError(f"{vocab_file} must map token strings to integer ids.")
    if sorted(vocab.values()) != list(range(len(vocab))):
        raise ValueError(f"{vocab_file} must give each token a distinct id in 0..{len(vocab) - 1}.")
    missing = required_tokens() - vocab.keys()
    if missing:
        raise ValueError(f"{vocab_file} lacks tokens the processor emits: {sorted(missing)[:20]}.")
    return vocab


def _phrases(normalized: str) -> list[tuple[str, str | None]]:
    """Split normalized text into (phrase, pause token after it or None); punctuation is dropped."""
    phrases: list[tuple[str, str | None]] = []
    start = 0
    for index, char in enumerate(normalized):
        pause = PAUSE_TOKENS.get(char)
        if pause is not None:
            phrases.append((normalized[start:index], pause))
            start = index + 1
    phrases.append((normalized[start:], None))
    return phrases


def _assemble_run(language_token: str, items: list[list[str] | str]) -> list[str]:
    """Language token, then words joined by `<wb>` or by the (merged) pause between them."""
    tokens: list[str] = []
    pending_pause: str | None = None
    has_word = False
    for item in items:
        if isinstance(item, str):
            if has_word and (pending_pause is None or _PAUSE_RANK[item] > _PAUSE_RANK[pending_pause]):
                pending_pause = item
            continue
        if pending_pause is not None:
            tokens.append(pending_pause)
            pending_pause = None
        elif has_word:
            tokens.append(WORD_BOUNDARY_TOKEN)
        tokens.extend(item)
        has_word = True
    if pending_pause is not None:
        tokens.append(pending_pause)
    return [language_token, *tokens] if has_word else []


def _placeholder_prefix(text: str) -> str:
    """Letters that start no word of `text`, for placeholder words the normalizer keeps verbatim."""
    prefix = "qzvx"
    while prefix in text.lower():
        prefix += "q"
    return prefix


def _letters_for(number: int) -> str:
    """0 -> "a", 25 -> "z", 26 -> "ba": placeholders must be letters only, or the normalizer reads digits."""
    letters = ""
    while True:
        number, digit = divmod(number, 26)
        letters = chr(ord("a") + digit) + letters
        if number == 0:
            return letters


def _english_override_phones(override: Override) -> list[str]:
    phones = override.value.upper().split()
    invalid = [phone for phone in phones if phone not in _ARPABET]
    if invalid:
        raise ValueError(
            f"Invalid phones {invalid} in the English pronunciation override '{{{override.value}}}' at "
            f"character {override.position}: use ARPAbet phones, vowels with a stress digit 0-2 (e.g. AH0 B AW1 T)."
        )
    return phones


def _chinese_override_syllable(override: Override) -> str:
    syllable = override.value.lower().replace("ü", "v")
    problem = None
    if len(syllable.split()) != 1:
        problem = "it must be exactly one pinyin syllable for the one character before it"
    else:
        try:
            tokens = chinese.split_syllable(syllable)
        except ValueError as error:
            problem = str(error)
        else:
            if not tokens or any(token not in _PINYIN for token in tokens):
                problem = "it is not a toned pinyin syllable"
    if problem is not None:
        raise ValueError(
            f"Invalid Chinese pronunciation override '{{{override.value}}}' at character {override.position}: "
            f"{problem} (expected e.g. hang2, tone digit 1-5)."
        )
    return syllable


def _check_turn(speaker: StructureTag | None, has_words: bool) -> None:
    if speaker is not None and not has_words:
        raise ValueError(f"Speaker tag {speaker.token} at character {speaker.position} has no text to speak.")


def _preview(text: str, limit: int = 40) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


_ARPABET = frozenset(english.ARPABET_PHONES)
_PINYIN = frozenset(chinese.PINYIN_INITIALS) | frozenset(chinese.PINYIN_FINAL_TOKENS)
