"""The steps on MS in the shapes other writers produce (see real_shapes.py): variable-shape TiledShapeStMan
columns, WEIGHT_SPECTRUM, TIME_CENTROID = 0, one integration, a 109-channel window on the 24 kHz grid,
correlator units, few antennas. Phase 1 and the Phase 2 data steps run through and measure what is there."""
from __future__ import annotations

from datetime import datetime

import numpy as np
import pytest
from casacore import tables

from orca_steps.aoflagger import run_aoflagger
from orca_steps.apply_calibration import apply_calibration
from orca_steps.concat import concatenate_ms
from orca_steps.copy_ms import copy_ms
from orca_steps.fix_field import fix_field
from orca_steps.flag_antennas import flag_antennas
from orca_steps.hot_baselines import find_hot_baselines
from orca_steps.peel import peel_ms
from orca_steps.rephase import lst_phase_centre, rephase_ms
from orca_steps.sim import simulate_ms

from phase2_data import pilot_snapshots
from real_shapes import WINDOW_CHANNELS, reshape_ms

N_ANT = 12


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    root = tmp_path_factory.mktemp("real_shapes")
    entry, _, _ = simulate_ms(root / "sim.ms", refs_dir=root / "refs", n_antennas=N_ANT, n_channels=192,
                              dead_antennas=1, noisy_antennas=1, n_field_sources=3)
    name = f"{datetime.fromisoformat(entry['utc']):%Y%m%d_%H%M%S}_73MHz.ms"
    lustre = root / "lustre"
    lustre.mkdir()
    return reshape_ms(root / "sim.ms", lustre / name), entry, root


def test_the_fixture_has_the_real_shapes(source):
    ms, _, _ = source
    with tables.table(str(ms), ack=False) as tab:
        assert tab.getdminfo("DATA")["TYPE"] == "TiledShapeStMan" and "shape" not in tab.getcoldesc("DATA")
        assert tab.getcell("DATA", 0).shape == (WINDOW_CHANNELS, 4) and "WEIGHT_SPECTRUM" in tab.colnames()
        assert not tab.getcol("TIME_CENTROID").any() and len(set(tab.getcol("TIME"))) == 1
    with tables.table(str(ms / "SPECTRAL_WINDOW"), ack=False) as spw:
        assert np.allclose(np.diff(spw.getcell("CHAN_FREQ", 0)), 23.926e3, rtol=1e-3)


def test_phase1_and_phase2_data_steps_run_through(source, tmp_path):
    src, entry, root = source
    ms = copy_ms(src, tmp_path / "work").ms_path
    flagged = flag_antennas(ms)
    assert (flagged.dead, flagged.noisy, flagged.absent) == (entry["dead_antennas"], entry["noisy_antennas"], [])

    cal = apply_calibration(ms, entry["bp_table"], entry["xy_table"])
    with tables.table(str(ms), ack=False) as tab:
        corrected, flags = tab.getcol("CORRECTED_DATA"), tab.getcol("FLAG")
    assert corrected.shape == (N_ANT * (N_ANT + 1) // 2, WINDOW_CHANNELS, 4) and cal is not None
    assert np.isfinite(corrected[~flags]).all() and not flags.all()

    peeled = peel_ms(ms, root / "refs" / "sources.json", root / "refs" / "rfi_ovro.json", peel_sky=True,
                     peel_rfi=True)
    assert peeled.peeled and peeled.rows == corrected.shape[0]

    concat = concatenate_ms([str(ms)], tmp_path / "work" / "73MHz_concat.ms").concat_ms
    fix_field(concat)
    moved = rephase_ms(concat, *lst_phase_centre("14h"))
    assert moved.rows_moved == corrected.shape[0]
    hot = find_hot_baselines(concat, tmp_path / "work" / "QA")
    assert hot.bad_antennas == [] and hot.heatmap_outliers == []
    flagged_after = run_aoflagger(concat).flagged_after
    assert 0 < flagged_after < 0.5  # the bad antennas' rows, plus what AOFlagger finds; not everything
    pilot_snapshots(concat, tmp_path / "snapshots", 1)  # one integration: WSClean adds no -t0000 to the names
    images = sorted((tmp_path / "snapshots").glob("pilot-*image.fits"))
    assert [p.name for p in images] == ["pilot-I-image.fits", "pilot-V-image.fits"]  # variable-shape columns read
