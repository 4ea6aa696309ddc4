"""Phone timings of the demo corpus's speech, from the synthesizers that spoke it.

A clip's timings are recovered by rendering it again the way `plan.render_job` did (the plan gives every
clip's render parameters from the corpus seed, and a render is deterministic), with the engines asked
for their timings as they synthesize:

- flite: `flite -voice V -psdur -f TEXT -o WAV` writes the same wav as the renderer's call and prints
  each utterance's phones as `phone:end_time` pairs, times restarting at each utterance (flite breaks a
  text into utterances at sentence ends and concatenates their waves). The last end time of an
  utterance runs a few ms past its wave: each utterance's overshoot is estimated as an equal share of
  the total overshoot against the wav's length.
- espeak-ng: libespeak-ng initialised with phoneme events, driven exactly as the `espeak-ng` command
  drives it (same voice, pitch, rate and synthesis flags: the samples are identical), reports each
  phoneme's start sample at 22,050 Hz; a phoneme ends where the next begins and the last at the end of
  the wave.

The engine's wav then goes through the renderer's own transforms (`speech.process_engine_audio`), so
the trimming of each turn (`speech.trim_bounds`) is exactly the renderer's. `sox tempo` and `sox pitch`
move time by WSOLA splices, up to ~25 ms away from a linear map; the actual map is measured by running
the same time-changing effects on a copy of the wav with a slow ramp in a second channel, whose output
value says which input time each output sample came from. Dialogue turns are placed with the renderer's
gaps (`speech.gap_samples`).
"""

from __future__ import annotations

import ctypes
import json
import os
import pickle
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from . import speech
from .levels import SAMPLING_RATE
from .plan import HELD_OUT_CASES, PARTS, TARGET_CLIPS, plan_corpus

__all__ = [
    "ClipTimings",
    "SynthPhone",
    "clip_timings",
    "espeak_phones",
    "flite_phones",
    "parse_flite_durations",
    "planned_renders",
    "turn_timings",
]

# Value of the ramp channel at the last input sample: small next to speech so that WSOLA's choice of
# splices is the one it makes on the speech alone, large enough for sub-sample resolution in sox's int32.
_RAMP_PEAK = 0.01


@dataclass(frozen=True)
class SynthPhone:
    """One phone as the synthesizer produced it.

    Attributes:
        name: the engine's phone name (`"ax"`, `"pau"` for flite; `"@"`, `"_:"` for espeak-ng).
        start_s, end_s: where it lies in the clip, seconds (engine seconds before `turn_timings` maps them).
        phone_set: `"flite"`, `"espeak_en"`, `"espeak_zh"`, or `"silence"` for trimming margins and gaps.
    """

    name: str
    start_s: float
    end_s: float
    phone_set: str


@dataclass
class ClipTimings:
    """All phones of a clip in clip seconds, with its length in samples at 22,050 Hz."""

    phones: list[SynthPhone]
    num_samples: int


# ---------------------------------------------------------------------------------------------- flite
def parse_flite_durations(output: str, wave_seconds: float) -> list[SynthPhone]:
    """Phones from `flite -psdur` output (one line of `phone:end` pairs per utterance), in wave seconds.

    Utterances are laid end to end; the total overshoot of their last end times past `wave_seconds` is
    shared equally among them, and every time is clamped to the wave.
    """
    utterances = []
    for line in output.splitlines():
        pairs = [item.rsplit(":", 1) for item in line.split()]
        if pairs:
            utterances.append([(name, float(end)) for name, end in pairs])
    if not utterances:
        return []
    overshoot = (sum(utterance[-1][1] for utterance in utterances) - wave_seconds) / len(utterances)
    phones: list[SynthPhone] = []
    offset = 0.0
    for utterance in utterances:
        start = 0.0
        for name, end in utterance:
            phones.append(
                SynthPhone(name, min(offset + start, wave_seconds), min(offset + end, wave_seconds), "flite")
            )
            start = end
        offset += utterance[-1][1] - overshoot
    return phones


