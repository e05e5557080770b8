"""snapshot-qa on real WSClean pilot snapshots: the integrations hit by a broadband burst, and only those,
are found, and exactly their TIME rows are flagged (the MS has one scan, so orca's scan mapping could not)."""
import csv
import shutil

import numpy as np
import pytest
from casacore import tables

from orca_steps.errors import InputError
from orca_steps.snapshot_qa import image_stats, snapshot_qa, snapshot_time

from phase2_data import flag_rows, pilot_snapshots, prepared_concat

N_INT, N_ANT = 8, 32
BURSTS = [2, 5]


@pytest.fixture(scope="module")
def hour(tmp_path_factory):
    root = tmp_path_factory.mktemp("qa")
    ms, _, truth = prepared_concat(root, n_integrations=N_INT, n_antennas=N_ANT, burst_integrations=BURSTS)
    snapshots = pilot_snapshots(ms, root / "snapshots", N_INT)
    return ms, snapshots, truth


@pytest.fixture
def ms(hour, tmp_path):
    return shutil.copytree(hour[0], tmp_path / hour[0].name)


def test_burst_integrations_and_only_they_are_flagged_by_time(hour, ms, tmp_path):
    _, snapshots, truth = hour
    entries = truth["units"][0]["ms"]
    burst_times = sorted(e["time_mjd_s"] for e in entries if e["burst"])
    assert len(burst_times) == len(BURSTS) and len(snapshots) == 2 * N_INT  # I and V per integration
    with tables.table(str(ms), ack=False) as tab:
        assert set(tab.getcol("SCAN_NUMBER")) == {1}

    result = snapshot_qa(ms, [str(s) for s in reversed(snapshots)], tmp_path / "QA", "73MHz")
    assert result.n_snapshots == N_INT
    assert [round(b.time_mjd_s) for b in result.bad] == [int(t) for t in burst_times]  # names truncate to 1 s
    assert all(b.reason == "rms above median + 3 MAD_std" and "-V-image" in b.file for b in result.bad)
    assert result.times_flagged == burst_times

    time, a1, a2, all_flagged = flag_rows(ms)
    in_burst = np.isin(time, burst_times)
    assert all_flagged[in_burst].all() and not all_flagged[~in_burst].any()
    assert result.rows_flagged == in_burst.sum() == len(BURSTS) * N_ANT * (N_ANT + 1) // 2
    with tables.table(str(ms), ack=False) as tab:
        np.testing.assert_array_equal(tab.getcol("FLAG_ROW"), in_burst)

    with open(result.csv) as fh:
        rows = list(csv.DictReader(fh))
    assert [r["bad"] for r in rows] == ["1" if k in BURSTS else "0" for k in range(N_INT)]
    clean = [float(r["rms"]) for r in rows if r["bad"] == "0"]
    burst = [float(r["rms"]) for r in rows if r["bad"] == "1"]
    assert min(burst) > 5 * max(clean) and max(clean) < result.high_threshold and min(clean) > result.low_threshold
    assert result.csv.endswith("QA/snapshot_qa_73MHz.csv")
    assert open(result.plot, "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_metrics_are_orcas(hour):
    _, snapshots, _ = hour
    from astropy.io import fits

    image = next(s for s in snapshots if "-V-" in s.name)
    data = fits.getdata(image).squeeze().astype(float)
    rms, peak, stokes = image_stats(image, box=1024)  # the image is smaller than the box: all of it
    assert stokes == 4
    assert rms == pytest.approx(np.nanstd(data)) and peak == pytest.approx(np.nanmax(np.abs(data)))
    rms_box, _, _ = image_stats(image, box=64)
    assert rms_box == pytest.approx(np.nanstd(data[96:160, 96:160]))


def test_snapshots_that_do_not_match_the_ms_are_a_clear_error(hour, ms, tmp_path):
    _, snapshots, _ = hour
    v_images = [s for s in snapshots if "-V-" in s.name]
    stray = tmp_path / v_images[0].name.replace(v_images[0].name.split("-")[1], "20250615_120000")
    shutil.copy(v_images[0], stray)
    with pytest.raises(InputError, match=r"20250615_120000-V-image.fits: snapshot time matches no integration"):
        snapshot_qa(ms, [str(s) for s in v_images] + [str(stray)], tmp_path / "QA", "73MHz")
    unnamed = tmp_path / "pilot-V-image.fits"
    shutil.copy(v_images[0], unnamed)
    with pytest.raises(InputError, match="carries no UTC time"):
        snapshot_time(unnamed)
    with pytest.raises(InputError, match="none of the 1 snapshots is a Stokes V image"):
        snapshot_qa(ms, [str(next(s for s in snapshots if "-I-" in s.name))], tmp_path / "QA", "73MHz")
    assert not flag_rows(ms)[3].any()  # nothing flagged on error


def test_the_thresholds_are_orcas_on_hand_checked_numbers():
    """median 1.00, |deviations| sorted ... median 0.02, so MAD_std = 1.4826 x 0.02 = 0.02965: the high cut
    is 1.0890 (3 MAD_std), the low cut 0.5. 1.10 is above the high cut (it would pass at 30 MAD_std);
    0.45 is below the low cut (it would pass a cut 10x lower); 0.55 is kept."""
    import inspect

    from orca_steps.snapshot_qa import Options, judge

    rms = np.array([1.00, 1.02, 0.98, 1.03, 0.97, 1.01, 0.99, 1.10, 0.45, 0.55, 1.00, 1.02, 0.98])
    defaults = {k: Options.model_fields[k].default for k in ("high_sigma", "low_fraction")}
    assert defaults == {k: inspect.signature(snapshot_qa).parameters[k].default for k in defaults}
    for bad, median, high, low in (judge(rms), judge(rms, **defaults)):
        assert median == 1.00 and high == pytest.approx(1.0 + 3 * 1.4826 * 0.02, rel=1e-4) and low == 0.5
        assert list(np.flatnonzero(bad)) == [7, 8]


@pytest.mark.parametrize("order", ["XX,XY,YX,YY", "XX,YY,XY,YX"])
def test_a_bad_integration_is_flagged_in_every_correlation_whatever_their_order(tmp_path, order):
    """snapshot-qa flags whole rows by TIME: no correlation of a bad integration survives, in either order."""
    from orca_steps.sim import simulate_ms
    from orca_steps.snapshot_qa import flag_times

    entry, _, _ = simulate_ms(tmp_path / "one.ms", n_antennas=6, n_channels=4, corr_order=order)
    assert flag_times(tmp_path / "one.ms", np.array([entry["time_mjd_s"]])) == 21
    _, _, _, all_flagged = flag_rows(tmp_path / "one.ms")
    assert all_flagged.all()
