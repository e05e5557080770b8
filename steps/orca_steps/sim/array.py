"""A synthetic OVRO-LWA station layout: a dense core plus outriggers, in correlator order."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .geometry import enu_to_itrf

CORE_RADIUS_M = 100.0
OUTRIGGER_RADII_M = (250.0, 1500.0)
MIN_SEPARATION_M = 5.0


@dataclass
class ArrayLayout:
    names: list[str]  # in correlator (MS ANTENNA row) order
    enu: np.ndarray  # (n, 3) metres
    itrf: np.ndarray  # (n, 3) metres

    @property
    def n(self) -> int:
        return len(self.names)


def _disc_points(rng: np.random.Generator, count: int, r_min: float, r_max: float, taken: list) -> list:
    points = []
    while len(points) < count:
        r = np.sqrt(rng.uniform(r_min**2, r_max**2))
        phi = rng.uniform(0, 2 * np.pi)
        p = np.array([r * np.sin(phi), r * np.cos(phi)])
        if all(np.hypot(*(p - q)) >= MIN_SEPARATION_M for q in taken + points):
            points.append(p)
    return points


def make_layout(n_antennas: int, seed: int) -> ArrayLayout:
    """``n_antennas`` stations (about 1 in 7 an outrigger), names LWA001..., rows shuffled."""
    rng = np.random.default_rng(seed)
    n_out = max(2, round(n_antennas * 48 / 352)) if n_antennas >= 8 else 1
    core = _disc_points(rng, n_antennas - n_out, 0.0, CORE_RADIUS_M, [])
    out = _disc_points(rng, n_out, *OUTRIGGER_RADII_M, core)
    en = np.array(core + out)
    enu = np.column_stack([en, rng.normal(0.0, 0.5, len(en))])
    names = [f"LWA{k + 1:03d}" for k in range(n_antennas)]
    order = rng.permutation(n_antennas)  # correlator order: row 0 is not LWA001
    enu = enu[order]
    return ArrayLayout([names[k] for k in order], enu, enu_to_itrf(enu))


def baselines(n: int) -> tuple[np.ndarray, np.ndarray]:
    """ANTENNA1, ANTENNA2 for all n(n+1)/2 baselines including autos, ant1 <= ant2, row-major."""
    a1, a2 = np.triu_indices(n)
    return a1.astype(np.int32), a2.astype(np.int32)
