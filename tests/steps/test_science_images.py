"""The 7 science runs: each recipe's images in orca's folders, named by UTC mid-time, made with the
recipe's arguments (WSClean writes its command line into every image's HISTORY)."""
import html
import re

import numpy as np
import pytest
from astropy.io import fits

from orca_steps import wsclean
from orca_steps.errors import InputError
from orca_steps.products import QA_PAGE
from orca_steps.science_images import science_images
from orca_steps.wsclean import SCIENCE_RECIPES, adapt_to_version, utc_stamp
from phase2_unit import IMAGE_SCALE_DEG, IMAGE_SIZE, SUBBAND, load_json, processed_unit


def command_line(image) -> str:
    return "".join(str(h) for h in fits.getheader(image)["HISTORY"])


def test_each_recipe_made_its_images_in_orcas_folders():
    unit = processed_unit()
    times = [e["time_mjd_s"] for e in unit.truth["units"][0]["ms"]]
    hour_stamp = utc_stamp((times[0] + times[-1]) / 2)
    interval_stamps = [utc_stamp(t) for t in times]  # 6 integrations in 6 ten-minute intervals
    for recipe in SCIENCE_RECIPES:
        folder = unit.archive / recipe.folder
        images = sorted(folder.glob(f"{SUBBAND}-{recipe.suffix}-*-image.fits"))
        stamps = interval_stamps if recipe.options.intervals_out else [hour_stamp]
        assert [p.name for p in images] == [f"{SUBBAND}-{recipe.suffix}-{s}-image.fits" for s in stamps]
        expected, _ = adapt_to_version(recipe.options, wsclean.wsclean_version())
        expected = expected.model_copy(update={"size": IMAGE_SIZE, "scale_deg": IMAGE_SCALE_DEG, "intervals_out": None})
        used = command_line(images[0])
        for arg in " ".join(expected.args()).split(" -"):
            assert f"-{arg.lstrip('-')}" in used, (recipe.suffix, arg)
        header = fits.getheader(images[0])
        assert header["WSCNITER"] == recipe.options.niter
        if recipe.options.niter:  # cleaned: model and residual beside the restored image
            assert images[0].with_name(images[0].name.replace("-image.fits", "-model.fits")).is_file()


def test_the_deep_image_is_deeper_than_a_ten_minute_one():
    unit = processed_unit()
    deep = next((unit.archive / "V" / "deep").glob("*-image.fits"))
    ten = sorted((unit.archive / "V" / "10min").glob("*-image.fits"))

    def rms(path):  # Stokes V: noise, in the central 32 degrees
        return float(np.nanstd(fits.getdata(path)[0, 0, 192:320, 192:320]))

    assert rms(deep) < 0.6 * np.median([rms(p) for p in ten])  # 6x the data: ~1/sqrt(6) the noise


def test_result_names_what_was_written():
    unit = processed_unit()
    done = load_json(unit.work_dir / ".done" / "science-images.json")
    assert sorted(done["result"]["images"]) == sorted(r.suffix for r in SCIENCE_RECIPES)
    assert done["result"]["tool_seconds"]["wsclean"] > 0


def test_a_recipe_changed_for_the_installed_wsclean_is_in_the_result_and_on_the_qa_page():
    """With this machine's WSClean 3.1, the five multi-scale recipes run single-scale: the step's result says
    so per recipe, and the unit's archived QA page has a line for each."""
    unit = processed_unit()
    version = wsclean.wsclean_version()
    expected = [f"{r.suffix}: {change}" for r in SCIENCE_RECIPES for change in adapt_to_version(r.options, version)[1]]
    if version.startswith("3.1"):
        assert len(expected) == 5 and all("wsclean 3.1.0: -multiscale dropped, single-scale clean" in c
                                          for c in expected)
    done = load_json(unit.work_dir / ".done" / "science-images.json")
    assert done["result"]["recipe_changes"] == expected
    page = (unit.archive / QA_PAGE).read_text()
    shown = re.findall(r"<li class='recipe-change'>(.*?)</li>", page)  # snapshots: not multi-scale, unchanged
    assert shown == [html.escape(c) for c in expected]


def test_unknown_recipe_is_refused(tmp_path):
    with pytest.raises(InputError, match="unknown science recipe"):
        science_images(tmp_path / "x.ms", tmp_path, SUBBAND, 64, 1.0, recipes=["I-Deep-Nonsense"])
