"""The simulator's own visibility predictions: points, Gaussians, a ground emitter, antenna gains.

Written here from the measurement equation, not taken from the steps (``orca_steps.predict``), so that
a mistake in the steps' predictors cannot hide in data made by the same code. Convention (MS, CASA,
WSClean, DP3): V = S exp(+2 pi i (b . s) / lambda) relative to the phase centre, with b = X(ant2) -
X(ant1), i.e. the phase 2 pi (u l + v m + w (n - 1)) / lambda. Output is (nrow, nchan, 4) with the
correlations in XX, XY, YX, YY order.
"""
from __future__ import annotations

import numpy as np

from .geometry import direction_cosines

C_M_S = 299792458.0
SIGMA_PER_FWHM = 1.0 / np.sqrt(8.0 * np.log(2.0))
ARCSEC_RAD = np.pi / (180.0 * 3600.0)
RECEPTORS = ((0, 0), (0, 1), (1, 0), (1, 1))  # XX, XY, YX, YY as (feed of ant1, feed of ant2), X = 0


def coherency(stokes: np.ndarray) -> np.ndarray:
    """Stokes (..., 4) I, Q, U, V -> linear-feed correlations (..., 4): XX = I + Q, XY = U + iV, YX = U - iV,
    YY = I - Q (the convention in which WSClean's I is (XX + YY) / 2)."""
    i, q, u, v = np.moveaxis(np.asarray(stokes, dtype=float), -1, 0)
    return np.stack([i + q, u + 1j * v, u - 1j * v, i - q], axis=-1)


def gaussian_amplitude(uvw: np.ndarray, freqs: np.ndarray, major_arcsec: float, minor_arcsec: float,
                       pa_deg: float) -> np.ndarray:
    """(nrow, nchan) visibility of a unit-flux elliptical Gaussian whose major axis lies ``pa_deg`` from
    north through east: the Fourier transform exp(-2 pi^2 (sigma_major^2 k_major^2 + sigma_minor^2 k_minor^2))
    with k the (u, v) spacing in wavelengths along the axes."""
    pa = np.deg2rad(pa_deg)
    major_axis = np.array([np.sin(pa), np.cos(pa)])  # (east, north) = (u, v) components
    minor_axis = np.array([np.cos(pa), -np.sin(pa)])
    along_major = uvw[:, :2] @ major_axis
    along_minor = uvw[:, :2] @ minor_axis
    s_major = major_arcsec * ARCSEC_RAD * SIGMA_PER_FWHM
    s_minor = minor_arcsec * ARCSEC_RAD * SIGMA_PER_FWHM
    per_lambda2 = (freqs / C_M_S) ** 2
    exponent = (s_major**2 * along_major**2 + s_minor**2 * along_minor**2)[:, None] * per_lambda2[None, :]
    return np.exp(-2.0 * np.pi**2 * exponent)


def sky_visibilities(uvw: np.ndarray, freqs: np.ndarray, components, ra0: float, dec0: float) -> np.ndarray:
    """Sum of far-field components (points or Gaussians, sim.sky.Component), (nrow, nchan, 4) complex128."""
    uvw, freqs = np.asarray(uvw, dtype=float), np.asarray(freqs, dtype=float)
    out = np.zeros((uvw.shape[0], freqs.size, 4), dtype=np.complex128)
    for comp in components:
        l, m, n = direction_cosines(comp.ra, comp.dec, ra0, dec0)
        path = uvw @ np.array([l, m, n - 1.0])  # metres
        vis = np.exp(2j * np.pi * np.outer(path, freqs / C_M_S))
        if comp.major_fwhm > 0 or comp.minor_fwhm > 0:
            vis *= gaussian_amplitude(uvw, freqs, comp.major_fwhm, comp.minor_fwhm, comp.position_angle)
        out += vis[:, :, None] * coherency(comp.stokes_at(freqs))[None, :, :]
    return out


def emitter_visibilities(ant1: np.ndarray, ant2: np.ndarray, ant_itrf: np.ndarray, uvw: np.ndarray,
                         freqs: np.ndarray, emitter) -> np.ndarray:
    """A ground emitter at finite distance: the wave reaches ant1 later than ant2 by (d1 - d2) / c, which
    replaces b . s of a plane wave; the phase centre's w is taken off as for any source. (nrow, nchan, 4)."""
    distance = np.linalg.norm(np.asarray(ant_itrf, dtype=float) - emitter.itrf()[None, :], axis=1)
    path = distance[ant1] - distance[ant2] - np.asarray(uvw, dtype=float)[:, 2]
    vis = np.exp(2j * np.pi * np.outer(path, np.asarray(freqs, dtype=float) / C_M_S))
    return vis[:, :, None] * coherency(emitter.stokes_at(freqs))[None, :, :]


def corrupt_by_gains(vis: np.ndarray, ant1: np.ndarray, ant2: np.ndarray, gains: np.ndarray) -> np.ndarray:
    """V_pq -> g_p V_pq g_q^* per feed pair, for per-antenna feed gains ``gains`` (nant, nchan or 1, 2)."""
    out = np.empty(np.broadcast_shapes(vis.shape, gains[ant1].shape[:2] + (4,)), dtype=np.result_type(vis, gains))
    for c, (fp, fq) in enumerate(RECEPTORS):
        out[..., c] = gains[ant1][..., fp] * vis[..., c] * np.conj(gains[ant2][..., fq])
    return out
