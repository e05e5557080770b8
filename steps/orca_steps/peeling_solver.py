"""Direction-dependent gains for peeling, solved on per-row channel sums instead of visibilities.

Each peeled source s gets one diagonal complex gain per time, antenna and polarisation, constant over
the band: what a peel corrects (ionosphere, beam) changes little over a 4.6 MHz subband, and a gain
per channel would have 48 times the unknowns and could absorb model errors such as a near-field
wavefront's curvature. With a band-constant gain c = g_p,a conj(g_q,b) per row and correlation ab, the least-squares
cost of a source, sum over channels of |D - c M_s|^2, depends on the data only through

    R_s    = sum_ch w D conj(M_s)       what the data say about source s      (nrow, 4) complex
    X_ts   = sum_ch w M_t conj(M_s)     how much sources t and s overlap       (nrow, 4) complex

(w = 1 for a usable visibility: unflagged, not an autocorrelation, not shorter than ``minuvw``).
So TTCal's peeling loop (subtract every source; then, ``peeliter`` times, for each source: put it
back with its current gains, solve its gains, take it out again) runs exactly on these sums:
with the other sources t taken out with their current gains c_t,

    R_eff_s = R_s - sum_{t != s} c_t X_ts.

One pass over the MS builds R and X; a second subtracts the final corrupted models.

Starting gains: TTCal starts from unit gains. Here each source starts from sqrt(a_s), where the real
scales a_s jointly fit sum_s a_s M_s to the data (a small S x S solve per time slot). With a constant
beam the model misses the beam's attenuation (a factor 10 at 10 degrees elevation); starting at the
apparent amplitude lets the few iterations orca allows (``maxiter`` 5) converge. a_s times the model
flux is each source's apparent flux, which also sets the peel order (brightest first).

Gains are solved with StEFCal (Salvini & Wijnholds 2014): each antenna's gain is the exact
least-squares answer with the others held fixed, every second step averaged with the previous one;
on the sums laid out as (antenna, pol) matrices, built once per time slot, a step is a few
matrix-vector products (``SlotSums``).

Reference convention: the cost cannot see a phase common to all antennas, and for a model with no
cross-hand power (Stokes U = V = 0) it cannot see the X-Y phase difference either. Solutions are
therefore rotated so that the reference antenna (the first antenna in the MS with a solution in both
polarisations) has zero X phase and, for a model without cross-hand power, zero Y phase too. The
rotation changes no product c, so it changes nothing that is subtracted.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

P_POL = np.array([0, 0, 1, 1])  # polarisation of antenna 1 in XX, XY, YX, YY
Q_POL = np.array([0, 1, 0, 1])  # polarisation of antenna 2


@dataclass
class Layout:
    """Which time slot and antennas each row belongs to: the indices every solve needs."""
    slot: np.ndarray  # (nrow,) time-slot index
    ant1: np.ndarray  # (nrow,)
    ant2: np.ndarray  # (nrow,)
    n_slots: int
    n_ant: int

    def slot_indices(self, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Cross-correlation rows of slot k and their flat indices [(p,a),(q,b)] and [(q,b),(p,a)] in a
        (2 n_ant)^2 matrix, computed once."""
        cache = self.__dict__.setdefault("_slot_cache", {})
        if k not in cache:
            rows = np.flatnonzero((self.slot == k) & (self.ant1 != self.ant2))
            n = 2 * self.n_ant
            ip = (2 * self.ant1[rows])[:, None] + P_POL[None, :]
            iq = (2 * self.ant2[rows])[:, None] + Q_POL[None, :]
            cache[k] = (rows, (ip * n + iq).ravel(), (iq * n + ip).ravel())
        return cache[k]


def gain_products(gains: np.ndarray, layout: Layout, rows: slice = slice(None)) -> np.ndarray:
    """c = g_p,a conj(g_q,b) per row and correlation, (nrow, 4), from gains (n_slots, n_ant, 2), for
    ``rows`` (default all)."""
    per_antenna = gains.reshape(-1, 2)
    base = layout.slot[rows] * layout.n_ant
    first = np.take(per_antenna, base + layout.ant1[rows], axis=0)
    second = np.conj(np.take(per_antenna, base + layout.ant2[rows], axis=0))
    return second[:, Q_POL] * first[:, P_POL]


def _dense(values: np.ndarray, layout: Layout, k: int, hermitian_conj: bool, out: np.ndarray) -> np.ndarray:
    """Per-row values (nrow, 4) of slot ``k`` as a (2 n_ant, 2 n_ant) matrix over (antenna, pol) pairs,
    written into ``out`` (zeros).

    Entry [(p, a), (q, b)] holds the row p-q's correlation ab, and [(q, b), (p, a)] its conjugate
    (``hermitian_conj``) or itself (real weights). Autocorrelations carry no weight and are left out.
    """
    rows, upper, lower = layout.slot_indices(k)
    v = values[rows].ravel()
    flat = out.reshape(-1)
    flat[upper] = v
    flat[lower] = np.conj(v) if hermitian_conj else v
    return out


