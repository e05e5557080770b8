"""Where the zenith is when, for placing fixture images: from the simulator's astropy geometry, not from
the casacore code the steps use."""
import numpy as np

from orca_steps.sim.geometry import local_sidereal_hours, zenith_j2000

T0 = 60841.0 * 86400.0  # 2025-06-15 00:00 UTC, MJD seconds
SIDEREAL_DAY_S = 86164.0905


def time_at_lst(lst_hours: float, t0: float = T0) -> float:
    """The first MJD-second time at or after ``t0`` at which the local sidereal time is ``lst_hours``."""
    t = t0 + (lst_hours - local_sidereal_hours(t0)) % 24.0 / 24.0 * SIDEREAL_DAY_S
    return t + ((lst_hours - local_sidereal_hours(t) + 12) % 24 - 12) / 24.0 * SIDEREAL_DAY_S  # refine


def zenith_deg(time_s: float) -> tuple[float, float]:
    """J2000 (ra, dec) in degrees of the array's zenith at ``time_s``."""
    ra, dec = zenith_j2000(time_s)
    return float(np.rad2deg(ra)), float(np.rad2deg(dec))


def count_held_images(monkeypatch, *modules) -> list[int]:
    """Wrap the real ``skyimage.load_image`` (also where ``modules`` imported it) to count the images whose
    pixels are still held; returns a one-item list with the most held at once, filled as the step runs."""
    import weakref

    from orca_steps import skyimage

    loaded, most = [], [0]
    real = skyimage.load_image

    def counting_load(*args, **kwargs):
        img = real(*args, **kwargs)
        if img.data is not None:
            loaded[:] = [ref for ref in loaded if ref() is not None and ref().data is not None] + [weakref.ref(img)]
            most[0] = max(most[0], len(loaded))
        return img

    for module in (skyimage, *modules):
        monkeypatch.setattr(module, "load_image", counting_load)
    return most
