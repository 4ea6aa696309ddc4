"""Music signal measurements with librosa: tempo, key and mode, and timbre features for nearest-centroid
instrument/genre classification.

- **Tempo**: `librosa.beat.beat_track` (dynamic-programming beat tracker over the onset envelope, here
  averaged over mel bands) on a 22.05 kHz copy. Errors are relative; a half- or double-tempo estimate is an *octave error*, which beat
  trackers make routinely and which is reported separately from plain misses.
- **Tempo ratio of two clips** (contrast pairs): the onset envelope's autocorrelation on a log-lag axis
  (`log_lag_autocorrelation`) shifts without changing shape when the tempo changes, so the best-matching
  shift between two clips' curves is their tempo ratio (`tempo_ratio`). On the demo corpus' ground-truth
  tempo pairs (6-s pieces) it gets 19 of 20 ratios within 25 % (in log) of the rendered ratio, where the
  ratio of two beat-tracker estimates gets 12: the beat tracker's octave and 3:2 errors on short pieces
  without drums rarely hit both sides alike.
- **Key and mode**: the clip's mean chroma (constant-Q, on the harmonic part after HPSS so drums do not
  smear it) is correlated with the 24 rotations of the Krumhansl-Kessler major and minor key profiles.
  `mode_score` = best major correlation - best minor correlation; > 0 leans major. The decision threshold
  on it is calibrated (0 without calibration).
- **Timbre**: a fixed vector of summary statistics (`TIMBRE_FEATURES`): spectral centroid, bandwidth,
  roll-off and flatness, zero-crossing rate, harmonic energy ratio (HPSS), onset rate, attack time (onset
  to envelope peak), MFCC 1-12 means, and log tempo (for genre).
"""

from __future__ import annotations

import warnings

import numpy as np

from ..audio.io import resample
from ._optional import import_librosa

MUSIC_SAMPLING_RATE = 22050
N_FFT, HOP = 2048, 512
TEMPO_TOLERANCE = 0.08
#: Tempo words as the corpus instructions define them: slow below 85 BPM, fast from 120 BPM, medium between.
PACE_BOUNDARIES_BPM = (85.0, 120.0)
#: Krumhansl & Kessler (1982) probe-tone ratings, tonic first (C major / C minor).
KRUMHANSL_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
KRUMHANSL_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])
PITCH_CLASSES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
TIMBRE_FEATURES = (
    "log_centroid_mean", "log_centroid_std", "log_bandwidth_mean", "log_rolloff_mean", "log_flatness_mean",
    "zero_crossing_rate", "harmonic_ratio", "onset_rate", "log_attack_s",
    *(f"mfcc{index}_mean" for index in range(1, 13)),
    "log2_tempo",
)  # fmt: skip


def to_music_rate(audio: np.ndarray, sampling_rate: int) -> np.ndarray:
    return resample(np.asarray(audio, dtype=np.float32), sampling_rate, MUSIC_SAMPLING_RATE)


def estimate_tempo(audio: np.ndarray, sampling_rate: int = MUSIC_SAMPLING_RATE) -> float | None:
    """Tempo in BPM from librosa's beat tracker, or None when it finds no beat (silence, a single hit)."""
    librosa = import_librosa()
    audio = to_music_rate(audio, sampling_rate)
    # beat_track's own onset envelope takes the median over mel bands, which on sparse arrangements (one lead
    # instrument and a bass) often flattens the beat: on the demo corpus' 60 held-out pieces the mean over
    # bands put 68 % of estimates within 8 % of the true tempo, against 57 % for the median.
    envelope = librosa.onset.onset_strength(y=audio, sr=MUSIC_SAMPLING_RATE, hop_length=HOP)
    tempo, beats = librosa.beat.beat_track(onset_envelope=envelope, sr=MUSIC_SAMPLING_RATE, hop_length=HOP)
    tempo = float(np.atleast_1d(tempo)[0])
    return tempo if tempo > 0 and len(beats) >= 2 else None


