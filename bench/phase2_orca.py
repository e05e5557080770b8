"""Benchmark of Phase 2 imaging: orca's way against ours on one simulated subband-hour (not a test).

The hour (the same simulation as bench/phase2.py) is taken through Phase 1, concat, fix-field, rephase
and AOFlagger; those costs are not counted. Then every imaging recipe (pilot snapshots, the 7 science
recipes) runs twice, interleaved so both ways see the same machine load:
- orca's way: one WSClean call per recipe with orca's arguments and WSClean's default gridder;
- ours: the same recipe as our steps run it (``wsclean.image_recipe`` with ``wsclean.SPEEDUPS``).
Printed per recipe: seconds both ways and their ratio (target for the sum <= 0.5), and the largest
pixel difference of any product as a fraction of that product's peak (target <= 1e-3), and the largest
flux difference of the simulated sources in the restored Stokes I images (target <= 1 %). Pixels are
compared above 10 degrees of elevation: orca's horizon mask, below which primary-beam correction makes
every product NaN.

Then, unless ``--no-accurate``, each recipe runs a third time with the w-gridder at accuracy 1e-6 (an
accurate transform, not timed), and both ways are compared with it the same way: which of the two makes
the image the data describe.

    .venv/bin/python bench/phase2_orca.py [--out out/bench-phase2-orca] [--n-antennas 64]
        [--n-integrations 12] [--image-size 1024] [--image-scale-deg 0.125] [--threads N] [--recipes ...]
        [--no-accurate]
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np

TARGET_TIME_RATIO = 0.5
TARGET_PIXEL = 1e-3
TARGET_FLUX = 0.01
SUBBAND = "73MHz"
MIN_ELEVATION_DEG = 10.0
ACCURATE = {"gridder": "wgridder", "wgridder_accuracy": 1e-6}  # the reference transform


def prepared_hour(out: Path, n_antennas: int, n_integrations: int) -> tuple[dict, Path, str]:
    """The simulated hour after Phase 1, concat, fix-field, rephase and AOFlagger: what the imagers see."""
    from phase2 import phase1

    from orca_steps.aoflagger import run_aoflagger
    from orca_steps.concat import concatenate_ms
    from orca_steps.fix_field import fix_field
    from orca_steps.rephase import lst_phase_centre, rephase_ms

    truth, work, outs = phase1(out, n_antennas, n_integrations)
    ms = concatenate_ms(outs, work / f"{SUBBAND}_concat.ms").concat_ms
    fix_field(ms)
    rephase_ms(ms, *lst_phase_centre("14h"))
    strategy = out / "keep-flags.lua"  # as bench/phase2.py: flag non-finite samples only
    strategy.write_text('aoflagger.require_min_version("3.0")\nfunction execute(input)\n  input:flag_nans()\nend\n')
    run_aoflagger(ms, strategy)
    return truth, work, ms


def above_horizon(header) -> np.ndarray:
    """Pixels of a SIN-projected image above MIN_ELEVATION_DEG (l^2 + m^2 < cos^2 el)."""
    ny, nx = header["NAXIS2"], header["NAXIS1"]
    l = np.deg2rad((np.arange(nx) + 1 - header["CRPIX1"]) * header["CDELT1"])
    m = np.deg2rad((np.arange(ny) + 1 - header["CRPIX2"]) * header["CDELT2"])
    return (l[None, :] ** 2 + m[:, None] ** 2) < np.cos(np.deg2rad(MIN_ELEVATION_DEG)) ** 2


def pixel_difference(orca: Path, ours: Path) -> float:
    """max |ours - orca| / max |orca| over the pixels above the horizon mask."""
    from astropy.io import fits

    with fits.open(orca) as a, fits.open(ours) as b:
        sky = above_horizon(a[0].header)
        x, y = a[0].data[0, 0][sky], b[0].data[0, 0][sky]
    return float(np.nanmax(np.abs(y - x)) / np.nanmax(np.abs(x)))


def diverged(images: dict[str, Path]) -> bool:
    """A clean that ran away: a restored image brighter than 2x its dirty image (a restored image keeps
    the dirty image's peak to within tens of per cent)."""
    from astropy.io import fits

    for name in (n for n in images if n.endswith("-image.fits")):
        dirty = images.get(name.replace("-image.fits", "-dirty.fits"))
        if dirty and np.nanmax(np.abs(fits.getdata(images[name]))) > 2 * np.nanmax(np.abs(fits.getdata(dirty))):
            return True
    return False


def source_fluxes(image: Path, sources: list[tuple[str, float, float]]) -> dict[str, float]:
    """Peak brightness within 2 pixels of each source above the horizon mask."""
    from astropy.io import fits

    from orca_steps.pb_correct import celestial_wcs

    with fits.open(image) as hdul:
        header, data = hdul[0].header, hdul[0].data[0, 0]
    wcs, sky = celestial_wcs(header), above_horizon(header)
    out = {}
    for name, ra, dec in sources:
        x, y = (int(round(float(v))) for v in wcs.wcs_world2pix(ra, dec, 0))
        if 2 <= x < data.shape[1] - 2 and 2 <= y < data.shape[0] - 2 and sky[y, x]:
            out[name] = float(np.nanmax(data[y - 2:y + 3, x - 2:x + 3]))
    return out


def compare(reference: dict[str, Path], images: dict[str, Path], recipe, sources) -> tuple[float, float]:
    """Largest pixel difference of any product (of the reference's peak) and largest flux difference of
    the simulated sources in restored Stokes I images, of ``images`` against ``reference``."""
    pixel = max(pixel_difference(reference[n], images[n]) for n in reference)
    flux = 0.0
    if recipe.options.pol == "I" and recipe.options.niter:
        for name in (n for n in reference if n.endswith("-image.fits")):
            a, b = source_fluxes(reference[name], sources), source_fluxes(images[name], sources)
            flux = max([flux] + [abs(b[s] / a[s] - 1) for s in a])
    return pixel, flux


def truth_sources(truth: dict) -> list[tuple[str, float, float]]:
    """(name, RA, Dec) of every simulated source, at its flux-weighted centre."""
    out = []
    for source in truth["sky_sources"] + truth["field_sources"]:
        comps = source["components"]
        w = np.array([c["stokes"][0] for c in comps])
        out.append((source["name"], float(np.sum(w * [c["ra_deg"] for c in comps]) / w.sum()),
                    float(np.sum(w * [c["dec_deg"] for c in comps]) / w.sum())))
    return out


def main() -> None:
    from phase2 import hour_arguments

    parser = hour_arguments(__doc__, "out/bench-phase2-orca")
    parser.add_argument("--recipes", nargs="*", help="only these recipes (suffixes), e.g. for large images")
    parser.add_argument("--no-accurate", action="store_true", help="skip the comparison with an accurate transform")
    args = parser.parse_args()

    from orca_steps.errors import ToolStoppedError
    from orca_steps.logs import setup_logging
    from orca_steps.wsclean import PILOT_SNAPSHOT, SCIENCE_RECIPES, SPEEDUPS, image_recipe, unique_times, wsclean_version

    setup_logging("WARNING")
    out = Path(args.out).resolve()
    shutil.rmtree(out, ignore_errors=True)
    print(f"simulating {args.n_antennas} antennas x {args.n_integrations} integrations, Phase 1 ... AOFlagger ...",
          flush=True)
    truth, work, ms = prepared_hour(out, args.n_antennas, args.n_integrations)
    n_ints = len(unique_times(ms))
    sources = truth_sources(truth)
    print(f"WSClean {wsclean_version()}, {args.image_size} px x {args.image_scale_deg} deg, -j {args.threads}; "
          f"ours adds {SPEEDUPS}", flush=True)

    header = (f"{'recipe':<28}{'orca s':>9}{'ours s':>9}{'ratio':>7}{'images':>8}{'pixel diff':>12}"
              f"{'flux diff':>11}")
    print("\n" + header)
    totals = {"orca": 0.0, "ours": 0.0}
    failed = []
    worst_pixel = worst_flux = 0.0
    against_accurate: list[tuple[str, float, float, float, float]] = []
    recipes = [r for r in (PILOT_SNAPSHOT, *SCIENCE_RECIPES) if not args.recipes or r.suffix in args.recipes]
    for k, recipe in enumerate(recipes):
        intervals = n_ints if recipe is PILOT_SNAPSHOT else None
        seconds, made, stopped = {}, {}, []
        order = ("orca", "ours") if k % 2 == 0 else ("ours", "orca")  # neither side always goes first
        for way in order:
            start = time.perf_counter()
            try:
                run = image_recipe(recipe, ms, work / way, SUBBAND, args.image_size, args.image_scale_deg,
                                   args.threads, intervals_out=intervals, speedups=way == "ours")
                made[way] = {Path(p).name: Path(p) for p in run.images}
            except ToolStoppedError:  # the divergence watch stopped a clean that ran away
                stopped.append(way)
            seconds[way] = time.perf_counter() - start
            totals[way] += seconds[way]
        if stopped:
            failed.append(f"{recipe.suffix}: the clean diverged and was stopped ({' and '.join(stopped)})")
            print(f"{recipe.suffix:<28}{seconds['orca']:>9.1f}{seconds['ours']:>9.1f}"
                  f"{seconds['ours'] / seconds['orca']:>7.2f}  diverged, stopped: {', '.join(stopped)}", flush=True)
            continue
        orca_images, ours_images = made["orca"], made["ours"]
        if sorted(orca_images) != sorted(ours_images):
            raise SystemExit(f"{recipe.suffix}: the two ways wrote different products: "
                             f"{sorted(set(orca_images) ^ set(ours_images))}")
        pixel, flux = compare(orca_images, ours_images, recipe, sources)
        ran_away = [way for way, images in (("orca", orca_images), ("ours", ours_images)) if diverged(images)]
        if ran_away:
            pixel, flux = float("nan"), 0.0  # images of a diverged clean compare nothing
            failed.append(f"{recipe.suffix}: the clean diverged ({' and '.join(ran_away)})")
        elif not args.no_accurate:
            exact = recipe.model_copy(update={"options": recipe.options.model_copy(update=ACCURATE)})
            run = image_recipe(exact, ms, work / "accurate", SUBBAND, args.image_size, args.image_scale_deg,
                               args.threads, intervals_out=intervals, speedups=False)
            accurate_images = {Path(p).name: Path(p) for p in run.images}
            against_accurate.append((recipe.suffix, *compare(accurate_images, orca_images, recipe, sources),
                                     *compare(accurate_images, ours_images, recipe, sources)))
        worst_pixel, worst_flux = float(np.nanmax([worst_pixel, pixel])), max(worst_flux, flux)
        print(f"{recipe.suffix:<28}{seconds['orca']:>9.1f}{seconds['ours']:>9.1f}"
              f"{seconds['ours'] / seconds['orca']:>7.2f}{len(orca_images):>8}{pixel:>12.1e}"
              f"{(f'{100 * flux:.2f} %' if flux else '-'):>11}{'  diverged: ' + ', '.join(ran_away) if ran_away else ''}",
              flush=True)
    ratio = totals["ours"] / totals["orca"]
    print(f"{'all':<28}{totals['orca']:>9.1f}{totals['ours']:>9.1f}{ratio:>7.2f}{'':>8}{worst_pixel:>12.1e}"
          f"{100 * worst_flux:>9.2f} %")
    failed += [f"time ratio {ratio:.2f} > {TARGET_TIME_RATIO}"] * (ratio > TARGET_TIME_RATIO)
    failed += [f"pixel difference {worst_pixel:.1e} > {TARGET_PIXEL:.0e} of the peak"] * (worst_pixel > TARGET_PIXEL)
    failed += [f"flux difference {100 * worst_flux:.2f} % > {100 * TARGET_FLUX:.0f} %"] * (worst_flux > TARGET_FLUX)
    print(f"targets: time <= {TARGET_TIME_RATIO} x orca's, pixels <= {TARGET_PIXEL:.0e} of the peak, "
          f"fluxes <= {100 * TARGET_FLUX:.0f} %: " + ("met" if not failed else "missed: " + "; ".join(failed)))
    if against_accurate:
        print(f"\nagainst an accurate transform ({ACCURATE}), same measures:")
        print(f"{'recipe':<28}{'orca pixel':>12}{'orca flux':>11}{'ours pixel':>12}{'ours flux':>11}")
        for suffix, orca_pixel, orca_flux, ours_pixel, ours_flux in against_accurate:
            print(f"{suffix:<28}{orca_pixel:>12.1e}{(f'{100 * orca_flux:.2f} %' if orca_flux else '-'):>11}"
                  f"{ours_pixel:>12.1e}{(f'{100 * ours_flux:.2f} %' if ours_flux else '-'):>11}")


if __name__ == "__main__":
    main()
