"""cube_dewarp end to end: a simulated hour whose field sources are refracted by the ionosphere, i.e. moved by
a smooth shift x (nu_ref / nu)^2 in each channel (the simulator's iono_ref_freq_hz), is imaged into a cube by
real WSClean (-channels-out 4); the MFS image's screen, scaled per channel, must take every channel's sources
back to the true positions the simulator recorded, by each channel's own amount.

The data are what a perfect Phase 1 would leave: the simulator's uncorrupted visibilities (MODEL_DATA) as
CORRECTED_DATA, no A-team, no RFI, 20 field sources of 200-400 Jy at least 2.5 deg apart, 64 antennas.
Positions are measured here (Gaussian fits), not with the step's PyBDSF.
"""
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS
from casacore import tables

from orca_steps.concat import concatenate_ms
from orca_steps.cube import make_cube
from orca_steps.fix_field import fix_field
from orca_steps.msio import ensure_column
from orca_steps.rephase import lst_phase_centre, rephase_ms
from orca_steps.sim import simulate_night

NCHAN, SIZE, SCALE, REF_HZ = 4, 512, 0.03, 75.4e6


@pytest.fixture(scope="module")
def refracted(tmp_path_factory):
    root = tmp_path_factory.mktemp("cube-dewarp")
    night = simulate_night(root / "sim", n_antennas=128, n_integrations=6, n_channels=NCHAN, a_team=False, rfi=False,
                           noise_jy=0.0, write_model=True, dead_antennas=0, noisy_antennas=0, n_field_sources=16,
                           field_flux_jy=(200.0, 400.0), field_radius_deg=6.5, field_min_sep_deg=2.5,
                           iono_shift_arcmin=3.5, iono_scale_deg=30.0, iono_ref_freq_hz=REF_HZ,
                           reference_catalogue=True)
    paths = night.ms_paths[("73MHz", 14)]
    for p in paths:  # perfectly calibrated
        with tables.table(str(p), readonly=False, ack=False) as tab:
            ensure_column(tab, "CORRECTED_DATA")
            tab.putcol("CORRECTED_DATA", tab.getcol("MODEL_DATA"))
    ms = Path(concatenate_ms(paths, root / "work" / "73MHz_concat.ms").concat_ms)
    fix_field(ms)
    rephase_ms(ms, *lst_phase_centre("14h"))
    result = make_cube(ms, ms.parent, "73MHz", SIZE, SCALE, night.truth["refs"]["beam"],
                       dewarp_catalogue=night.truth["reference_catalogue"], threads=2)
    return ms, night.truth, result


def positions(plane: np.ndarray, guess: np.ndarray, box: int = 7) -> np.ndarray:
    """(n, 2) x, y of an elliptical Gaussian fitted in a box around each guess."""
    from scipy.optimize import curve_fit

    yy, xx = np.mgrid[-box:box + 1, -box:box + 1]

    def gauss(_, amp, x0, y0, a, b, c):
        dx, dy = xx - x0, yy - y0
        return (amp * np.exp(-(a * dx ** 2 + 2 * b * dx * dy + c * dy ** 2))).ravel()

    out = []
    for gx, gy in np.round(guess).astype(int):
        cut = np.nan_to_num(plane[gy - box:gy + box + 1, gx - box:gx + box + 1])
        (_, x0, y0, *_), _ = curve_fit(gauss, None, cut.ravel(), p0=[cut.max(), 0, 0, 0.1, 0, 0.1])
        out.append([gx + x0, gy + y0])
    return np.array(out)


def truth_pixels(truth: dict, wcs: WCS, scale: float) -> np.ndarray:
    """(n, 2) pixel positions of the field sources at true position + shift x ``scale`` (0: the true ones)."""
    shifts = truth["ionosphere"]["shifts"]
    ra, dec = [], []
    for src in truth["field_sources"]:
        c, s = src["components"][0], shifts[src["name"]]
        true_dec = c["dec_deg"] - s["north_arcmin"] / 60
        true_ra = c["ra_deg"] - s["east_arcmin"] / 60 / np.cos(np.deg2rad(true_dec))
        dec.append(true_dec + scale * s["north_arcmin"] / 60)
        ra.append(true_ra + scale * s["east_arcmin"] / 60 / np.cos(np.deg2rad(dec[-1])))
    return np.column_stack(wcs.all_world2pix(ra, dec, 0))


