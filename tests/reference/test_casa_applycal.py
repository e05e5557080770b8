"""apply-calibration against CASA applycal as orca calls it, on tables solved by CASA and on our own tables.

The truth is CASA 6.7 (``make casa``), run in a subprocess: ``bandpass`` and ``polcal(poltype='Xf')``
solve tables on simulated MS whose MODEL_DATA is a polarised point source and whose DATA is that model
corrupted here by known smooth bandpasses (phase wrapping across the band) and a cross-hand phase; then
``applycal(gaintable=[bp, xy], calwt=False, flagbackup=False)`` with its default interpolation is
compared with ``apply_calibration`` on copies of one 48-channel MS: CORRECTED_DATA within 1e-5
relative, FLAG identical. Tables are solved on 192 (finer than the MS), 48 (equal) and 16 (coarser)
channels; flagged data in the solving MS give flagged solutions, and more flags are set in the tables.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from casacore import tables

from casa_reference import run_casa
from orca_steps import config
from orca_steps.apply_calibration import apply_calibration
from orca_steps.caltables import write_bandpass_table, write_xyphase_table
from orca_steps.sim import simulate_ms

SUBBAND = "73MHz"
MS_CHANNELS = 48
RTOL = 1e-5
P_POL, Q_POL = [0, 0, 1, 1], [0, 1, 0, 1]
MODEL = np.array([1.1, 0.3, 0.3, 0.9], np.complex64)  # I = 1, Q = 0.1, U = 0.3 Jy: XX, XY, YX, YY
REFANT = 1
DEAD = 5        # every visibility of this antenna is flagged in the solving MS
PATCHY = 9      # this antenna has a flagged band in the solving MS
XF_FLAGGED_ANT = 12   # flagged afterwards in the Xf table, every channel


def true_jones(n_ant: int, freqs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Corrupting bandpass (n_ant, nchan, 2) and cross-hand phase (nchan,): smooth in frequency, phases wrap."""
    rng = np.random.default_rng(11)
    x = (freqs - freqs.mean())[None, :, None] / 1e6  # MHz from the band centre
    amp = rng.uniform(0.5, 2.0, (n_ant, 1, 2)) * (1 + 0.2 * np.sin(rng.uniform(0.5, 1.5, (n_ant, 1, 2)) * x))
    delay = rng.uniform(-0.8, 0.8, (n_ant, 1, 2))  # microseconds: up to 3.7 turns across the subband
    phase = 2 * np.pi * delay * x + rng.uniform(-np.pi, np.pi, (n_ant, 1, 2)) + 0.3 * np.cos(x)
    xy_phase = 2.5 + 0.6 * x[0, :, 0]  # rad, wraps through +-pi
    return amp * np.exp(1j * phase), xy_phase


def make_ms(path: Path, nchan: int) -> Path:
    """A simulated MS whose MODEL_DATA is ``MODEL`` and DATA = J_p MODEL J_q^H (J = B diag(e^i xy, 1))."""
    simulate_ms(path, subband=SUBBAND, n_channels=nchan, caltable_channels=max(nchan, MS_CHANNELS), noise_jy=0.0,
                write_model=True, dead_antennas=0, noisy_antennas=0)
    with tables.table(str(path), readonly=False, ack=False) as ms:
        a1, a2 = ms.getcol("ANTENNA1"), ms.getcol("ANTENNA2")
        with tables.table(str(path / "SPECTRAL_WINDOW"), ack=False) as spw:
            freqs = spw.getcell("CHAN_FREQ", 0)
        n_ant = int(max(a1.max(), a2.max())) + 1
        bandpass, xy_phase = true_jones(n_ant, freqs)
        jones = bandpass.copy()
        jones[:, :, 0] *= np.exp(1j * xy_phase)
        model = np.broadcast_to(MODEL, (a1.size, nchan, 4))
        data = jones[a1][:, :, P_POL] * model * np.conj(jones[a2][:, :, Q_POL])
        ms.putcol("MODEL_DATA", np.ascontiguousarray(model))
        ms.putcol("DATA", data.astype(np.complex64))
        ms.putcol("FLAG", np.zeros(data.shape, bool))
    return path


def flag_for_solving(ms: Path, nchan: int) -> None:
    """Flags that make CASA write flagged solutions: one antenna, one antenna's band, one channel for all."""
    lo, hi = nchan // 6, nchan // 6 + max(nchan // 16, 1)
    everyone = nchan // 2
    with tables.table(str(ms), readonly=False, ack=False) as tab:
        a1, a2 = tab.getcol("ANTENNA1"), tab.getcol("ANTENNA2")
        flag = tab.getcol("FLAG")
        flag[(a1 == DEAD) | (a2 == DEAD)] = True
        flag[(a1 == PATCHY) | (a2 == PATCHY), lo:hi] = True
        flag[:, everyone] = True
        tab.putcol("FLAG", flag)