def flite_phones(text: str, voice: str, workdir: str) -> tuple[str, list[SynthPhone]]:
    """Synthesize `text` as the renderer does, with timings: `(wav path, phones in wave seconds)`."""
    text_file, wav_file = os.path.join(workdir, "text.txt"), os.path.join(workdir, "engine.wav")
    with open(text_file, "w", encoding="utf-8") as handle:
        handle.write(text + "\n")
    result = subprocess.run(
        ["flite", "-voice", voice, "-psdur", "-f", text_file, "-o", wav_file],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"flite failed ({result.returncode}): {result.stderr}")
    info = sf.info(wav_file)
    return wav_file, parse_flite_durations(result.stdout, info.frames / info.samplerate)


# ---------------------------------------------------------------------------------------------- espeak-ng
class _Event(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", ctypes.c_char * 8),
    ]


_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event)
)
# speak_lib.h
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_PHONEME_EVENTS = 0x0001
_EVENT_LIST_TERMINATED, _EVENT_PHONEME = 0, 7
_POS_CHARACTER = 1
_CHARS_AUTO, _PHONEMES, _ENDPAUSE = 0, 0x100, 0x1000  # the flags the espeak-ng command synthesizes with
_RATE, _PITCH = 1, 3


class _Espeak:
    """libespeak-ng in synchronous mode with phoneme events, in a process that synthesizes once.

    The library keeps state from one synthesis to the next (the samples of a second text differ from
    the `espeak-ng` command's), and `espeak_Terminate` followed by a new `espeak_Initialize` hangs; so
    each synthesis runs in a fresh child process (`espeak_phones`).
    """

    def __init__(self, library: str = "libespeak-ng.so.1"):
        self._lib = ctypes.CDLL(library)
        self.sampling_rate = self._lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, 0, None, _INITIALIZE_PHONEME_EVENTS
        )
        if self.sampling_rate <= 0:
            raise RuntimeError(f"espeak_Initialize failed ({self.sampling_rate}).")
        self._chunks: list[np.ndarray] = []
        self._events: list[tuple[str, int]] = []
        self._callback = _CALLBACK(self._receive)  # kept alive: the library holds a raw pointer to it
        self._lib.espeak_SetSynthCallback(self._callback)

    def _receive(self, wav, num_samples, events) -> int:
        if num_samples > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(num_samples,)).copy())
        index = 0
        while events[index].type != _EVENT_LIST_TERMINATED:
            event = events[index]
            if event.type == _EVENT_PHONEME:
                self._events.append(
                    (bytes(event.id).split(b"\0")[0].decode("utf-8", "replace"), event.sample)
                )
            index += 1
        return 0

    def synthesize(self, text: str, voice: str, pitch: int | None, speed: int) -> tuple[np.ndarray, list]:
        """`(int16 samples, [(phoneme, start sample), ...])`, as `espeak-ng -v voice [-p pitch] -s speed`."""
        if self._lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise RuntimeError(f"espeak-ng has no voice {voice!r}.")
        self._lib.espeak_SetParameter(_RATE, speed, 0)
        if pitch is not None:
            self._lib.espeak_SetParameter(_PITCH, pitch, 0)
        data = (text + "\n").encode("utf-8")  # the renderer writes the text with a newline to a file
        status = self._lib.espeak_Synth(
            ctypes.c_char_p(data), len(data) + 1, 0, _POS_CHARACTER, 0, _CHARS_AUTO | _PHONEMES | _ENDPAUSE,
            None, None,
        )  # fmt: skip
        if status != 0 or self._lib.espeak_Synchronize() != 0:
            raise RuntimeError(f"espeak_Synth failed ({status}) for {text!r}.")
        samples = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)
        return samples, self._events