def tempo_error(estimated: float | None, expected: float, tolerance: float = TEMPO_TOLERANCE) -> dict:
    """Compare a tempo estimate with the expected tempo.

    Returns:
        `error_percent` (|estimated - expected| / expected * 100, None without an estimate), `within`
        (error <= tolerance), `octave_error` (not within, but within tolerance of 2x or 0.5x the expected
        tempo) and `within_allowing_octave` (either).
    """
    if estimated is None:
        return {
            "error_percent": None,
            "within": False,
            "octave_error": False,
            "within_allowing_octave": False,
        }
    relative = abs(estimated - expected) / expected
    octave = min(abs(estimated - factor * expected) / (factor * expected) for factor in (2.0, 0.5))
    within = relative <= tolerance
    octave_error = not within and octave <= tolerance
    return {
        "error_percent": 100.0 * relative,
        "within": within,
        "octave_error": octave_error,
        "within_allowing_octave": within or octave_error,
    }


def pace_of_tempo(tempo_bpm: float | None) -> str | None:
    """`slow` / `medium` / `fast` for a tempo (see `PACE_BOUNDARIES_BPM`); None without a tempo."""
    if tempo_bpm is None:
        return None
    slow_below, fast_from = PACE_BOUNDARIES_BPM
    return "slow" if tempo_bpm < slow_below else "fast" if tempo_bpm >= fast_from else "medium"


def _profile_correlations(chroma_mean: np.ndarray, profile: np.ndarray) -> np.ndarray:
    """Pearson correlation of the chroma vector with the profile rotated to each of the 12 tonics."""
    rotated = np.stack([np.roll(profile, tonic) for tonic in range(12)])
    rotated = rotated - rotated.mean(axis=1, keepdims=True)
    centred = chroma_mean - chroma_mean.mean()
    denominator = np.linalg.norm(rotated, axis=1) * np.linalg.norm(centred)
    return rotated @ centred / denominator if denominator.all() else np.zeros(12)


def key_from_chroma(chroma_mean: np.ndarray) -> dict:
    """Krumhansl-Kessler key estimate of a 12-bin mean chroma vector (C first)."""
    major, minor = (
        _profile_correlations(chroma_mean, KRUMHANSL_MAJOR),
        _profile_correlations(chroma_mean, KRUMHANSL_MINOR),
    )
    is_major = major.max() >= minor.max()
    tonic = int(np.argmax(major if is_major else minor))
    return {
        "key": f"{PITCH_CLASSES[tonic]} {'major' if is_major else 'minor'}",
        "tonic": tonic,
        "major_r": float(major.max()),
        "minor_r": float(minor.max()),
        "mode_score": float(major.max() - minor.max()),
    }


def estimate_key(
    audio: np.ndarray, sampling_rate: int = MUSIC_SAMPLING_RATE, harmonic: np.ndarray | None = None
) -> dict:
    """Key and mode of a clip: mean constant-Q chroma of its harmonic part (HPSS), then `key_from_chroma`;
    the mean chroma (C first) is returned too, as `chroma`. `harmonic` is the clip's harmonic part when the
    caller already separated it (at `MUSIC_SAMPLING_RATE`)."""
    librosa = import_librosa()
    if harmonic is None:
        harmonic = librosa.effects.harmonic(to_music_rate(audio, sampling_rate), n_fft=N_FFT, hop_length=HOP)
    chroma = librosa.feature.chroma_cqt(y=harmonic, sr=MUSIC_SAMPLING_RATE, hop_length=HOP).mean(axis=1)
    return {**key_from_chroma(chroma), "chroma": [float(value) for value in chroma]}


