"""The per-MS, per-hour templates: subband-prepare-ms, subband-process and subband-pipeline.

``subband-pipeline`` is orca's ``submit_subband_pipeline``: plan the hour (node, work dir, MS list) ->
one Phase 1 pod per MS (withParam, continueOn failed) -> collect the MS that survived (fails the hour
only below ``min_ms_fraction``) -> Phase 2. The hour holds its node's semaphore, so a node runs one
unit at a time whichever workflow started it. An exit hook on the hour writes the report into the
work dir and cleans NVMe when ``cleanup_nvme`` is set.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

from hera.workflows import DAG, Parameter, Step, Steps, Task, WorkflowTemplate
from hera.workflows import models as m
from orca_steps import collect_ms, config, plan_unit, prepare_ms
from orca_steps.pipeline import PHASE2, UnitParameters, switch_names

from .templates_common import (CONTINUE, OUTPUTS_DIR, PHASE1_DEADLINE_S, SMALL_DEADLINE_S, from_inputs,
                               from_workflow, input_parameter, ms_dropped_metric, node_lock, orca_step, retry,
                               unit_labels, unit_outcome_metric, workflow_parameter, workflow_settings)

PREPARE = "subband-prepare-ms"
PROCESS = "subband-process"
PIPELINE = "subband-pipeline"

LABEL_PARAMS = ["subband", "lst_label", "obs_date", "run_label"]
# Phase 1's options that a run may set (their descriptions and defaults: prepare_ms.Options).
PREPARE_PARAMS = ["src_ms", "nvme_work_dir", "bp_table", "xy_table", "peel_sky", "peel_rfi", "sky_model",
                  "rfi_model"]
# A unit's parameters (UnitParameters), every one an Argo parameter of subband-process.
UNIT_PARAMS = list(UnitParameters.model_fields)
# ...of which subband-pipeline fills these itself (plan-unit, collect-ms); a run sets the others.
PLANNED = {"ms_paths", "work_dir"}
PHASE2_OPTIONS = [n for n in UNIT_PARAMS if n not in PLANNED and n not in LABEL_PARAMS
                  and n not in PREPARE_PARAMS]
PIPELINE_PARAMS = ["ms_files", "subband", "bp_table", "xy_table", "lst_label", "obs_date", "run_label", "peel_sky",
                   "peel_rfi", "sky_model", "rfi_model", *PHASE2_OPTIONS, "nvme_work_dir", "queue_override",
                   "min_ms_fraction", "sun_max_elevation_deg"]
# Where each template's parameters are described: the steps that read them, first reader first.
# prepare-ms's subband only names the cal-table window; as a template parameter it is the unit's label.
PREPARE_MODELS = ((UnitParameters, "subband", "subband"), prepare_ms.Options, UnitParameters)
PROCESS_MODELS = (UnitParameters,)
PIPELINE_MODELS = (plan_unit.Options, collect_ms.Options, prepare_ms.Options, UnitParameters)


def prepare_ms_template():
    """Phase 1 for one MS in one pod, pinned to the node whose NVMe holds the work dir."""
    return orca_step(
        "prepare-ms", "prepare-ms",
        {**from_inputs(*PREPARE_PARAMS), "subband": "{{inputs.parameters.subband}}"},
        inputs=[*PREPARE_PARAMS, "node", *LABEL_PARAMS], models=PREPARE_MODELS, outputs=["ms_path"], on_node=True,
        kind="prepare-ms", deadline=PHASE1_DEADLINE_S, retry=retry(2))


# --- Phase 2: one pod per step of pipeline.PHASE2 ------------------------------------------------------
@dataclass(frozen=True)
class Pod:
    """What a Phase 2 step's pod asks for: resources (a key of resource_table), deadline, retries."""
    kind: str = "small"
    deadline: int = SMALL_DEADLINE_S
    retries: int = 1


