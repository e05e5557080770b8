"""Night-level templates: subband-hours (static chains), subband-dispatch (dynamic pool) and the nightly cron.

Each (subband, hour) runs as its own child Workflow of ``subband-pipeline`` (a resource template that
creates it and waits for it), so every workflow object stays small. Children carry the label
``orca/parent=<workflow name>``; when a night does not succeed (e.g. it is stopped), its exit handler
deletes the children still running, because stopping a parent does not stop them.
"""
from __future__ import annotations

import yaml
from hera.workflows import DAG, Container, CronWorkflow, Resource, Step, Steps, Task, WorkflowTemplate
from hera.workflows import models as m

from .templates_common import (from_inputs, from_workflow, input_parameter, orca_step, retry, workflow_parameter,
                               workflow_settings)
from .templates_units import PHASE2_OPTIONS, PIPELINE

HOURS = "subband-hours"
DISPATCH = "subband-dispatch"
NIGHTLY = "orca-nightly"
PARENT_LABEL = "orca/parent"
NIGHT_PARAMS = ["obs_date", "lst_start", "lst_end", "subband", "hour_specs", "run_label", "bp_table", "xy_table",
                "peel_sky", "peel_rfi", "sky_model", "rfi_model", *PHASE2_OPTIONS, "queue_override",
                "min_ms_fraction", "sun_max_elevation_deg"]
# What a child subband-pipeline takes from the night, unchanged.
PASSED_TO_CHILD = ["bp_table", "xy_table", "run_label", "peel_sky", "peel_rfi", "sky_model", "rfi_model",
                   *PHASE2_OPTIONS, "min_ms_fraction", "sun_max_elevation_deg"]


def night_arguments(names: list[str]) -> list:
    return [workflow_parameter(n, night=True) for n in names]


def child_manifest() -> str:
    """A subband-pipeline Workflow for one hour on the given node, labelled with its parent so it can be stopped."""
    params = {"subband": "{{inputs.parameters.subband}}", "lst_label": "{{inputs.parameters.lst_label}}",
              "obs_date": "{{inputs.parameters.obs_date}}", "ms_files": "@{{inputs.parameters.ms_list_file}}",
              "queue_override": "{{inputs.parameters.node}}", **from_workflow(*PASSED_TO_CHILD)}
    manifest = {
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
        "metadata": {"generateName": "{{workflow.name}}-", "labels": {
            PARENT_LABEL: "{{workflow.name}}", "orca/subband": "{{inputs.parameters.subband}}",
            "orca/obs-date": "{{inputs.parameters.obs_date}}", "orca/lst": "{{inputs.parameters.lst_label}}",
            "orca/run-label": "{{workflow.parameters.run_label}}"}},
        "spec": {"workflowTemplateRef": {"name": PIPELINE},
                 "arguments": {"parameters": [{"name": k, "value": v} for k, v in params.items()]}},
    }
    return yaml.safe_dump(manifest, sort_keys=False)


def run_child(name: str) -> Resource:
    """Create one child subband-pipeline and wait for it: both conditions, or a failed child hangs the parent."""
    return Resource(name=name, action="create", set_owner_reference=True, manifest=child_manifest(),
                    success_condition="status.phase == Succeeded", failure_condition="status.phase in (Failed, Error)",
                    inputs=[input_parameter(n) for n in ("subband", "lst_label", "obs_date", "ms_list_file", "node")])


def discover_template(extra: dict[str, str]) -> Container:
    return orca_step(
        "discover", "discover",
        {**from_workflow("obs_date", "lst_start", "lst_end"), "subbands": "{{workflow.parameters.subband}}",
         **from_workflow("hour_specs", "run_label", "queue_override", "sun_max_elevation_deg"), **extra},
        inputs=[], outputs=["obs_date", "units", "chains", "pool", "queue_file", "n_units"],
        retry=retry(2, backoff="10s"), labels=False)


def exit_handler(extra: dict[str, str]) -> list:
    """Report the night (failed nodes, queue) and, unless it succeeded, delete children still running."""
    report = orca_step("run-report", "run-report",
                       {"workflow": "{{workflow.name}}", "run_label": "{{workflow.parameters.run_label}}",
                        "status": "{{workflow.status}}", "failures": "{{workflow.failures}}", **extra},
                       inputs=[], retry=retry(2, backoff="10s"), labels=False)
    stop = Resource(name="stop-children", action="delete", flags=[
        "workflows", "--selector", f"{PARENT_LABEL}={{{{workflow.name}}}},workflows.argoproj.io/completed!=true"])
    with Steps(name="exit-handler") as handler:
        Step(name="report", template=report, continue_on=m.ContinueOn(failed=True))
        Step(name="stop-children", template=stop, when="{{workflow.status}} != Succeeded")
    return [handler, report, stop]


def subband_hours() -> WorkflowTemplate:
    """orca's submit_subband_pipeline_chained: per subband, its hours one after another; subbands in parallel."""
    with WorkflowTemplate(
            name=HOURS, entrypoint="main", on_exit="exit-handler",
            annotations={"workflows.argoproj.io/description": (
                "Static mode: each subband's hours run one after another on its node (child workflows of "
                "subband-pipeline); subbands run in parallel; a failed hour is reported and its chain goes on.")},
            arguments=night_arguments(NIGHT_PARAMS), **workflow_settings()) as wt:
        discover = discover_template({})
        hour = run_child("run-hour")
        with Steps(name="chain", parallelism=1,
                   inputs=[input_parameter(n) for n in ("subband", "node", "hours")]) as chain:
            Step(name="hour", template=hour, with_param="{{inputs.parameters.hours}}",
                 continue_on=m.ContinueOn(failed=True),
                 arguments={"subband": "{{inputs.parameters.subband}}", "lst_label": "{{item.lst_label}}",
                            "obs_date": "{{item.obs_date}}", "ms_list_file": "{{item.ms_list_file}}",
                            "node": "{{inputs.parameters.node}}"})
        with DAG(name="main"):
            Task(name="discover", template=discover)
            Task(name="chains", template=chain, dependencies=["discover"],
                 with_param="{{tasks.discover.outputs.parameters.chains}}",
                 arguments={"subband": "{{item.subband}}", "node": "{{item.node}}", "hours": "{{item.hours}}"})
        exit_handler({})
    return wt