def _in_child(function, *args):
    """`function(*args)` run in a forked child process; its result (or exception) comes back pickled."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never returns into the caller's code
        os.close(read_end)
        try:
            try:
                payload = pickle.dumps((True, function(*args)))
            except BaseException as err:  # noqa: BLE001 - reported to the parent
                payload = pickle.dumps((False, RuntimeError(f"{type(err).__name__}: {err}")))
            with os.fdopen(write_end, "wb") as pipe:
                pipe.write(payload)
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        payload = pipe.read()
    os.waitpid(pid, 0)
    if not payload:
        raise RuntimeError("the espeak-ng child process died without an answer")
    ok, result = pickle.loads(payload)
    if not ok:
        raise result
    return result


def _espeak_once(text: str, voice: str, pitch: int | None, speed: int):
    espeak = _Espeak()
    samples, events = espeak.synthesize(text, voice, pitch, speed)
    return samples, events, espeak.sampling_rate


def espeak_phones(
    text: str, voice: str, pitch: int | None, speed: int, phone_set: str
) -> tuple[np.ndarray, int, list[SynthPhone]]:
    """`(int16 samples, sampling rate, phones in wave seconds)` of `text`, sample for sample what
    `espeak-ng -v voice [-p pitch] -s speed -f TEXT -w WAV` writes.

    A phoneme starts at its event's sample and ends where the next begins (the last one at the end).
    """
    samples, events, rate = _in_child(_espeak_once, text, voice, pitch, speed)
    bounds = [sample for _, sample in events] + [samples.size]
    phones = [
        SynthPhone(name, bounds[index] / rate, bounds[index + 1] / rate, phone_set)
        for index, (name, _) in enumerate(events)
    ]
    return samples, rate, phones


# ---------------------------------------------------------------------------------------------- rendering
def _time_warp(wav_file: str, persona: speech.Persona, prosody: speech.Prosody) -> np.ndarray | None:
    """Input seconds that each output sample of the sox chain came from; `None` when time is untouched.

    `wav_file` must hold what the sox chain was given (see `speech.process_engine_audio`).
    """
    moving = speech.sox_time_effects(persona, prosody)
    if not moving:
        return None
    audio, rate = sf.read(wav_file, dtype="float32")
    ramp = np.arange(audio.size, dtype=np.float64) / audio.size * _RAMP_PEAK
    with tempfile.TemporaryDirectory() as scratch:
        two_channels = os.path.join(scratch, "ramp.wav")
        sf.write(two_channels, np.stack([audio, ramp.astype(np.float32)], axis=1), rate, subtype="FLOAT")
        raw = subprocess.run(
            ["sox", "-R", "-D", "-q", two_channels, "-t", "raw", "-e", "floating-point", "-b", "32",
             "-c", "2", "-r", str(SAMPLING_RATE), "-", *moving, "rate", "-v", str(SAMPLING_RATE)],
            capture_output=True, check=True,
        ).stdout  # fmt: skip
    position = np.frombuffer(raw, dtype=np.float32).reshape(-1, 2)[:, 1].astype(np.float64)
    # Crossfades blend two positions; the running maximum keeps the map monotonic for interpolation.
    return np.maximum.accumulate(position / _RAMP_PEAK * audio.size / rate)


def _to_clip_time(seconds: np.ndarray, warp: np.ndarray | None) -> np.ndarray:
    if warp is None:
        return seconds
    output_seconds = np.arange(warp.size) / SAMPLING_RATE
    return np.interp(seconds, warp, output_seconds)


def turn_timings(
    text: str,
    persona: speech.Persona,
    prosody: speech.Prosody,
    seed: int,
    workdir: str,
) -> tuple[list[SynthPhone], int]:
    """One rendered turn's phones in turn seconds and its length in samples (as `speech.render_turn`).

    Args:
        text: raw text, as the plan gives it; `speech.engine_text` makes the engine's input.
        persona, prosody, seed: the turn's render parameters.
        workdir: scratch folder.
    """
    spoken = speech.engine_text(text, persona.language)
    with tempfile.TemporaryDirectory(dir=workdir) as scratch:
        if persona.engine == "flite":
            wav_file, phones = flite_phones(spoken, persona.voice, scratch)
        else:
            voice, pitch, speed = speech.espeak_settings(
                persona, speech.uses_engine_whisper(persona, prosody)
            )
            samples, rate, phones = espeak_phones(spoken, voice, pitch, speed, f"espeak_{persona.language}")
            wav_file = os.path.join(scratch, "engine.wav")
            sf.write(wav_file, samples, rate, subtype="PCM_16")
        audio = speech.process_engine_audio(wav_file, persona, prosody, seed)
        warp = _time_warp(wav_file, persona, prosody)
    first, stop = speech.trim_bounds(audio)
    length_s = (stop - first) / SAMPLING_RATE
    starts = _to_clip_time(np.array([p.start_s for p in phones]), warp) - first / SAMPLING_RATE
    ends = _to_clip_time(np.array([p.end_s for p in phones]), warp) - first / SAMPLING_RATE
    placed = [
        SynthPhone(
            phone.name, float(np.clip(start, 0, length_s)), float(np.clip(end, 0, length_s)), phone.phone_set
        )
        for phone, start, end in zip(phones, starts, ends)
    ]
    return placed, stop - first


def clip_timings(render: dict[str, Any], workdir: str) -> ClipTimings:
    """Phones of a planned speech or dialogue clip (`Job.render`), in clip seconds.

    Silence the renderer added around and between turns (trimming margins the engine did not time,
    dialogue gaps) appears as phones of the `"silence"` set, so the phones tile the whole clip.
    """
    if render["kind"] == "speech":
        turns = [(render["text"], render["persona"], render["prosody"], render["seed"])]
        gaps: list[float] = []
    elif render["kind"] == "dialogue":
        turns = [
            (turn["text"], render["personas"][turn["speaker"]], render["prosodies"][turn["speaker"]],
             render["seed"] + number)
            for number, turn in enumerate(render["turns"])
        ]  # fmt: skip
        gaps = render["gaps_s"]
    else:
        raise ValueError(f"No synthesizer timings for a {render['kind']!r} clip.")
    phones: list[SynthPhone] = []
    offset = 0
    for number, (text, persona_name, prosody, seed) in enumerate(turns):
        persona, prosody = speech.persona_by_name(persona_name), speech.Prosody(**prosody)
        turn_phones, length = turn_timings(text, persona, prosody, seed, workdir)
        end = length + (speech.gap_samples(gaps[number]) if number < len(gaps) else 0)
        phones += _tile(turn_phones, offset / SAMPLING_RATE, (offset + end) / SAMPLING_RATE)
        offset += end
    return ClipTimings(phones, offset)


def _tile(phones: list[SynthPhone], start_s: float, end_s: float) -> list[SynthPhone]:
    """Shift `phones` by `start_s` and fill any time before, between or after them up to `end_s` with silence."""
    tiled: list[SynthPhone] = []
    cursor = start_s
    for phone in phones:
        begin, finish = start_s + phone.start_s, start_s + phone.end_s
        if begin > cursor + 1e-9:
            tiled.append(SynthPhone("(silence)", cursor, begin, "silence"))
        tiled.append(SynthPhone(phone.name, max(begin, cursor), max(finish, cursor), phone.phone_set))
        cursor = max(cursor, finish)
    if end_s > cursor + 1e-9:
        tiled.append(SynthPhone("(silence)", cursor, end_s, "silence"))
    return tiled


# ---------------------------------------------------------------------------------------------- the plan
def planned_renders(corpus_dir: str | os.PathLike, rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Render parameters of `rows` (metadata rows of a corpus folder), from the corpus's seed.

    Raises:
        ValueError: when a row's render hash differs from the plan's (the corpus was built by another
            generator version or seed): its timings would belong to other audio.
    """
    config = json.loads((Path(corpus_dir) / "corpus_config.json").read_text(encoding="utf-8"))
    parts = sorted({row["part"] for row in rows}, key=PARTS.index)
    # A clip's plan does not depend on the scale, so plan just far enough to reach the largest index.
    scale = max(
        (int(row["id"].rsplit("_", 1)[1]) + 1)
        / (HELD_OUT_CASES if row["id"].startswith("heldout_") else TARGET_CLIPS)[row["part"]]
        for row in rows
    )
    jobs = {job.clip_id: job for job in plan_corpus(config["seed"], scale, tuple(parts)).jobs}
    renders = {}
    for row in rows:
        job = jobs[row["id"]]
        if row.get("render_hash") != job.render_hash:
            raise ValueError(
                f"{row['id']}: render hash {row.get('render_hash')} differs from the plan's {job.render_hash}."
            )
        renders[row["id"]] = job.render
    return renders