def mode_contrast(chroma_major: np.ndarray, chroma_minor: np.ndarray) -> float:
    """How much more major the first clip is than the second, judged at one tonic for both.

    The two sides of a mode pair share their tonic, so the tonic is estimated once, from both mean chroma
    vectors pooled (the best of the 24 key profiles), and each side's major-minor score is taken at that
    tonic: unlike each side's own best key, this cannot read a minor piece as its relative major (A minor
    and C major share every pitch class). Returns `(major_r - minor_r)[first] - (major_r - minor_r)[second]`.
    """
    first, second = np.asarray(chroma_major, float), np.asarray(chroma_minor, float)
    pooled = first / (first.sum() + 1e-12) + second / (second.sum() + 1e-12)
    tonic = int(np.argmax(np.maximum(_profile_correlations(pooled, KRUMHANSL_MAJOR),
                                     _profile_correlations(pooled, KRUMHANSL_MINOR))))  # fmt: skip

    def score(chroma: np.ndarray) -> float:
        major, minor = (
            _profile_correlations(chroma, KRUMHANSL_MAJOR),
            _profile_correlations(chroma, KRUMHANSL_MINOR),
        )
        return float(major[tonic] - minor[tonic])

    return score(first) - score(second)


#: Onset autocorrelation on a log-lag axis: lags from `LOG_LAG_MIN_S`, `LOG_LAG_BINS_PER_OCTAVE` per octave.
LOG_LAG_MIN_S = 0.12
LOG_LAG_BINS_PER_OCTAVE = 24
LOG_LAG_OCTAVES = 4.5


def log_lag_autocorrelation(envelope: np.ndarray, frame_rate: float) -> list[float | None]:
    """Unbiased, normalised autocorrelation of an onset envelope sampled on a log-lag grid (NaN -> None past
    60 % of the clip, where too few frames overlap). A tempo change shifts this curve along the axis without
    changing its shape, which is what `tempo_ratio` measures."""
    centred = envelope - envelope.mean()
    size = centred.size
    correlation = np.correlate(centred, centred, "full")[size - 1 :] / np.arange(size, 0, -1)
    correlation /= correlation[0] + 1e-12
    lags = np.arange(size) / frame_rate
    keep = lags <= 0.6 * size / frame_rate
    grid = LOG_LAG_MIN_S * 2.0 ** (
        np.arange(int(LOG_LAG_OCTAVES * LOG_LAG_BINS_PER_OCTAVE)) / LOG_LAG_BINS_PER_OCTAVE
    )
    values = np.interp(grid, lags[keep], correlation[keep], right=np.nan)
    return [None if np.isnan(value) else float(value) for value in values]


def tempo_ratio(
    faster: list[float | None], slower: list[float | None], max_octaves: float = 1.5
) -> float | None:
    """Tempo of the first clip over the second from their `log_lag_autocorrelation` curves.

    The slower clip's periodicities sit at proportionally longer lags, so its curve is the faster one's shifted
    by log2(ratio) octaves; the shift with the highest Pearson correlation over the overlapping lags (at
    least one octave) gives the ratio. Shifts both ways are searched, so a pair that went the wrong way gives
    a ratio below 1. None when the curves never overlap enough (clips too short).
    """
    first = np.array([np.nan if value is None else value for value in faster])
    second = np.array([np.nan if value is None else value for value in slower])
    limit = int(max_octaves * LOG_LAG_BINS_PER_OCTAVE)
    best: tuple[float, int] | None = None
    for shift in range(-limit, limit + 1):
        a = first[max(0, -shift) : first.size - max(0, shift)]
        b = second[max(0, shift) : second.size - max(0, -shift)]
        usable = ~(np.isnan(a) | np.isnan(b))
        if usable.sum() < LOG_LAG_BINS_PER_OCTAVE:
            continue
        x, y = a[usable] - a[usable].mean(), b[usable] - b[usable].mean()
        score = float(x @ y / np.sqrt((x @ x) * (y @ y) + 1e-12))
        if best is None or score > best[0]:
            best = (score, shift)
    return None if best is None else float(2.0 ** (best[1] / LOG_LAG_BINS_PER_OCTAVE))