def subband_dispatch() -> WorkflowTemplate:
    """Dynamic mode: one worker per pool node takes (subband, hour) units from one queue until it is empty.

    The queue is a file on Lustre; every claim and finish runs under one Argo mutex, so each unit goes to
    exactly one worker. A worker runs its unit's child workflow, records how it ended, and loops (a
    recursive steps template), so each node runs one unit at a time. One dispatch run per queue at a time
    (a workflow-level mutex); a rerun with the same dynamic_run_label resumes the queue.
    """
    queue_lock = m.Synchronization(mutexes=[m.Mutex(name="orca-queue-{{workflow.parameters.dynamic_run_label}}")])
    with WorkflowTemplate(
            name=DISPATCH, entrypoint="main", on_exit="exit-handler",
            synchronization=m.Synchronization(mutexes=[
                m.Mutex(name="orca-dispatch-{{workflow.parameters.dynamic_run_label}}")]),
            annotations={"workflows.argoproj.io/description": (
                "Dynamic mode: the nodes of the site's dynamic pool take (subband, hour) units from one queue; "
                "each unit runs exactly once, each node one unit at a time; Argo mutexes are the lock.")},
            arguments=night_arguments([*NIGHT_PARAMS[:5], "dynamic_run_label", *NIGHT_PARAMS[5:]]),
            **workflow_settings()) as wt:
        discover = discover_template({"dynamic_run_label": "{{workflow.parameters.dynamic_run_label}}"})
        claim = orca_step("queue-claim", "queue-claim",
                          {"queue_file": "{{inputs.parameters.queue_file}}", "worker": "{{inputs.parameters.node}}",
                           "workflow": "{{workflow.name}}"},
                          inputs=["queue_file", "node"],
                          outputs=["has_unit", "unit_id", "subband", "lst_label", "obs_date", "ms_list_file"],
                          retry=retry(2, backoff="10s"), labels=False, synchronization=queue_lock)
        finish = orca_step("queue-finish", "queue-finish",
                           {**from_inputs("queue_file", "unit_id", "status"), "workflow": "{{workflow.name}}"},
                           inputs=["queue_file", "unit_id", "status"], retry=retry(2, backoff="10s"), labels=False,
                           synchronization=queue_lock)
        unit = run_child("run-unit")
        claimed = "{{steps.claim.outputs.parameters.has_unit}} == true"
        out = {n: f"{{{{steps.claim.outputs.parameters.{n}}}}}" for n in
               ("unit_id", "subband", "lst_label", "obs_date", "ms_list_file")}
        worker_inputs = {"node": "{{inputs.parameters.node}}", "queue_file": "{{inputs.parameters.queue_file}}"}
        with Steps(name="worker", inputs=[input_parameter(n) for n in ("node", "queue_file")]) as worker:
            Step(name="claim", template=claim, arguments=worker_inputs)
            Step(name="run", template=unit, when=claimed, continue_on=m.ContinueOn(failed=True),
                 arguments={k: out[k] for k in ("subband", "lst_label", "obs_date", "ms_list_file")}
                 | {"node": "{{inputs.parameters.node}}"})
            Step(name="finish", template=finish, when=claimed,
                 arguments={"queue_file": "{{inputs.parameters.queue_file}}", "unit_id": out["unit_id"],
                            "status": "{{steps.run.status}}"})
            Step(name="next", template="worker", when=claimed, arguments=worker_inputs)
        with DAG(name="main"):
            Task(name="discover", template=discover)
            Task(name="workers", template=worker, dependencies=["discover"],
                 with_param="{{tasks.discover.outputs.parameters.pool}}",
                 arguments={"node": "{{item}}", "queue_file": "{{tasks.discover.outputs.parameters.queue_file}}"})
        exit_handler({"dynamic_run_label": "{{workflow.parameters.dynamic_run_label}}"})
    return wt


NIGHTLY_DEFAULTS = {"obs_date": "previous-night", "subband": "all", "lst_start": "0", "lst_end": "24",
                    "run_label": "nightly"}


def nightly() -> CronWorkflow:
    """Process the previous night with subband-hours every morning; suspended until a site turns it on."""
    return CronWorkflow(
        name=NIGHTLY, schedules=["0 16 * * *"], timezone="UTC", concurrency_policy="Forbid",
        starting_deadline_seconds=3600, successful_jobs_history_limit=7, failed_jobs_history_limit=14,
        cron_suspend=True, workflow_template_ref=m.WorkflowTemplateRef(name=HOURS),
        annotations={"workflows.argoproj.io/description": (
            "Nightly: subband-hours on the previous night (obs_date previous-night), all LST hours and subbands. "
            "bp_table and xy_table must be set in the chart's values.")},
        arguments=dict(sorted({**NIGHTLY_DEFAULTS, "bp_table": "", "xy_table": ""}.items())))  # Helm's order
