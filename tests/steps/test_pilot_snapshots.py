"""Pilot snapshots: one dirty Stokes I and V image per integration, named by its UTC mid-time, showing
Cyg A and Cas A where they are."""
import subprocess
import sys
from pathlib import Path

import numpy as np
from astropy.io import fits

from orca_steps.pb_correct import celestial_wcs
from orca_steps.wsclean import utc_stamp
from phase2_unit import SUBBAND, processed_unit, source_centre, truth_of


def snapshots(unit, stokes: str) -> list[Path]:
    return sorted((unit.archive / "snapshots").glob(f"{SUBBAND}-Pilot-Snapshot-*-{stokes}-image.fits.fs"))


def test_one_image_per_integration_named_by_its_utc_mid_time():
    unit = processed_unit()
    stamps = [utc_stamp(e["time_mjd_s"]) for e in unit.truth["units"][0]["ms"]]
    for stokes in ("I", "V"):
        names = [p.name for p in snapshots(unit, stokes)]
        assert names == [f"{SUBBAND}-Pilot-Snapshot-{s}-{stokes}-image.fits.fs" for s in stamps]
    assert len(list((unit.archive / "snapshots").glob("*-psf.fits.fs"))) == 1  # only the first PSF is kept
    with fits.open(snapshots(unit, "V")[0]) as hdul:
        assert hdul[1].header["CRVAL4"] == 4  # Stokes V


def test_every_snapshot_shows_cyg_a_and_cas_a_within_a_pixel():
    unit = processed_unit()
    images = snapshots(unit, "I")
    assert len(images) == 6
    for image in images:
        with fits.open(image) as hdul:
            header, data = hdul[1].header, hdul[1].data[0, 0]
        wcs = celestial_wcs(header)
        for name in ("Cyg A", "Cas A"):
            x, y = wcs.wcs_world2pix(*source_centre(truth_of(unit, name)), 0)
            xi, yi = int(round(float(x))), int(round(float(y)))
            box = data[yi - 3:yi + 4, xi - 3:xi + 4]
            j, i = np.unravel_index(np.nanargmax(box), box.shape)
            assert np.hypot(xi - 3 + i - x, yi - 3 + j - y) <= 1.0, (image.name, name)
            around = data[yi - 15:yi + 16, xi - 15:xi + 16]
            assert box.max() == np.nanmax(around)  # the brightest thing for 4 degrees around, not a sidelobe


def test_wsclean_missing_from_path_is_one_clear_error(tmp_path):
    unit = processed_unit()
    ms = next(unit.input_root.rglob("*.ms"))  # any MS: the tool is looked for before anything is read
    env = {"PATH": str(Path(sys.executable).parent), "HOME": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-m", "orca_steps.cli", "pilot-snapshots", "--ms", str(ms),
                           "--work_dir", str(tmp_path), "--subband", SUBBAND], capture_output=True, text=True, env=env)
    assert proc.returncode == 3
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("orca-step")]
    assert errors == ["orca-step pilot-snapshots: error: required tool 'wsclean' is not on PATH "
                      "(Debian package: wsclean)"]
    assert proc.stdout == "" and not list(tmp_path.glob("snapshots/*"))
