"""A night in which one hour fails, on the chart's rendered subband-hours and subband-dispatch, run by the
local runner: every hour runs, and the night ends Failed with the failed unit in its status.message.

Orchestration only: discover, chain-hours, the queue steps and run-report are the real ``orca-step`` pods;
the child ``subband-pipeline`` is a one-line stand-in that fails for one (subband, hour), so the test
takes seconds. How Argo words the message (file:line in argoproj/argo-workflows v4.1.2):
operator.go:541-566 (the workflow's message: its root's, or a failed exit handler's when the root
succeeded), operator.go:1864-1868 (a failed pod: "main: Error (exit code N): <termination message>").
"""
from __future__ import annotations

from datetime import timedelta

import pytest
import yaml
from test_local_runner import write

from orca_steps import config
from orca_steps.discover import lst_interval
from orca_workflows.demo import CHART_FILES
from orca_workflows.localrun import LocalRunner
from orca_workflows.render import site_configmaps

DATE = "2025-06-15"
UNITS = [("73MHz", 14), ("73MHz", 15), ("78MHz", 14), ("78MHz", 15)]
FAILING = ("78MHz", "15h")
# The child the night creates, reduced to what the night sees of it: its phase.
STAND_IN_PIPELINE = f"""
    apiVersion: argoproj.io/v1alpha1
    kind: WorkflowTemplate
    metadata: {{name: subband-pipeline}}
    spec:
      entrypoint: main
      arguments: {{parameters: [{{name: subband}}, {{name: lst_label}}]}}
      templates:
      - name: main
        container:
          image: alpine
          command: [sh, -c, 'test "$0 $1" != "{FAILING[0]} {FAILING[1]}"']
          args: ["{{{{workflow.parameters.subband}}}}", "{{{{workflow.parameters.lst_label}}}}"]
    """


@pytest.fixture
def night(tmp_path):
    """Local /lustre and /fast, one empty MS per unit under the input tree, the site's ConfigMaps."""
    lustre, fast = tmp_path / "lustre", tmp_path / "fast"
    # one dispatch worker: each of its ten claim slots per round is an orca-step process
    site = config.SiteConfig(**{**config.site().model_dump(), "input_root": "/lustre/input",
                                "dynamic_pool": config.site().dynamic_pool[:1]})
    for sb, hour in UNITS:
        start, _ = lst_interval(DATE, hour)
        t = start + timedelta(minutes=5)
        (lustre / "input" / sb / f"{t:%Y-%m-%d}" / f"{t:%H}" / f"{t:%Y%m%d_%H%M%S}_{sb}.ms").mkdir(parents=True)
    fast.mkdir()
    cms = tmp_path / "configmaps.yaml"
    cms.write_text(yaml.safe_dump_all(site_configmaps(site), sort_keys=False))
    files = [CHART_FILES / "subband-hours.yaml", CHART_FILES / "subband-dispatch.yaml", cms,
             write(tmp_path, STAND_IN_PIPELINE, "pipeline.yaml")]
    return files, {"/lustre": lustre, "/fast": fast}


@pytest.mark.parametrize("target, extra", [("subband-hours", {}),
                                           ("subband-dispatch", {"dynamic_run_label": "msg-test"})])
def test_a_night_with_a_failed_hour_ends_failed_naming_it(tmp_path, night, target, extra):
    files, roots = night
    runner = LocalRunner(files, tmp_path / "out", volume_roots=roots)
    wf = runner.submit(target, {"obs_date": DATE, "lst_start": "14", "lst_end": "16", "subband": "73MHz,78MHz",
                                "run_label": "msg-test", "bp_table": "/lustre/b", "xy_table": "/lustre/x",
                                "sun_max_elevation_deg": "90", **extra})
    runner.wait()
    children = [w for w in runner.workflows.values() if w.parent is wf]
    assert len(children) == len(UNITS)   # every hour ran, the failed one too
    assert sorted(w.phase for w in children) == ["Failed", "Succeeded", "Succeeded", "Succeeded"]
    assert wf.nodes[next(iter(wf.nodes))].phase == "Succeeded"   # the root: only the exit handler fails
    assert wf.phase == "Failed"
    assert wf.message == "main: Error (exit code 2): failed units: 78MHz 15h"
