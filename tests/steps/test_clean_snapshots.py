"""CLEANed Stokes I snapshots: one restored image per integration, always fpacked, cleaner than the
dirty pilot of the same integration."""
import numpy as np
from astropy.io import fits

from orca_steps.wsclean import utc_stamp
from phase2_unit import SUBBAND, processed_unit


def test_one_fpacked_restored_image_per_integration():
    unit = processed_unit()
    folder = unit.archive / "snapshots_clean"
    stamps = [utc_stamp(e["time_mjd_s"]) for e in unit.truth["units"][0]["ms"]]
    assert sorted(p.name for p in folder.iterdir()) == [f"{SUBBAND}-Clean-Snapshot-{s}-image.fits.fs" for s in stamps]
    with fits.open(folder / f"{SUBBAND}-Clean-Snapshot-{stamps[0]}-image.fits.fs") as hdul:
        header = hdul[1].header
    assert header["WSCNITER"] == 50000 and header["WSCMAJOR"] <= 2  # orca's recipe: at most 2 major cycles
    assert header["DATE-AVG"].startswith(f"{stamps[0][:4]}-{stamps[0][4:6]}-{stamps[0][6:8]}")


def test_cleaning_removed_sidelobes():
    """Away from the sources, the CLEANed snapshot is quieter than the dirty pilot of the same integration."""
    unit = processed_unit()
    stamp = utc_stamp(unit.truth["units"][0]["ms"][2]["time_mjd_s"])
    with fits.open(unit.archive / "snapshots_clean" / f"{SUBBAND}-Clean-Snapshot-{stamp}-image.fits.fs") as h:
        clean = h[1].data[0, 0]
    with fits.open(unit.archive / "snapshots" / f"{SUBBAND}-Pilot-Snapshot-{stamp}-I-image.fits.fs") as h:
        dirty = h[1].data[0, 0]

    def robust_rms(image):
        inner = image[128:384, 128:384]
        return 1.4826 * np.nanmedian(np.abs(inner - np.nanmedian(inner)))

    assert robust_rms(clean) < 0.7 * robust_rms(dirty)
