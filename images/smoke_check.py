"""Checks for images/smoke.sh, run inside the step image with its own Python.

    python smoke_check.py imports                       import every step and every dependency
    python smoke_check.py flags MS FLAGS.npy            save the FLAG column of MS
    python smoke_check.py outputs MS FLAGS.npy FITS FZ PNG
                                                        check what the smoke run wrote; exit 1 if wrong
    python smoke_check.py recipe RESULT.json SUFFIX     science-images ran orca's recipe SUFFIX as written
"""
from __future__ import annotations

import importlib
import importlib.metadata as metadata
import re
import sys

import numpy as np


def check_imports() -> list[str]:
    """Every registered step module and every dependency of orca-argo[steps] imports in the image."""
    from orca_steps.registry import STEPS

    modules = [f"orca_steps.{module}" for module, _ in STEPS.values()]
    top_level: dict[str, list[str]] = {}
    for module, dists in metadata.packages_distributions().items():
        for dist in dists:
            top_level.setdefault(_normal(dist), []).append(module)
    for requirement in metadata.requires("orca-argo") or []:
        name, _, marker = requirement.partition(";")
        if marker and 'extra == "steps"' not in marker:
            continue
        dist = re.match(r"[A-Za-z0-9_.-]+", name.strip()).group(0)
        found = [m for m in top_level.get(_normal(dist), []) if not m.startswith("_")]
        if not found:
            return [f"dependency {dist} is not installed in the image"]
        modules += found
    problems = []
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            problems.append(f"import {module}: {exc}")
    print(f"imported {len(modules)} modules: every step and every dependency of orca-argo[steps]")
    return problems


def _normal(dist: str) -> str:
    return re.sub(r"[-_.]+", "-", dist).lower()


def read_flags(ms: str) -> np.ndarray:
    from casacore.tables import table

    with table(ms, ack=False) as t:
        return t.getcol("FLAG")


def check_ms(ms: str, flags_before: np.ndarray) -> list[str]:
    """CORRECTED_DATA exists, is finite where unflagged and differs from DATA; AOFlagger wrote flags.

    AOFlagger's generic strategy replaces the existing flags (it clears the mask first), so its
    flags differ from apply-calibration's; a strategy that kept them would only add flags.
    """
    from casacore.tables import table

    problems = []
    with table(ms, ack=False) as t:
        if "CORRECTED_DATA" not in t.colnames():
            return [f"{ms}: no CORRECTED_DATA column after apply-calibration"]
        data, corrected, flags = t.getcol("DATA"), t.getcol("CORRECTED_DATA"), t.getcol("FLAG")
    good = ~flags
    if not good.any():
        problems.append(f"{ms}: every visibility is flagged")
    elif not np.isfinite(corrected[good]).all():
        problems.append(f"{ms}: CORRECTED_DATA has non-finite unflagged values")
    elif np.allclose(corrected[good], data[good]):
        problems.append(f"{ms}: CORRECTED_DATA equals DATA: no calibration was applied")
    print(f"flagged fraction: {flags_before.mean():.4f} before AOFlagger, {flags.mean():.4f} after")
    if flags.shape != flags_before.shape or np.array_equal(flags, flags_before):
        problems.append(f"{ms}: FLAG did not change: AOFlagger wrote no flags")
    return problems


def check_image(fits_path: str, fz_path: str) -> list[str]:
    """The dirty image is finite and shows the sky (peak well above the robust noise); fpack kept it."""
    from astropy.io import fits

    image = fits.getdata(fits_path)
    if image.size == 0 or not np.isfinite(image).all():
        return [f"{fits_path}: empty image or non-finite pixels"]
    robust_rms = 1.4826 * float(np.median(np.abs(image - np.median(image))))
    peak = float(image.max())
    print(f"dirty image {image.shape}: peak {peak:.1f}, robust rms {robust_rms:.1f}")
    problems = []
    if not peak > 5 * robust_rms > 0:
        problems.append(f"{fits_path}: peak {peak:.1f} is not above 5x the robust rms {robust_rms:.1f}")
    with fits.open(fz_path) as hdus:
        packed = hdus[1].data
    # fpack quantises floating-point images (q=4): equal to a fraction of the noise, not bit for bit.
    if packed.shape != image.shape[-2:] and packed.shape != image.shape:
        problems.append(f"{fz_path}: shape {packed.shape} differs from {image.shape}")
    elif np.max(np.abs(packed.reshape(image.shape) - image)) > robust_rms:
        problems.append(f"{fz_path}: differs from {fits_path} by more than the noise")
    return problems


def plot(png: str) -> list[str]:
    """matplotlib works with MPLCONFIGDIR on the writable /tmp (QA plots need it)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    fig.savefig(png)
    return []


def check_recipe(result_file: str, suffix: str) -> list[str]:
    """The image's WSClean ran the site's recipe unchanged (-multiscale with -local-rms): the step reports no
    change, and WSClean's own command line (the image's HISTORY) has every argument of the recipe."""
    import json

    from astropy.io import fits
    from orca_steps.wsclean import site_recipes, wsclean_version

    result = json.load(open(result_file))
    recipe = next(r for r in site_recipes().science if r.suffix == suffix)
    images = [p for p in result["images"].get(suffix, []) if p.endswith("-image.fits")]
    print(f"wsclean {wsclean_version()}: {suffix}: {len(images)} restored image(s), "
          f"recipe changes: {result['recipe_changes']}")
    if result["recipe_changes"]:
        return [f"{suffix} was changed for the installed WSClean: {result['recipe_changes']}"]
    if not images:
        return [f"{suffix}: no restored image in {result_file}"]
    command = "".join(str(h) for h in fits.getheader(images[0])["HISTORY"]).split()
    missing = [a for a in recipe.options.args() if a not in command]
    if missing or "-local-rms" not in command or "-multiscale" not in command:
        return [f"{images[0]}: WSClean's command line lacks {missing or ['-multiscale', '-local-rms']}"]
    return []


def main(argv: list[str]) -> int:
    if argv == ["imports"]:
        problems = check_imports()
    elif argv[:1] == ["flags"] and len(argv) == 3:
        np.save(argv[2], read_flags(argv[1]))
        return 0
    elif argv[:1] == ["recipe"] and len(argv) == 3:
        problems = check_recipe(argv[1], argv[2])
    elif argv[:1] == ["outputs"] and len(argv) == 6:
        ms, flags_file, fits_path, fz_path, png = argv[1:]
        problems = check_ms(ms, np.load(flags_file)) + check_image(fits_path, fz_path) + plot(png)
    else:
        print(__doc__, file=sys.stderr)
        return 2
    for problem in problems:
        print(f"smoke check failed: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
