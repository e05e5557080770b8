"""Model visibilities of sky components (far field) and ground emitters (near field).

Convention (MS, CASA, WSClean, DP3): V = S exp(+2 pi i (u l + v m + w (n - 1)) / lambda) with
UVW = X(ant2) - X(ant1). Output is (nrow, nchan, 4) in XX, XY, YX, YY order. Callers pass row
chunks, so memory stays bounded.
"""
from __future__ import annotations

import numpy as np

from .constants import C_M_S
from .coords import direction_cosines
from .skymodel import Component, RFISource, stokes_to_linear

_FWHM_TO_EXP = np.pi**2 / (4 * np.log(2))


def gaussian_taper(uvw: np.ndarray, freqs: np.ndarray, comp: Component, dtype=np.float64,
                   out: np.ndarray | None = None) -> np.ndarray:
    """(nrow, nchan) visibility amplitude of an elliptical Gaussian of unit flux (into ``out`` if given).

    ``dtype`` float32 halves the cost of the (nrow, nchan) exponential for models kept in complex64."""
    pa = np.deg2rad(comp.position_angle)
    u_maj = uvw[:, 0] * np.sin(pa) + uvw[:, 1] * np.cos(pa)
    u_min = uvw[:, 0] * np.cos(pa) - uvw[:, 1] * np.sin(pa)
    arcsec = np.pi / 180 / 3600
    q = (comp.major_fwhm * arcsec * u_maj) ** 2 + (comp.minor_fwhm * arcsec * u_min) ** 2
    exponent = np.multiply.outer((-_FWHM_TO_EXP * q).astype(dtype), ((freqs / C_M_S) ** 2).astype(dtype), out=out)
    return np.exp(exponent, out=exponent)


def predict_components(uvw: np.ndarray, freqs: np.ndarray, components: list[Component],
                       ra0: float, dec0: float) -> np.ndarray:
    """Sum of the components' visibilities, (nrow, nchan, 4) complex128."""
    uvw = np.asarray(uvw, dtype=float)
    freqs = np.asarray(freqs, dtype=float)
    out = np.zeros((uvw.shape[0], freqs.size, 4), dtype=np.complex128)
    for comp in components:
        l, m, n = direction_cosines(comp.ra, comp.dec, ra0, dec0)
        delay = (uvw[:, 0] * l + uvw[:, 1] * m + uvw[:, 2] * (n - 1)) / C_M_S
        fringe = np.exp(2j * np.pi * delay[:, None] * freqs[None, :])
        if comp.is_gaussian:
            fringe *= gaussian_taper(uvw, freqs, comp)
        coherency = stokes_to_linear(comp.stokes_at(freqs))  # (nchan, 4)
        out += fringe[:, :, None] * coherency[None, :, :]
    return out


def predict_near_field(ant1: np.ndarray, ant2: np.ndarray, ant_itrf: np.ndarray, uvw: np.ndarray,
                       freqs: np.ndarray, source: RFISource) -> np.ndarray:
    """Visibilities of a ground emitter with the exact (curved) wavefront, (nrow, nchan, 4).

    The path difference d(ant1) - d(ant2) replaces the far-field b.s; phasing to the MS's phase
    centre removes w, exactly as for a sky source, so the far-field limit agrees with
    ``predict_components``.
    """
    dist = np.linalg.norm(np.asarray(ant_itrf) - source.itrf()[None, :], axis=1)
    delay = (dist[ant1] - dist[ant2] - np.asarray(uvw)[:, 2]) / C_M_S
    fringe = np.exp(2j * np.pi * delay[:, None] * np.asarray(freqs)[None, :])
    coherency = stokes_to_linear(source.stokes_at(freqs))
    return fringe[:, :, None] * coherency[None, :, :]


def apply_diagonal_gains(vis: np.ndarray, ant1: np.ndarray, ant2: np.ndarray, gains: np.ndarray) -> np.ndarray:
    """V_pq -> G_p V_pq G_q^H for diagonal Jones ``gains`` (nant, nchan or 1, 2) [X, Y]. Returns a new array."""
    gp, gq = gains[ant1], np.conj(gains[ant2])  # (nrow, nchan, 2)
    out = np.empty(np.broadcast_shapes(vis.shape, gp.shape[:2] + (4,)), dtype=np.result_type(vis, gains))
    out[..., 0] = vis[..., 0] * gp[..., 0] * gq[..., 0]
    out[..., 1] = vis[..., 1] * gp[..., 0] * gq[..., 1]
    out[..., 2] = vis[..., 2] * gp[..., 1] * gq[..., 0]
    out[..., 3] = vis[..., 3] * gp[..., 1] * gq[..., 1]
    return out
