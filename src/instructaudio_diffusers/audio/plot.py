"""Mel-spectrogram pictures (matplotlib, imported only when a picture is asked for)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def mel_figure(
    log_mels: Sequence[np.ndarray],
    sampling_rate: int,
    hop_length: int,
    titles: Sequence[str] = (),
    vmin: float | None = None,
    vmax: float | None = None,
):
    """One panel per log-mel `(n_mels, frames)`, stacked, time in seconds; returns a matplotlib `Figure`.

    Uses matplotlib's object API on an Agg canvas: no pyplot global state, so concurrent renders (a web
    server's threads) cannot draw into each other's figures. `vmin`/`vmax` fix the colour scale, so that
    pictures drawn separately (an original and its reconstruction) compare by colour.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as err:
        raise ImportError(
            "Plotting mel-spectrograms needs matplotlib (in the demo, training and app extras): "
            "pip install matplotlib"
        ) from err
    figure = Figure(figsize=(8, 2.6 * len(log_mels)), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    axes = np.atleast_1d(figure.subplots(len(log_mels), 1, squeeze=False)[:, 0])
    for index, (panel, log_mel) in enumerate(zip(axes, log_mels)):
        duration_in_s = log_mel.shape[1] * hop_length / sampling_rate
        image = panel.imshow(
            log_mel,
            origin="lower",
            aspect="auto",
            cmap="magma",
            vmin=vmin,
            vmax=vmax,
            extent=(0.0, duration_in_s, 0, log_mel.shape[0]),
        )
        panel.set_xlabel("time (s)")
        panel.set_ylabel("mel bin")
        if index < len(titles):
            panel.set_title(titles[index], fontsize=10)
        figure.colorbar(image, ax=panel, label="log amplitude")
    return figure


def figure_to_rgb(figure) -> np.ndarray:
    """Render a `Figure` made by `mel_figure` as an RGB array `(height, width, 3)` uint8."""
    figure.canvas.draw()
    return np.asarray(figure.canvas.buffer_rgba())[..., :3].copy()
