"""dewarp: a smooth position shift is measured against a VLSSr-format catalogue and removed."""
from __future__ import annotations

import numpy as np
import pytest

from orca_steps import dewarp
from orca_steps.errors import InputError
from orca_steps.sim.images import write_sky_image
from orca_steps.skyimage import lst_deg

T0 = 60841.0 * 86400.0
TIME = T0 + ((14.5 * 15 - lst_deg(T0)) % 360.0) / 360.98564736629 * 86400.0
ZEN = (lst_deg(TIME), 37.24)
FREQ = 75.4e6


def sexa(value, hours):
    v = abs(value) / (15 if hours else 1)
    d, m = int(v), int((v % 1) * 60)
    return f"{'-' if value < 0 else '+' if not hours else ''}{d:02d} {m:02d} {((v * 60) % 1) * 60:05.2f}"


def make_field(tmp_path, n=40):
    rng = np.random.default_rng(5)
    east, north = rng.uniform(-11, 11, n), rng.uniform(-11, 11, n)
    dec = ZEN[1] + north
    ra = ZEN[0] + east / np.cos(np.deg2rad(dec))
    flux = rng.uniform(5, 30, n)
    # smooth ionospheric shift, up to ~3.5 arcmin
    shift_e = (3.0 * np.sin(np.deg2rad(east * 8)) + 1.0) / 60
    shift_n = (2.5 * np.cos(np.deg2rad(north * 10))) / 60
    seen = [{"ra_deg": r + se / np.cos(np.deg2rad(d)), "dec_deg": d + sn, "flux_jy": f}
            for r, d, f, se, sn in zip(ra, dec, flux, shift_e, shift_n)]
    img = write_sky_image(tmp_path / "deep-I-image.fits", seen, ZEN, TIME, FREQ, size=512, scale_deg=0.05,
                          beam_fwhm_deg=0.2, noise_jy=0.1, seed=2)
    lines = ["# VLSSr-format test catalogue: RA(h m s) Dec(d m s) Flux(Jy, 74 MHz)"]
    lines += [f"{sexa(r, True)} {sexa(d, False)} {f * (74e6 / FREQ) ** -0.7:.2f}" for r, d, f in zip(ra, dec, flux)]
    cat = tmp_path / "vlssr.txt"
    cat.write_text("\n".join(lines) + "\n")
    return img, cat, np.column_stack([ra, dec])


def rms_offset(found, truth):
    """rms distance (arcmin) from each true position to the nearest found source, and how many were found."""
    seps = []
    for ra, dec in truth:
        s = np.hypot(((found[:, 0] - ra + 180) % 360 - 180) * np.cos(np.deg2rad(dec)), found[:, 1] - dec) * 60
        if s.min() < 6:
            seps.append(s.min())
    return float(np.sqrt(np.mean(np.square(seps)))), len(seps)


def test_dewarp_reduces_offsets_3x_on_held_out_sources(tmp_path):
    """The screen is built from 3 of every 4 sources; it is judged on the 4th, which it never saw.

    In sample the screen passes through its anchors (residual ~0), so only held-out sources are honest.
    """
    img, cat, truth = make_field(tmp_path, n=48)
    header, *entries = cat.read_text().splitlines()
    held = np.arange(48) % 4 == 0
    cat.write_text("\n".join([header] + [e for e, h in zip(entries, held) if not h]) + "\n")
    res = dewarp.run(dewarp.Options(work_dir=str(tmp_path), deep_image=str(img), catalogue=str(cat)))
    assert res.status == "ok" and res.n_anchors >= 30
    before, n_before = rms_offset(dewarp.find_sources(img, tmp_path), truth[held])
    (tmp_path / "after").mkdir()
    after, n_after = rms_offset(dewarp.find_sources(res.dewarped[0], tmp_path / "after"), truth[held])
    assert n_before == n_after == held.sum()  # every held-out source is found, before and after
    assert before > 1.5  # arcmin: the shift is really there
    assert after * 3 <= before, (before, after)
    # the step's own leave-one-out figure tells the same story
    assert res.loo_rms_arcmin * 3 <= res.rms_offset_arcmin, res


def test_not_enough_anchors_is_reported(tmp_path):
    img, cat, truth = make_field(tmp_path)
    lines = cat.read_text().splitlines()[:5]  # header + 4 sources
    cat.write_text("\n".join(lines) + "\n")
    res = dewarp.run(dewarp.Options(work_dir=str(tmp_path), deep_image=str(img), catalogue=str(cat)))
    assert res.status.startswith("not enough anchors") and res.dewarped == []
    assert "not enough anchors" in (tmp_path / "QA" / "dewarp.json").read_text()


def test_missing_image_and_malformed_catalogue(tmp_path):
    img, cat, _ = make_field(tmp_path, n=5)
    with pytest.raises(InputError, match="nope.fits: deep Stokes I image FITS file does not exist"):
        dewarp.run(dewarp.Options(work_dir=str(tmp_path), deep_image=str(tmp_path / "nope.fits"), catalogue=str(cat)))
    cat.write_text("12 30 00.0 +40 00 xx 5.0\n")
    with pytest.raises(InputError, match="vlssr.txt, line 1: malformed VLSSr entry"):
        dewarp.run(dewarp.Options(work_dir=str(tmp_path), deep_image=str(img), catalogue=str(cat)))
