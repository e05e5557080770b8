"""Instrumental corruption: bandpass and XY-phase Jones, dead and noisy antennas, thermal noise."""
from __future__ import annotations

import numpy as np


def bandpass_gains(rng: np.random.Generator, n_ant: int, native_freqs: np.ndarray) -> np.ndarray:
    """Smooth complex gains (n_ant, n_native_chan, 2): amplitude ripple and a delay per antenna/pol."""
    x = (native_freqs - native_freqs.mean()) / np.ptp(native_freqs)
    amp = rng.uniform(0.6, 1.4, (n_ant, 1, 2)) * (1 + rng.uniform(-0.15, 0.15, (n_ant, 1, 2)) * np.sin(
        2 * np.pi * rng.uniform(0.5, 2.0, (n_ant, 1, 2)) * x[None, :, None] + rng.uniform(0, 2 * np.pi, (n_ant, 1, 2))))
    delay_ns = rng.normal(0.0, 30.0, (n_ant, 1, 2))
    phase = rng.uniform(-np.pi, np.pi, (n_ant, 1, 2)) + 2 * np.pi * delay_ns * 1e-9 * (
        native_freqs - native_freqs[0])[None, :, None]
    return amp * np.exp(1j * phase)


def xy_phase(rng: np.random.Generator, native_freqs: np.ndarray) -> np.ndarray:
    """Cross-hand phase (rad) per native channel: an offset plus a small delay."""
    return rng.uniform(-np.pi, np.pi) + 2 * np.pi * rng.normal(0, 5e-9) * (native_freqs - native_freqs[0])


def block_mean(values: np.ndarray, factor: int, axis: int) -> np.ndarray:
    """Average ``factor`` consecutive entries along ``axis`` (native -> averaged channels)."""
    shape = list(values.shape)
    shape[axis : axis + 1] = [shape[axis] // factor, factor]
    return values.reshape(shape).mean(axis=axis + 1)


def complex_noise(rng: np.random.Generator, shape, sigma: float) -> np.ndarray:
    return (rng.normal(0, sigma, shape) + 1j * rng.normal(0, sigma, shape)).astype(np.complex64)