WSCLEAN = "wsclean"
DATA = "phase2-data"
HOUR = 3600
# Steps not named here are bookkeeping: small pods, 30 minutes.
PHASE2_PODS = {
    "concat": Pod(DATA, 2 * HOUR), "fix-field": Pod(DATA, HOUR), "rephase": Pod(DATA, HOUR),
    "aoflagger": Pod(DATA, 2 * HOUR), "pilot-snapshots": Pod(WSCLEAN, 2 * HOUR), "snapshot-qa": Pod(DATA, HOUR),
    "hot-baselines": Pod(DATA, HOUR), "science-images": Pod(WSCLEAN, 6 * HOUR), "pb-correct": Pod(DATA, HOUR),
    "dewarp": Pod(DATA, 2 * HOUR), "photometry": Pod(DATA, HOUR), "transient-search": Pod(DATA, HOUR),
    "flux-check": Pod(DATA, HOUR), "cube": Pod(WSCLEAN, 6 * HOUR), "clean-snapshots": Pod(WSCLEAN, 4 * HOUR),
    "movies": Pod(DATA, HOUR), "compress": Pod(DATA, HOUR), "archive": Pod(DATA, 2 * HOUR),
}
UNIT_FILE = "{{steps.preflight.outputs.parameters.unit_file}}"


def step_when(step) -> str | None:
    """A step's switches as Argo ``when``, testing the values preflight computed (its outputs)."""
    tests = [f"{{{{steps.preflight.outputs.parameters.{step.switch}}}}} == true"] if step.switch else []
    tests += [f"{{{{steps.preflight.outputs.parameters.{step.unless}}}}} == false"] if step.unless else []
    return " && ".join(tests) or None


JSON_OUTPUTS = f"{OUTPUTS_DIR}/json"  # phase2-step writes each result field there as JSON


def consumed_fields(producer: str) -> list[str]:
    """The fields of a step's result that later steps' inputs name: its output parameters."""
    sources = [src.split(".", 1) for s in PHASE2 for src in s.inputs.values() if "." in src]
    return list(dict.fromkeys(f for p, f in sources if p == producer))


def step_results(step) -> str:
    """The ``results`` argument: a JSON object, producer -> {field: value}, of the fields this step's inputs
    name (each value an output parameter holding JSON)."""
    fields: dict[str, list[str]] = {}
    for src in step.inputs.values():
        if "." in src:
            producer, name = src.split(".", 1)
            fields.setdefault(producer, []).append(name)
    def value(producer: str, name: str) -> str:
        return f"{json.dumps(name)}: {{{{steps.{producer}.outputs.parameters.{name}}}}}"

    return "{" + ", ".join(f"{json.dumps(p)}: {{" + ", ".join(value(p, f) for f in names) + "}"
                           for p, names in fields.items()) + "}"


def phase2_step_template(step):
    pod = PHASE2_PODS.get(step.name, Pod())
    inputs = ["unit_file", "results", "node", *LABEL_PARAMS]
    t = orca_step(step.name, "phase2-step",
                  {"step": step.name, "unit_file": "{{inputs.parameters.unit_file}}",
                   "results": "{{inputs.parameters.results}}", "json_outputs": JSON_OUTPUTS},
                  inputs=inputs, models=PROCESS_MODELS, outputs=["archive_path"] if step.name == "archive" else [],
                  on_node=True, kind=pod.kind, deadline=pod.deadline, retry=retry(pod.retries, backoff="1m"))
    consumed = [Parameter(name=f, value_from=m.ValueFrom(path=f"{JSON_OUTPUTS}/{f}")) for f in consumed_fields(step.name)]
    t.outputs = [*consumed, *(t.outputs or [])] or None
    return t