def _times(a: np.ndarray, v: np.ndarray) -> np.ndarray:
    """a v in a's precision, as conj(vecdot(a, conj(v))): vecdot runs one single-threaded BLAS dot per
    row, ~3x einsum (a multi-threaded BLAS matrix product on a node running dozens of steps thrashes)."""
    v = v.astype(np.result_type(a.dtype, np.complex64), copy=False)
    return np.conj(np.vecdot(a, np.conj(v)))


class SlotSums:
    """R_s, X_ts (t < s) and W_s = Re X_ss of one time slot as dense (antenna, pol) matrices, built once,
    in the precision of the sums (complex64 from ``peel.channel_sums``: as exact as they are; 30 MB for
    352 antennas and three sources).

    With C_t = g_t g_t^H the dense form of the products c_t, R_eff_s = R_s - sum_t C_t * X_ts
    (elementwise), so R_eff_s v = R_s v - sum_t g_t (X_ts (conj(g_t) v)): every product the peeling loop
    needs is a matrix-vector product, and R_eff is never formed. X_ts = conj(X_st) for t > s.
    """

    def __init__(self, r: np.ndarray, x: np.ndarray, layout: Layout, k: int):
        n_src, n = r.shape[0], 2 * layout.n_ant
        pairs = [(t, s) for s in range(n_src) for t in range(s)]
        # one allocation each: an array of 4 MB or more gets huge pages, far fewer page faults than 4 kB ones
        block = np.zeros((n_src + len(pairs), n, n), np.result_type(r.dtype, x.dtype))
        weights = np.zeros((n_src, n, n), block.real.dtype)
        self.r = [_dense(r[s], layout, k, True, block[s]) for s in range(n_src)]
        self.x = {pair: _dense(x[pair], layout, k, True, block[n_src + i]) for i, pair in enumerate(pairs)}
        self.w = [_dense(x[s, s].real, layout, k, False, weights[s]) for s in range(n_src)]

    def effective_times(self, s: int, gains: np.ndarray, v: np.ndarray) -> np.ndarray:
        """R_eff_s v, the other sources taken out with ``gains`` (n_src, 2 n_ant)."""
        out = _times(self.r[s], v).astype(np.complex128)
        for t in range(len(self.r)):
            if t < s:
                out -= gains[t] * _times(self.x[t, s], np.conj(gains[t]) * v)
            elif t > s:
                out -= gains[t] * np.conj(_times(self.x[s, t], gains[t] * np.conj(v)))
        return out

    def weights_times(self, s: int, power: np.ndarray) -> np.ndarray:
        return np.vecdot(self.w[s], power.astype(self.w[s].dtype)).astype(float)

    def residual_change(self, s: int, gains: np.ndarray) -> float:
        """Change of the residual power when source s is subtracted with its gains (negative: it helps):
        sum over rows of |c|^2 w - 2 Re(conj(c) r_eff), each row counted twice in the dense matrices."""
        g, power = gains[s], np.abs(gains[s]) ** 2
        return float(0.5 * power @ self.weights_times(s, power) - np.vdot(g, self.effective_times(s, gains, g)).real)


def stefcal(effective_times: Callable[[np.ndarray], np.ndarray], weights_times: Callable[[np.ndarray], np.ndarray],
            initial: np.ndarray, maxiter: int, tolerance: float) -> tuple[np.ndarray, bool, int]:
    """Diagonal gains (2 n_ant,) of one time slot minimising sum |c|^2 w - 2 Re(conj(c) r_eff); returns
    (gains, converged, iterations).

    ``effective_times(v)`` = R_eff v and ``weights_times(v)`` = W v (``SlotSums``): one StEFCal step is
    g_pa = sum_qb R[pa, qb] g_qb / sum_qb W[pa, qb] |g_qb|^2. Antennas without usable data get gain 0,
    so nothing is subtracted from their rows.
    """
    g = initial.astype(np.complex128)
    converged, iteration = False, 0
    for iteration in range(1, maxiter + 1):
        num, den = effective_times(g), weights_times(np.abs(g) ** 2)
        new = np.zeros_like(g)
        np.divide(num, den, out=new, where=den > 0)
        if iteration % 2 == 0:
            new = 0.5 * (new + g)
        change = np.linalg.norm(new - g) / max(np.linalg.norm(new), np.finfo(float).tiny)
        g = new
        if change < tolerance:
            converged = True
            break
    return g, converged, iteration


