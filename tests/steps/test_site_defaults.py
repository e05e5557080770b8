"""A unit's parameters take the site's data (AOFlagger strategy, transient catalogue, archive overwrite, beam,
VLSSr catalogue) when a run leaves them empty, and the run's own values otherwise; the step that uses each
receives it."""
import json

import pytest

from orca_steps.pipeline import PHASE2, UnitParameters
from orca_steps.process_subband import step_options

UNIT = dict(ms_paths=[], work_dir="/fast/w", subband="73MHz", lst_label="14h", obs_date="2025-06-15", run_label="r")
SITE = {"aoflagger_strategy": "/lustre/ref/LWA_opt_GH1.lua", "transient_catalog": "/lustre/ref/labels.csv",
        "archive_overwrite": True, "beam_model": "/lustre/ref/beam.h5", "vlssr_catalog": "/lustre/ref/vlssr.txt"}
STEP = {s.name: s for s in PHASE2}
RESULTS = {"concat": {"concat_ms": "/fast/w/73MHz_concat.ms"}}


@pytest.fixture()
def site(tmp_path, monkeypatch):
    path = tmp_path / "site.json"
    path.write_text(json.dumps(SITE))
    monkeypatch.setenv("ORCA_CONFIG", str(path))


def test_empty_parameters_take_the_site_data_and_reach_their_steps(site):
    params = UnitParameters(**UNIT, strategy="", overwrite="", catalog="", beam="", vlssr_catalog="")
    assert step_options(STEP["aoflagger"], params, RESULTS).strategy == SITE["aoflagger_strategy"]
    assert step_options(STEP["archive"], params, RESULTS).overwrite is True
    assert params.catalog == SITE["transient_catalog"] and params.beam == SITE["beam_model"]
    assert params.vlssr_catalog == SITE["vlssr_catalog"]


def test_a_run_overrides_the_site(site):
    params = UnitParameters(**UNIT, strategy="/lustre/mine.lua", overwrite="false", catalog="/lustre/c.csv")
    assert step_options(STEP["aoflagger"], params, RESULTS).strategy == "/lustre/mine.lua"
    assert step_options(STEP["archive"], params, RESULTS).overwrite is False
    assert params.catalog == "/lustre/c.csv"


def test_without_site_data_aoflagger_uses_its_generic_strategy_and_archives_are_not_replaced(tmp_path, monkeypatch):
    monkeypatch.setenv("ORCA_CONFIG", str(tmp_path / "none.json"))
    (tmp_path / "none.json").write_text("{}")
    params = UnitParameters(**UNIT)
    assert step_options(STEP["aoflagger"], params, RESULTS).strategy is None
    assert step_options(STEP["archive"], params, RESULTS).overwrite is False and params.catalog is None