def process_subband_templates():
    """Phase 2 as Argo steps, generated from pipeline.PHASE2: preflight, then one pod per step (its switch a
    ``when`` on preflight's outputs), all pinned to the unit's node; a failure hook writes the partial archive.

    ``process-subband`` runs ``phase2`` and, when it did not succeed, ``on-failure`` (an exit hook: the
    hook's phase never changes the unit's, which stays Failed)."""
    unit_args = from_inputs(*UNIT_PARAMS, "node")
    labels = from_inputs(*LABEL_PARAMS)
    preflight = orca_step(
        "preflight", "phase2-preflight", from_inputs(*UNIT_PARAMS), inputs=[*UNIT_PARAMS, "node"],
        models=PROCESS_MODELS, outputs=["unit_file", *switch_names(PHASE2)], on_node=True,
        retry=retry(2, backoff="10s"))
    partial = orca_step("partial-archive", "phase2-partial", from_inputs("work_dir"),
                        inputs=["work_dir", "node", *LABEL_PARAMS], models=PROCESS_MODELS,
                        on_node=True, kind=DATA, deadline=2 * HOUR, retry=retry(1, backoff="1m"))
    steps = [(step, phase2_step_template(step)) for step in PHASE2]
    with Steps(name="on-failure", inputs=[input_parameter(n, PROCESS_MODELS)
                                          for n in ("status", "work_dir", "node", *LABEL_PARAMS)]) as on_failure:
        Step(name="partial-archive", template=partial, when="'{{inputs.parameters.status}}' != 'Succeeded'",
             arguments=from_inputs("work_dir", "node", *LABEL_PARAMS))
    with Steps(name="phase2", inputs=[input_parameter(n, PROCESS_MODELS) for n in (*UNIT_PARAMS, "node")],
               outputs=[Parameter(name="archive_path", value_from=m.ValueFrom(
                   parameter="{{steps.archive.outputs.parameters.archive_path}}"))]) as phase2:
        Step(name="preflight", template=preflight, arguments=unit_args)
        for step, template in steps:
            Step(name=step.name, template=template, when=step_when(step),
                 arguments={"unit_file": UNIT_FILE, "results": step_results(step), "node": "{{inputs.parameters.node}}",
                            **labels})
    with Steps(name="process-subband", inputs=[input_parameter(n, PROCESS_MODELS) for n in (*UNIT_PARAMS, "node")],
               outputs=[Parameter(name="archive_path", value_from=m.ValueFrom(
                   parameter="{{steps.phase2.outputs.parameters.archive_path}}"))]) as process:
        Step(name="phase2", template=phase2, arguments=unit_args,
             hooks={"exit": m.LifecycleHook(template="on-failure", arguments=m.Arguments(parameters=[
                 m.Parameter(name=k, value=v) for k, v in {
                     "status": "{{steps.phase2.status}}", "work_dir": "{{inputs.parameters.work_dir}}",
                     "node": "{{inputs.parameters.node}}", **labels}.items()]))})
    return process, on_failure


def standalone(name: str, templates: list, params: list[str], models: tuple, description: str) -> WorkflowTemplate:
    """A WorkflowTemplate whose entrypoint is ``templates[0]``: submittable alone, and a templateRef target."""
    wt = WorkflowTemplate(name=name, entrypoint=templates[0].name,
                          annotations={"workflows.argoproj.io/description": description},
                          arguments=[workflow_parameter(p, models) for p in params], **workflow_settings())
    wt.templates = list(templates)
    return wt


def subband_prepare_ms() -> WorkflowTemplate:
    return standalone(PREPARE, [prepare_ms_template()], [*PREPARE_PARAMS, "node", *LABEL_PARAMS], PREPARE_MODELS,
                      "Phase 1 for one MS: stage refs, copy to NVMe, flag antennas, apply calibration, peel.")


def subband_process() -> WorkflowTemplate:
    with WorkflowTemplate(name=PROCESS, entrypoint="process-subband",
                          annotations={"workflows.argoproj.io/description": (
                              "Phase 2 for one subband-hour, one pod per step on the unit's node: preflight, "
                              "concat ... imaging, science, archive; a failure leaves a partial archive.")},
                          arguments=[workflow_parameter(p, PROCESS_MODELS) for p in (*UNIT_PARAMS, "node")],
                          **workflow_settings()) as wt:
        process_subband_templates()
    return wt


