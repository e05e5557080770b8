"""Phase 2 has one shape (``pipeline.PHASE2``): the Argo steps of ``subband-process`` (the chart's rendered
YAML, their ``when`` substituted and evaluated the way Argo does, by the local runner's govaluate) and the
one-process ``process-subband`` run the same steps in the same order for every combination of switches."""
import itertools
import json
from functools import lru_cache

import pytest
import yaml

from orca_steps import config, phase2_preflight, process_subband
from orca_steps.pipeline import MODES, PHASE2, UnitParameters, switch_names
from orca_steps.process_subband import StepRun
from orca_steps.products import PARTIAL_MARKER
from orca_workflows.demo import CHART_FILES
from orca_workflows.localrun import LocalRunner, govaluate
from orca_workflows.localrun.templating import substitute
from orca_workflows.render import FILES_DIR, site_configmaps
from orca_workflows.templates_units import PHASE2_PODS, PROCESS

# The booleans that decide which steps run: every switch that is a parameter, and the modes that imply
# switches (UnitParameters._modes).
SWITCHES = tuple(n for n in switch_names(PHASE2) if n in UnitParameters.model_fields) + MODES


def combinations():
    for values in itertools.product((False, True), repeat=len(SWITCHES)):
        combo = dict(zip(SWITCHES, values))
        if not (combo["snapshot_only"] and combo["cube_only"]):  # refused together (test below)
            yield combo


@lru_cache(maxsize=None)
def rendered_phase2() -> list[dict]:
    """The step groups of the rendered ``phase2`` template, as the chart ships them."""
    doc = yaml.safe_load((FILES_DIR / f"{PROCESS}.yaml").read_text())
    template = next(t for t in doc["spec"]["templates"] if t["name"] == "phase2")
    return template["steps"]


@pytest.fixture()
def unit(tmp_path):
    """Real files where preflight looks (it checks that they exist, not what they hold)."""
    work = tmp_path / "work"
    work.mkdir()
    for name in ("beam.h5", "vlssr.txt"):
        (tmp_path / name).write_text("x")
    return dict(ms_paths=[str(work / "a.ms")], work_dir=str(work), subband="73MHz", lst_label="14h",
                obs_date="2025-06-15", run_label="t", archive_root=str(tmp_path / "archive"),
                beam=str(tmp_path / "beam.h5"), vlssr_catalog=str(tmp_path / "vlssr.txt"))


def argo_order(params: UnitParameters) -> list[str]:
    """The steps Argo runs: preflight's real outputs substituted into each rendered step's ``when``."""
    result = phase2_preflight.run(phase2_preflight.Options(**params.model_dump()))
    scope = {f"steps.preflight.outputs.parameters.{k}": str(v).lower()
             for k, v in result.model_dump().items() if isinstance(v, bool)}
    order = []
    for group in rendered_phase2():
        assert len(group) == 1, "Phase 2's steps run one after another"
        step = group[0]
        if govaluate.evaluate_when(substitute(step.get("when", ""), scope, step["name"])):
            order.append(step["name"])
    return order


def one_process_order(params: UnitParameters) -> list[str]:
    """The steps ``process_subband`` runs, recorded instead of run (each step is tested on its own)."""
    order = []

    def record(step, _params, results):
        order.append(step.name)
        results[step.name] = {"archive_path": "/archive"}
        return StepRun(step=step.name, status="ran"), None

    process_subband.process_subband(params, execute=record)
    return order


def test_argo_steps_and_one_process_run_the_same_steps_for_every_switch_combination(unit):
    seen = set()
    for combo in combinations():
        params = UnitParameters(**unit, **combo)
        argo = argo_order(params)
        assert argo[0] == "preflight", combo
        assert argo[1:] == one_process_order(params), combo
        seen.add(tuple(argo))
    assert len(list(combinations())) == 2 ** len(SWITCHES) * 3 // 4
    assert len(seen) >= 10  # the switches do change what runs


def test_every_step_of_phase2_is_a_step_of_the_template_in_order():
    names = [group[0]["name"] for group in rendered_phase2()]
    assert names == ["preflight", *[s.name for s in PHASE2]]
    assert set(PHASE2_PODS) <= set(names)


def test_a_step_runs_only_when_the_steps_it_reads_from_ran(unit):
    for combo in combinations():
        params = UnitParameters(**unit, **combo)
        enabled = {s.name for s in PHASE2 if s.enabled(params)}
        for step in PHASE2:
            if step.name in enabled:
                assert set(step.producers) <= enabled, (step.name, combo)


def test_the_two_modes_are_refused_together(unit):
    with pytest.raises(ValueError, match="exclude each other"):
        UnitParameters(**unit, snapshot_only=True, cube_only=True)


def test_argo_phase2_failure_hook_writes_the_partial_archive_and_the_unit_stays_failed(tmp_path):
    """Run by the local runner from the chart's YAML: concat fails (its only MS is missing), so the
    exit hook's partial-archive pod archives what exists, marked partial, and the unit stays Failed."""
    roots = {"/fast": tmp_path / "fast", "/lustre": tmp_path / "lustre"}
    site = config.SiteConfig(beam_model="/lustre/refs/beam.h5")
    work = "/fast/pipeline/14h/2025-06-15/r1/73MHz"
    (tmp_path / work.lstrip("/")).mkdir(parents=True)
    (tmp_path / "lustre" / "refs").mkdir(parents=True)
    (tmp_path / "lustre" / "refs" / "beam.h5").write_text("preflight checks that it exists")
    configmaps = tmp_path / "configmaps.yaml"
    configmaps.write_text(yaml.safe_dump_all(site_configmaps(site), sort_keys=False))
    runner = LocalRunner([CHART_FILES / f"{PROCESS}.yaml", configmaps], tmp_path / "out", volume_roots=roots)
    wf = runner.submit(PROCESS, {"ms_paths": '["/fast/pipeline/missing.ms"]', "work_dir": work, "subband": "73MHz",
                                 "lst_label": "14h", "obs_date": "2025-06-15", "run_label": "r1",
                                 "skip_science": "true", "node": "lwacalim08"})
    runner.wait()
    assert wf.phase == "Failed"
    pods = {n.template: n for n in wf.nodes.values() if n.type == "Pod"}
    assert pods["preflight"].phase == "Succeeded" and pods["concat"].phase == "Failed"
    assert pods["partial-archive"].phase == "Succeeded"
    assert set(pods) == {"preflight", "concat", "partial-archive"}  # nothing after the failed step
    dest = tmp_path / "lustre" / "pipeline" / "images" / "14h" / "2025-06-15" / "r1" / "73MHz"
    marker = json.loads((dest / PARTIAL_MARKER).read_text())
    assert marker["failed_step"] == "concat" and "no valid input MS" in marker["error"]
    assert "PARTIAL ARCHIVE" in (dest / "QA" / "index.html").read_text()


def test_argo_failure_hook_does_nothing_when_phase2_succeeded():
    doc = yaml.safe_load((FILES_DIR / f"{PROCESS}.yaml").read_text())
    on_failure = next(t for t in doc["spec"]["templates"] if t["name"] == "on-failure")
    (step,), = on_failure["steps"]
    for status, runs in (("Succeeded", False), ("Failed", True), ("Error", True)):
        assert govaluate.evaluate_when(substitute(step["when"], {"inputs.parameters.status": status})) is runs