def reference_phases(gains: np.ndarray, cross_hands: bool) -> np.ndarray:
    """Apply the reference convention of the module docstring to gains (n_slots, n_ant, 2)."""
    out = gains.copy()
    for k in range(gains.shape[0]):
        valid = np.flatnonzero(np.all(np.abs(gains[k]) > 0, axis=1))
        if valid.size == 0:
            continue
        ref = gains[k, valid[0]]
        phasor = np.exp(-1j * np.angle(ref))  # (2,)
        out[k] *= phasor[0] if cross_hands else phasor[None, :]
    return out


def apparent_scales(r: np.ndarray, x: np.ndarray, layout: Layout) -> np.ndarray:
    """Real a (S, n_slots) minimising sum |D - sum_s a_s M_s|^2 per time slot (0 where unmeasured)."""
    n_src = r.shape[0]

    def per_slot(v: np.ndarray) -> np.ndarray:  # the correlations added in turn, as sum(axis=1) does, 4x faster
        re = v.real
        return np.bincount(layout.slot, re[:, 0] + re[:, 1] + re[:, 2] + re[:, 3], layout.n_slots)

    normal = np.empty((layout.n_slots, n_src, n_src))
    for t in range(n_src):
        for s in range(t, n_src):
            normal[:, t, s] = normal[:, s, t] = per_slot(x[t, s])
    rhs = np.stack([per_slot(r[s]) for s in range(n_src)], axis=1)
    scales = np.zeros((n_src, layout.n_slots))
    for k in range(layout.n_slots):
        scales[:, k] = np.linalg.lstsq(normal[k], rhs[k], rcond=1e-12)[0]
    return scales


@dataclass
class PeelSolution:
    gains: np.ndarray  # (n_sources, n_slots, n_ant, 2) complex, referenced
    converged: np.ndarray  # (n_sources,) bool: the last solve of each source converged
    iterations: np.ndarray  # (n_sources,) StEFCal iterations of the last solve
    rejected: np.ndarray  # (n_sources, n_slots) bool: subtracting would not have lowered the residual
    scales: np.ndarray  # (n_sources, n_slots): apparent / model flux from the joint scalar fit
    order: list[int]  # the peel order: brightest apparent first
    layout: Layout
    solved: np.ndarray  # the gains as solved, before referencing: the products are made from them

    def products_of(self, rows: slice) -> np.ndarray:
        """(n_sources, rows, 4) complex: what each source is subtracted with, for a row chunk (the whole
        MS's products would be one more array of the MS's size)."""
        return np.stack([gain_products(g, self.layout, rows) for g in self.solved])

    @property
    def products(self) -> np.ndarray:
        return self.products_of(slice(None))


def peel_sums(r: np.ndarray, x: np.ndarray, layout: Layout, flux: np.ndarray, peeliter: int, maxiter: int,
              tolerance: float, cross_hands: list[bool]) -> PeelSolution:
    """TTCal's peeling loop on the channel sums: ``r`` (S, nrow, 4), ``x`` (S, S, nrow, 4).

    Only x[t, s] with t <= s is read: X_ts = conj(X_st), so callers need not fill the lower triangle.

    Each pass visits the sources brightest apparent first (``flux``: model fluxes, times the fitted
    scales), starting from the gains sqrt(scale) (module docstring); passes stop early once a whole
    pass changes no gain by more than ``tolerance``. A source whose final
    subtraction would raise the residual (a diverged solve, or a source not in the data) is not
    subtracted in that time slot: its gains are set to zero and it is reported as rejected.
    """
    n_src = r.shape[0]
    scales = apparent_scales(r, x, layout)
    order = list(np.argsort(-np.asarray(flux) * scales.mean(axis=1), kind="stable"))
    gains = np.ones((n_src, layout.n_slots, 2 * layout.n_ant), np.complex128)
    gains *= np.sqrt(np.clip(scales, 0, None))[:, :, None]
    slots = [SlotSums(r, x, layout, k) for k in range(layout.n_slots)]
    converged = np.zeros(n_src, bool)
    iterations = np.zeros(n_src, int)
    for _ in range(peeliter):
        for s in order:
            converged[s], iterations[s] = True, 0
            for k, sums in enumerate(slots):  # converged and iterations: the worst over slots
                gains[s, k], ok, its = stefcal(lambda v: sums.effective_times(s, gains[:, k], v),
                                               lambda v: sums.weights_times(s, v), gains[s, k], maxiter, tolerance)
                converged[s] &= ok
                iterations[s] = max(iterations[s], its)
        if converged.all() and (iterations == 1).all():
            break  # a further pass would move no gain by more than the tolerance
    rejected = np.array([[sums.residual_change(s, gains[:, k]) >= 0 for k, sums in enumerate(slots)]
                         for s in range(n_src)]).reshape(n_src, layout.n_slots)
    gains[rejected] = 0.0
    solved = gains.reshape(n_src, layout.n_slots, layout.n_ant, 2)
    referenced = np.stack([reference_phases(solved[s], cross_hands[s]) for s in range(n_src)])
    return PeelSolution(referenced, converged, iterations, rejected, scales, order, layout, solved)