def _attack_seconds(rms: np.ndarray, onsets: np.ndarray, frame_s: float) -> float:
    """Median time from each onset to the envelope peak that follows it (within 0.5 s)."""
    horizon = max(1, int(0.5 / frame_s))
    rises = [int(np.argmax(rms[onset : onset + horizon])) for onset in onsets if onset < rms.size]
    return float(np.median(rises)) * frame_s if rises else 0.5


def analyse_music(audio: np.ndarray, sampling_rate: int) -> dict:
    """Tempo, key/mode and timbre features of a music clip.

    Returns:
        `{"tempo_bpm": float | None, "key": str, "major_r", "minor_r", "mode_score": float,
        "timbre": {name: float for name in TIMBRE_FEATURES}}`.
    """
    with warnings.catch_warnings():
        # Very short or silent clips (a failed generation) make librosa warn about empty frequency sets
        # and oversized FFTs; the features are still defined and the verdicts will show the failure.
        warnings.simplefilter("ignore", UserWarning)
        return _analyse_music(to_music_rate(audio, sampling_rate))


def _analyse_music(audio: np.ndarray) -> dict:
    librosa = import_librosa()
    if audio.size < N_FFT:
        audio = np.pad(audio, (0, N_FFT - audio.size))
    sr = MUSIC_SAMPLING_RATE
    tempo = estimate_tempo(audio, sr)
    stft = librosa.stft(audio, n_fft=N_FFT, hop_length=HOP)
    magnitude = np.abs(stft)
    harmonic, percussive = librosa.decompose.hpss(stft)
    # The same separation `librosa.effects.harmonic` makes, done once for both chroma and timbre.
    key = estimate_key(
        audio, sr, harmonic=librosa.istft(harmonic, hop_length=HOP, n_fft=N_FFT, length=audio.size)
    )
    envelope = librosa.onset.onset_strength(y=audio, sr=sr, hop_length=HOP)

    eps = 1e-10
    centroid = librosa.feature.spectral_centroid(S=magnitude, sr=sr)[0]
    rms = librosa.feature.rms(S=magnitude, frame_length=N_FFT)[0]
    onset_envelope = librosa.onset.onset_strength(S=librosa.amplitude_to_db(magnitude), sr=sr)
    onsets = librosa.onset.onset_detect(onset_envelope=onset_envelope, sr=sr, hop_length=HOP)
    mfcc = librosa.feature.mfcc(
        S=librosa.power_to_db(librosa.feature.melspectrogram(S=magnitude**2, sr=sr)), n_mfcc=13
    )
    harmonic_energy, percussive_energy = (
        float(np.sum(np.abs(harmonic) ** 2)),
        float(np.sum(np.abs(percussive) ** 2)),
    )
    frame_s = HOP / sr
    timbre = {
        "log_centroid_mean": float(np.mean(np.log(centroid + eps))),
        "log_centroid_std": float(np.std(np.log(centroid + eps))),
        "log_bandwidth_mean": float(
            np.mean(np.log(librosa.feature.spectral_bandwidth(S=magnitude, sr=sr) + eps))
        ),
        "log_rolloff_mean": float(
            np.mean(np.log(librosa.feature.spectral_rolloff(S=magnitude, sr=sr) + eps))
        ),
        "log_flatness_mean": float(np.mean(np.log(librosa.feature.spectral_flatness(S=magnitude) + eps))),
        "zero_crossing_rate": float(np.mean(librosa.feature.zero_crossing_rate(audio, hop_length=HOP))),
        "harmonic_ratio": harmonic_energy / (harmonic_energy + percussive_energy + eps),
        "onset_rate": len(onsets) / (audio.size / sr),
        "log_attack_s": float(np.log(_attack_seconds(rms, onsets, frame_s) + frame_s)),
        **{f"mfcc{index}_mean": float(mfcc[index].mean()) for index in range(1, 13)},
        "log2_tempo": float(np.log2(tempo)) if tempo else float(np.log2(120.0)),
    }
    return {"tempo_bpm": tempo, **key, "timbre": timbre,
            "onset_autocorrelation": log_lag_autocorrelation(envelope, sr / HOP)}  # fmt: skip