def subband_pipeline() -> WorkflowTemplate:
    """orca's submit_subband_pipeline: Phase 1 fan-out, fan-in, Phase 2, report; one node, one lock."""
    site = config.site()
    unit_inputs = ["node", "work_dir", "ms_files", "ms_list_file", "obs_date"]
    labels = {"subband": "{{workflow.parameters.subband}}", "lst_label": "{{workflow.parameters.lst_label}}",
              "run_label": "{{workflow.parameters.run_label}}"}
    with WorkflowTemplate(
            name=PIPELINE, entrypoint="main", annotations={"workflows.argoproj.io/description": (
                "One subband-hour (orca's submit_subband_pipeline): discover or take the MS list, Phase 1 per MS, "
                "Phase 2 on the MS that survived; a failed MS never sinks the hour.")},
            arguments=[workflow_parameter(p, PIPELINE_MODELS) for p in PIPELINE_PARAMS], **workflow_settings()) as wt:
        plan = orca_step(
            "plan-unit", "plan-unit",
            from_workflow("subband", "lst_label", "obs_date", "run_label", "ms_files", "queue_override",
                          "nvme_work_dir", "sun_max_elevation_deg"),
            inputs=[], outputs=["node", "work_dir", "ms_files", "ms_list_file", "n_ms", "obs_date"],
            retry=retry(2, backoff="10s"), labels=False)
        plan.labels = unit_labels("workflow")
        collect = orca_step(
            "collect-ms", "collect-ms",
            {"ms_list_file": "{{inputs.parameters.ms_list_file}}",
             "min_ms_fraction": "{{workflow.parameters.min_ms_fraction}}",
             "work_dir": "{{inputs.parameters.work_dir}}"},
            inputs=["ms_list_file", "work_dir", "node", *LABEL_PARAMS], outputs=["ms_list_file", "n_dropped"],
            on_node=True, metrics=[ms_dropped_metric()])
        orca_step(  # the hour's exit hook (below) calls it by name
            "unit-report", "unit-report",
            {"work_dir": "{{inputs.parameters.work_dir}}", "status": "{{inputs.parameters.status}}",
             "workflow": "{{workflow.name}}", **from_inputs(*LABEL_PARAMS),
             "ms_list_file": "{{inputs.parameters.ms_list_file}}",
             "cleanup_nvme": "{{workflow.parameters.cleanup_nvme}}"},
            inputs=["status", "work_dir", "ms_list_file", "node", *LABEL_PARAMS], on_node=True,
            retry=retry(2, backoff="10s"), metrics=[unit_outcome_metric()])

        hour_args = {n: f"{{{{inputs.parameters.{n}}}}}" for n in unit_inputs}
        unit_label_args = {**labels, "obs_date": "{{inputs.parameters.obs_date}}"}
        with DAG(name="hour", inputs=[input_parameter(n, PIPELINE_MODELS) for n in unit_inputs],
                 parallelism=site.phase1_parallelism, synchronization=node_lock(),
                 outputs=[Parameter(name="archive_path", global_name="archive_path", value_from=m.ValueFrom(
                     parameter="{{tasks.process.outputs.parameters.archive_path}}"))]) as hour:
            Task(name="prepare", template_ref=m.TemplateRef(name=PREPARE, template="prepare-ms"),
                 with_param="{{inputs.parameters.ms_files}}", continue_on=CONTINUE,
                 arguments={"src_ms": "{{item}}", "nvme_work_dir": hour_args["work_dir"],
                            **from_workflow("bp_table", "xy_table", "peel_sky", "peel_rfi", "sky_model", "rfi_model"),
                            "node": hour_args["node"], **unit_label_args})
            Task(name="collect", template=collect, dependencies=["prepare"],
                 arguments={"ms_list_file": hour_args["ms_list_file"], "work_dir": hour_args["work_dir"],
                            "node": hour_args["node"], **unit_label_args})
            Task(name="process", template_ref=m.TemplateRef(name=PROCESS, template="process-subband"),
                 dependencies=["collect"],
                 arguments={"ms_paths": "@{{tasks.collect.outputs.parameters.ms_list_file}}",
                            "work_dir": hour_args["work_dir"], **unit_label_args,
                            **from_workflow(*PHASE2_OPTIONS, "bp_table", "xy_table"), "node": hour_args["node"]})

        with DAG(name="main"):
            planned = {n: f"{{{{tasks.plan.outputs.parameters.{n}}}}}" for n in unit_inputs}
            Task(name="plan", template=plan)
            Task(name="hour", template=hour, dependencies=["plan"], arguments=planned,
                 hooks={"exit": m.LifecycleHook(template="unit-report", arguments=m.Arguments(parameters=[
                     m.Parameter(name=k, value=v) for k, v in {
                         "status": "{{tasks.hour.status}}", "work_dir": planned["work_dir"],
                         "ms_list_file": planned["ms_list_file"], "node": planned["node"],
                         **labels, "obs_date": planned["obs_date"]}.items()]))})
    return wt