def solve_with_casa(root: Path, nchan: int) -> tuple[Path, Path]:
    """B and Xf tables solved by CASA on an ``nchan``-channel MS, then a few Xf solutions flagged by hand."""
    solve_ms = make_ms(root / f"solve{nchan}.ms", nchan)
    flag_for_solving(solve_ms, nchan)
    bp, xy = root / f"casa{nchan}.B", root / f"casa{nchan}.Xf"
    run_casa(root, ("bandpass", dict(vis=str(solve_ms), caltable=str(bp), solint="inf", refant=str(REFANT),
                                     bandtype="B", minsnr=0.0)),
             ("polcal", dict(vis=str(solve_ms), caltable=str(xy), poltype="Xf", solint="inf", refant=str(REFANT),
                             minsnr=0.0, gaintable=[str(bp)])))
    with tables.table(str(xy), readonly=False, ack=False) as tab:  # as flagdata on a cal table would
        flag, ant = tab.getcol("FLAG"), tab.getcol("ANTENNA1")
        flag[ant == XF_FLAGGED_ANT] = True
        flag[ant == PATCHY, nchan - 2:] = True
        tab.putcol("FLAG", flag)
    return bp, xy


def compare(root: Path, ms: Path, bp: Path, xy: Path) -> dict:
    """Apply (bp, xy) with CASA and with apply_calibration to copies of ``ms``; the two results' agreement."""
    casa_ms, ours_ms = root / "casa_applied.ms", root / "ours_applied.ms"
    for copy in (casa_ms, ours_ms):
        if copy.exists():
            shutil.rmtree(copy)
        shutil.copytree(ms, copy)
    run_casa(root, ("applycal", dict(vis=str(casa_ms), gaintable=[str(bp), str(xy)], calwt=False,
                                     flagbackup=False)))
    apply_calibration(ours_ms, bp, xy)
    with tables.table(str(casa_ms), ack=False) as c, tables.table(str(ours_ms), ack=False) as o:
        casa_data, casa_flag = c.getcol("CORRECTED_DATA"), c.getcol("FLAG")
        ours_data, ours_flag = o.getcol("CORRECTED_DATA"), o.getcol("FLAG")
        raw = o.getcol("DATA")
    good = ~casa_flag & ~ours_flag
    relative = np.abs(ours_data[good] - casa_data[good]) / np.abs(casa_data[good])
    return {"flag_mismatches": int(np.count_nonzero(casa_flag != ours_flag)), "flagged": int(casa_flag.sum()),
            "max_relative": float(relative.max()), "changed": float(np.median(np.abs(casa_data[good] - raw[good]))),
            "n": int(good.sum())}


@pytest.fixture(scope="module")
def target_ms(tmp_path_factory) -> Path:
    """The MS both apply to, with some flags already set (e.g. by flag-antennas): both must keep them."""
    ms = make_ms(tmp_path_factory.mktemp("target") / "20250615_041823_73MHz_averaged.ms", MS_CHANNELS)
    with tables.table(str(ms), readonly=False, ack=False) as tab:
        flag = tab.getcol("FLAG")
        flag[::7, 20:23, 1] = True
        flag[100:130] = True
        tab.putcol("FLAG", flag)
    return ms


@pytest.mark.parametrize("table_channels", [192, 48, 16], ids=["finer", "equal", "coarser"])
def test_casa_solved_tables_applied_as_casa_applycal_does(tmp_path, target_ms, table_channels):
    bp, xy = solve_with_casa(tmp_path, table_channels)
    with tables.table(str(bp), ack=False) as b, tables.table(str(xy), ack=False) as x:
        bflag, xflag = b.getcol("FLAG"), x.getcol("FLAG")
        assert b.getcol("CPARAM").shape[1] == table_channels
    assert bflag[DEAD].all() and bflag[PATCHY].any() and not bflag[PATCHY].all(), "CASA flagged the solutions"
    assert xflag.any() and not xflag.all()
    result = compare(tmp_path, target_ms, bp, xy)
    assert result["flag_mismatches"] == 0, result
    assert result["max_relative"] < RTOL, result
    n_ant = 24
    assert result["flagged"] > 0 and result["n"] > 0.5 * n_ant * (n_ant + 1) / 2 * MS_CHANNELS * 4, result
    assert result["changed"] > 0.1, "the calibration did something"


def test_our_tables_read_by_casa_applycal(tmp_path, target_ms):
    """Our table writer, read by CASA: per-antenna and per-channel flags in B and in Xf."""
    with tables.table(str(target_ms / "ANTENNA"), ack=False) as ant:
        names = list(ant.getcol("NAME"))
    freqs = config.subband_channel_freqs(SUBBAND, 192)
    bandpass, xy_phase = true_jones(len(names), freqs)
    bflags = np.zeros(bandpass.shape, bool)
    bflags[DEAD] = True
    bflags[PATCHY, 30:50, 1] = True   # Y only: the X correlations stay
    bflags[:, 100] = True
    xflags = np.zeros(freqs.size, bool)
    xflags[[0, 1, 140]] = True        # an edge and an inner channel
    bp = write_bandpass_table(tmp_path / "ours.B", bandpass, freqs, names, flags=bflags)
    xy = write_xyphase_table(tmp_path / "ours.Xf", xy_phase, freqs, names, flags=xflags)
    result = compare(tmp_path, target_ms, bp, xy)
    assert result["flag_mismatches"] == 0, result
    assert result["max_relative"] < RTOL, result
    with tables.table(str(target_ms), ack=False) as tab:
        before = tab.getcol("FLAG")
        a1, a2 = tab.getcol("ANTENNA1"), tab.getcol("ANTENNA2")
    before[(a1 == DEAD) | (a2 == DEAD)] = True  # only DEAD's rows (with its auto) are added
    assert result["flagged"] == before.sum(), result