def test_the_screen_comes_from_the_mfs_image(refracted):
    ms, _, result = refracted
    assert result.dewarp_status.startswith("dewarped with")
    assert int(result.dewarp_status.split()[2]) >= 6
    with tables.table(str(ms / "SPECTRAL_WINDOW"), ack=False) as spw:
        band_centre = float(np.mean(spw.getcell("CHAN_FREQ", 0)))  # WSClean's MFS frequency
    header = fits.getheader(result.cubes["image.pbcorr_dewarped"])
    assert header["DWFREQ"] == pytest.approx(band_centre, abs=1.0)
    assert "MFS" in header["DWSRC"] and header["DWANCH"] >= 6


def test_each_channel_moves_back_by_its_own_refraction(refracted):
    """Per channel k: sources start at truth + shift (ref/nu_k)^2 and end near the truth; the move, projected
    on the true shift, follows (ref/nu_k)^2: the same fraction of the truth in every channel."""
    _, truth, result = refracted
    wcs = WCS(fits.getheader(result.cubes["image.pbcorr"])).celestial
    before_cube = fits.getdata(result.cubes["image.pbcorr"])[0]
    after_cube = fits.getdata(result.cubes["image.pbcorr_dewarped"])[0]
    true = truth_pixels(truth, wcs, 0.0)
    at_ref = truth_pixels(truth, wcs, 1.0) - true
    inside = np.all((true > 20) & (true < SIZE - 20), axis=1)
    true, at_ref = true[inside], at_ref[inside]
    assert inside.sum() >= 10 and np.sqrt(np.mean(np.sum(at_ref ** 2, axis=1))) > 0.8  # pixels
    fractions = []
    for k, nu in enumerate(result.freqs_hz):
        law = (REF_HZ / nu) ** 2
        expected = true + at_ref * law
        before = positions(before_cube[k], expected)
        after = positions(after_cube[k], expected)
        miss_before = np.sqrt(np.mean(np.sum((before - true) ** 2, axis=1)))
        miss_after = np.sqrt(np.mean(np.sum((after - true) ** 2, axis=1)))
        seen = np.sqrt(np.mean(np.sum((before - expected) ** 2, axis=1)))
        move = before - after
        fraction = np.sum(move * at_ref) / np.sum(at_ref ** 2) / law
        print(f"channel {k} {nu / 1e6:.2f} MHz: law {law:.4f}, imaged-vs-truth {seen:.3f} px, "
              f"miss {miss_before:.3f} -> {miss_after:.3f} px, move/truth {fraction:.4f}")
        assert seen < 0.35 * np.sqrt(np.mean(np.sum((at_ref * law) ** 2, axis=1)))  # the image shows the truth
        assert miss_after * 10 <= miss_before  # back on the truth
        fractions.append(fraction)
    assert np.all(np.abs(np.array(fractions) - 1) < 0.15)
    assert np.ptp(fractions) < 0.005  # each channel by its own (ref/nu)^2: the same fraction of the truth


def test_a_screen_that_would_fit_noise_is_not_applied_to_the_channels(tmp_path):
    """As the dewarp step: without an ionospheric shift the anchors' offsets are noise; no screen, no dewarped cube."""
    from orca_steps.cube import channel_screen
    from test_dewarp import make_field

    mfs, catalogue, _ = make_field(tmp_path, shift=0.0)
    dx, dy, _, anchors, status = channel_screen(mfs, str(catalogue), tmp_path)
    assert anchors >= 6 and dx is None and dy is None
    assert status.startswith("not dewarped: leave-one-out residual"), status
