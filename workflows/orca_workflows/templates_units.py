"""The per-MS, per-hour templates: subband-prepare-ms, subband-process and subband-pipeline.

``subband-pipeline`` is orca's ``submit_subband_pipeline``: plan the hour (node, work dir, MS list) ->
one Phase 1 pod per MS (withParam, continueOn failed) -> collect the MS that survived (fails the hour
only below ``min_ms_fraction``) -> Phase 2. The hour holds its node's semaphore, so a node runs one
unit at a time whichever workflow started it. An exit hook on the hour writes the report into the
work dir and cleans NVMe when ``cleanup_nvme`` is set.
"""
from __future__ import annotations

from hera.workflows import DAG, Parameter, Task, WorkflowTemplate
from hera.workflows import models as m
from orca_steps import config

from .templates_common import (CONTINUE, PHASE1_DEADLINE_S, PHASE2_DEADLINE_S, from_inputs, from_workflow,
                               input_parameter, ms_dropped_metric, node_lock, orca_step, retry, unit_labels,
                               unit_outcome_metric, workflow_parameter, workflow_settings)

PREPARE = "subband-prepare-ms"
PROCESS = "subband-process"
PIPELINE = "subband-pipeline"

LABEL_PARAMS = ["subband", "lst_label", "obs_date", "run_label"]
PREPARE_PARAMS = ["src_ms", "nvme_work_dir", "bp_table", "xy_table", "peel_sky", "peel_rfi", "sky_model",
                  "rfi_model"]
PROCESS_FLAGS = ["ms_paths", "work_dir", "subband", "lst_label", "obs_date", "run_label", "hot_baselines",
                 "skip_cleanup", "cleanup_nvme", "targets", "catalog", "clean_snapshots", "clean_reduced_pixels",
                 "reduced_pixels", "skip_science", "compress_snapshots", "bp_table", "xy_table", "snapshot_only",
                 "archive_concat_ms", "cube", "cube_only", "cube_dewarp"]
PHASE2_OPTIONS = ["hot_baselines", "skip_cleanup", "cleanup_nvme", "targets", "catalog", "clean_snapshots",
                  "clean_reduced_pixels", "reduced_pixels", "skip_science", "compress_snapshots", "snapshot_only",
                  "archive_concat_ms", "cube", "cube_only", "cube_dewarp"]
PIPELINE_PARAMS = ["ms_files", "subband", "bp_table", "xy_table", "lst_label", "obs_date", "run_label", "peel_sky",
                   "peel_rfi", "sky_model", "rfi_model", *PHASE2_OPTIONS, "nvme_work_dir", "queue_override",
                   "min_ms_fraction", "sun_max_elevation_deg"]


def prepare_ms_template():
    """Phase 1 for one MS in one pod, pinned to the node whose NVMe holds the work dir."""
    return orca_step(
        "prepare-ms", "prepare-ms",
        {**from_inputs(*PREPARE_PARAMS), "subband": "{{inputs.parameters.subband}}"},
        inputs=[*PREPARE_PARAMS, "node", *LABEL_PARAMS], outputs=["ms_path"], on_node=True, kind="prepare-ms",
        deadline=PHASE1_DEADLINE_S, retry=retry(2))


def process_subband_template():
    """Phase 2 for one subband-hour in one pod; resumable, so a retry (after a lost or evicted pod) continues."""
    return orca_step(
        "process-subband", "process-subband", from_inputs(*PROCESS_FLAGS),
        inputs=[*PROCESS_FLAGS, "node"], outputs=["archive_path"], on_node=True, kind="process-subband",
        deadline=PHASE2_DEADLINE_S, retry=retry(1, backoff="1m"))


def standalone(name: str, template, params: list[str], description: str) -> WorkflowTemplate:
    """A WorkflowTemplate whose entrypoint is ``template``: submittable alone, and a templateRef target."""
    return WorkflowTemplate(name=name, entrypoint=template.name,
                            annotations={"workflows.argoproj.io/description": description},
                            arguments=[workflow_parameter(p) for p in params], templates=[template],
                            **workflow_settings())


def subband_prepare_ms() -> WorkflowTemplate:
    return standalone(PREPARE, prepare_ms_template(), [*PREPARE_PARAMS, "node", *LABEL_PARAMS],
                      "Phase 1 for one MS: stage refs, copy to NVMe, flag antennas, apply calibration, peel.")


def subband_process() -> WorkflowTemplate:
    return standalone(PROCESS, process_subband_template(), [*PROCESS_FLAGS, "node"],
                      "Phase 2 for one subband-hour: concat ... imaging, science, archive (8 h deadline).")


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
            arguments=[workflow_parameter(p) for p in PIPELINE_PARAMS], **workflow_settings()) as wt:
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
        with DAG(name="hour", inputs=[input_parameter(n) for n in unit_inputs],
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
