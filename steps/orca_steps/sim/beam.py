"""A smooth dipole-like primary beam, and the H5 beam file in orca's schema that describes it.

The simulator multiplies every sky source by ``stokes_i_response``; ``write_beam_h5`` writes the same
beam as E-field patterns (keys ``freq_Hz``, ``theta_pts``, ``phi_pts``, ``X_pol_Efields/{etheta,ephi}``,
``Y_pol_Efields/{etheta,ephi}``), so that primary-beam correction can be checked against truth.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

BEAM_EXPONENT = 1.6


def stokes_i_response(elevation_rad) -> np.ndarray:
    """Stokes I power response, 1 at zenith, 0 at and below the horizon."""
    s = np.sin(np.asarray(elevation_rad, dtype=float))
    return np.where(s > 0, np.abs(s) ** BEAM_EXPONENT, 0.0)


def write_beam_h5(path: str | Path, freqs_hz: np.ndarray, n_theta: int = 91, n_phi: int = 73) -> Path:
    """E-fields on a theta (zenith angle, deg) x phi (deg) grid whose |E|^2 sum is the response."""
    import h5py

    theta = np.linspace(0.0, 90.0, n_theta)
    phi = np.linspace(0.0, 360.0, n_phi)
    th, ph = np.meshgrid(np.deg2rad(theta), np.deg2rad(phi), indexing="ij")
    amp = np.sqrt(stokes_i_response(np.pi / 2 - th) / 2.0)  # two polarisations share the power
    shape = (len(freqs_hz), n_theta, n_phi)
    fields = {"X_pol_Efields": (np.cos(ph) * amp, -np.sin(ph) * amp),
              "Y_pol_Efields": (np.sin(ph) * amp, np.cos(ph) * amp)}
    with h5py.File(path, "w") as h5:
        h5["freq_Hz"] = np.asarray(freqs_hz, dtype=float)
        h5["theta_pts"] = theta
        h5["phi_pts"] = phi
        for group, (etheta, ephi) in fields.items():
            h5[f"{group}/etheta"] = np.broadcast_to(etheta.astype(np.complex64), shape)
            h5[f"{group}/ephi"] = np.broadcast_to(ephi.astype(np.complex64), shape)
    return Path(path)
