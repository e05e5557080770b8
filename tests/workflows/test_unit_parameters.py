"""Every field of a unit's parameters (``pipeline.UnitParameters``) can be set from the templates a user
submits (subband-pipeline, subband-hours, subband-dispatch) and reaches the Phase 2 step that reads it;
the templates' descriptions, enums and defaults are the models' own."""
import yaml
import pytest
from chart_tools import args_of, flags, templates

from orca_steps import discover, plan_unit, prepare_ms
from orca_steps.pipeline import MODES, PHASE2, UnitParameters, switch_names
from orca_steps.process_subband import _module
from orca_workflows.templates import manifests
from orca_workflows.templates_common import field_spec

DOCS = manifests()
FIELDS = list(UnitParameters.model_fields)
# Fields a run does not give under their own name: the pipeline computes them from what it is given.
PLANNED_BY_PIPELINE = {"ms_paths": "ms_files", "work_dir": "nvme_work_dir"}
PLANNED_BY_NIGHT = {"ms_paths": "hour_specs", "work_dir": None,   # <site nvme_root>/<lst>/<date>/<run_label>/<sb>
                    "lst_label": "lst_start", "subband": "subband"}


def wf(name: str) -> str:
    return f"{{{{workflow.parameters.{name}}}}}"


def phase2_receives(field: str) -> None:
    """subband-process hands ``field`` from its input to the preflight pod, which records it for every step."""
    t = templates(DOCS["subband-process"])
    outer = {p["name"]: p["value"] for p in t["process-subband"]["steps"][0][0]["arguments"]["parameters"]}
    assert outer[field] == f"{{{{inputs.parameters.{field}}}}}", field
    preflight_step = t["phase2"]["steps"][0][0]
    given = {p["name"]: p["value"] for p in preflight_step["arguments"]["parameters"]}
    assert given[field] == f"{{{{inputs.parameters.{field}}}}}", field
    assert flags(t["preflight"]["container"])[field] == f"{{{{inputs.parameters.{field}}}}}", field


def pipeline_hands_on(field: str) -> None:
    """subband-pipeline's process task passes the workflow parameter of the same name to Phase 2."""
    hour = templates(DOCS["subband-pipeline"])["hour"]
    process = next(t for t in hour["dag"]["tasks"] if t["name"] == "process")
    given = {p["name"]: p["value"] for p in process["arguments"]["parameters"]}
    assert given[field] == wf(field) or field in PLANNED_BY_PIPELINE or field in ("lst_label", "subband",
                                                                                   "run_label", "obs_date"), field
    phase2_receives(field)


def test_every_unit_parameter_can_be_set_from_subband_pipeline():
    args = args_of(DOCS["subband-pipeline"])
    for field in FIELDS:
        assert PLANNED_BY_PIPELINE.get(field, field) in args, field
        pipeline_hands_on(field)


@pytest.mark.parametrize("night", ["subband-hours", "subband-dispatch"])
def test_every_unit_parameter_can_be_set_from_a_night(night):
    args = args_of(DOCS[night])
    child = next(t for t in templates(DOCS[night]).values() if "resource" in t and
                 t["resource"]["action"] == "create")
    given = {p["name"]: p["value"] for p in yaml.safe_load(child["resource"]["manifest"])["spec"]["arguments"][
        "parameters"]}
    for field in FIELDS:
        if field in PLANNED_BY_NIGHT:
            name = PLANNED_BY_NIGHT[field]
            assert name is None or name in args, field
            continue
        assert field in args, f"{night} lacks {field}"
        if field != "obs_date":  # discover resolves it (previous-night) and hands each hour its own
            assert given[field] == wf(field), f"{night} does not hand {field} to its hours"
        pipeline_hands_on(field)


def test_every_unit_parameter_reaches_a_step_that_reads_it():
    """A field reaches a step when a step's Options has it, an input names it, or a switch or mode is it;
    the provenance step records every field, so it does not count."""
    read = set(switch_names(PHASE2)) | set(MODES)
    for step in PHASE2:
        if step.name != "provenance":  # it records every parameter: proof of nothing
            read |= set(_module(step.name).Options.model_fields)
        read |= {src for src in step.inputs.values() if "." not in src}
    only_recorded = [f for f in FIELDS if f not in read]
    assert only_recorded == ["bp_table", "xy_table"]  # Phase 1's tables: Phase 2 records them, and says so
    assert all("provenance" in UnitParameters.model_fields[f].description for f in only_recorded)


def test_descriptions_enums_and_defaults_are_the_models():
    night = args_of(DOCS["subband-hours"])
    pipeline = args_of(DOCS["subband-pipeline"])
    process = args_of(DOCS["subband-process"])
    for field in ("strategy", "overwrite", "catalog", "beam", "skip_science", "targets"):
        spec = field_spec(UnitParameters, field)
        for args in (night, pipeline, process):
            assert args[field]["description"] == spec.description
            assert args[field].get("enum") == (list(spec.enum) if spec.enum else None)
            assert args[field]["value"] == spec.default
    assert process["overwrite"]["enum"] == ["", "true", "false"]  # empty: the site's archive_overwrite
    assert "labels transient-search candidates" in process["catalog"]["description"]
    assert night["subband"]["description"] == field_spec(discover.Options, "subbands").description
    assert pipeline["obs_date"]["description"] == field_spec(plan_unit.Options, "obs_date").description
    assert "previous-night" in pipeline["obs_date"]["description"]
    assert pipeline["peel_sky"]["description"] == field_spec(prepare_ms.Options, "peel_sky").description
