"""Night-level templates: subband-hours (static chains), subband-dispatch (dynamic pool) and the nightly cron.

Each (subband, hour) runs as its own child Workflow of ``subband-pipeline`` (a resource template that
creates it and waits for it), so every workflow object stays small. Children carry the label
``orca/parent=<workflow name>``; when a night does not succeed (e.g. it is stopped), its exit handler
deletes the children still running, because stopping a parent does not stop them. Children have no owner
reference: the night's TTL (3 days after success) must not delete failed children kept 14 days, and
blockOwnerDeletion would need ``update`` on ``workflows/finalizers`` where the OwnerReferencesPermission-
Enforcement admission plugin runs.

A failed hour never stops the others, and a night in which any hour failed ends Failed once every hour
has run: in Argo a looped step runs all its items whatever their phase (failFast is off for steps) and
its step group then fails (steps.go executeStepGroup).
"""
from __future__ import annotations

import yaml
from hera.workflows import DAG, Container, CronWorkflow, Parameter, Resource, Step, Steps, Task, WorkflowTemplate
from hera.workflows import models as m

from .templates_common import (CONTINUE, container_security, from_inputs, from_workflow, image, input_parameter,
                               orca_step, resources, retry, workflow_parameter, workflow_settings)
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
    return Resource(name=name, action="create", manifest=child_manifest(),
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
        Step(name="report", template=report, continue_on=CONTINUE)
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
        read_hours = orca_step("chain-hours", "chain-hours", from_inputs("hours_file"), inputs=["hours_file"],
                               outputs=["hours"], retry=retry(2, backoff="10s"), labels=False)
        with Steps(name="chain", parallelism=1,
                   inputs=[input_parameter(n) for n in ("subband", "node", "hours_file")]) as chain:
            # The hours come from a file, not the chains item: Argo names loop nodes after their item.
            Step(name="hours", template=read_hours, arguments=from_inputs("hours_file"))
            Step(name="hour", template=hour, with_param="{{steps.hours.outputs.parameters.hours}}",  # no continueOn
                 arguments={"subband": "{{inputs.parameters.subband}}", "lst_label": "{{item.lst_label}}",
                            "obs_date": "{{item.obs_date}}", "ms_list_file": "{{item.ms_list_file}}",
                            "node": "{{inputs.parameters.node}}"})
        with DAG(name="main"):
            Task(name="discover", template=discover)
            Task(name="chains", template=chain, dependencies=["discover"],
                 with_param="{{tasks.discover.outputs.parameters.chains}}",
                 arguments={"subband": "{{item.subband}}", "node": "{{item.node}}",
                            "hours_file": "{{item.hours_file}}"})
        exit_handler({})
    return wt


# Units a dispatch worker claims one after another before it calls itself for the next round. Argo stops
# at 100 nested template calls (controller.go maxAllowedStackDepth): a round adds one, so a worker can take
# about 95 rounds of units, far more than a night holds (15 subbands x 24 hours).
DISPATCH_SLOTS_PER_ROUND = 10


def failed_units_template() -> Container:
    """Fails, naming the units that failed (``unit_id=phase``), so the worker and the night end Failed.

    The one pod that is not an ``orca-step``: it only prints and fails, and mounts nothing."""
    return Container(
        name="failed-units", image=image(), command=["sh", "-c", 'echo "failed units: $0"; exit 1'],
        args=["{{inputs.parameters.unit_status}}"], inputs=[input_parameter("unit_status")],
        termination_message_policy="FallbackToLogsOnError", security_context=container_security(),
        resources=resources("small"), active_deadline_seconds=60)


def subband_dispatch() -> WorkflowTemplate:
    """Dynamic mode: one worker per pool node takes (subband, hour) units from one queue until it is empty.

    The queue is a file on Lustre; every claim and finish runs under one Argo mutex, so each unit goes to
    exactly one worker, and a free node takes the next unit. A worker runs rounds of claim slots, one slot
    after another (claim, run the unit's child workflow, record how it ended); while no slot of a round found
    the queue empty it calls itself for the next round. At the end it fails if any of its units failed.
    One dispatch run per queue at a time (a workflow-level mutex); a rerun with the same
    dynamic_run_label resumes the queue.
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
        failed_units = failed_units_template()
        claimed = "{{steps.claim.outputs.parameters.has_unit}} == true"
        out = {n: f"{{{{steps.claim.outputs.parameters.{n}}}}}" for n in
               ("unit_id", "subband", "lst_label", "obs_date", "ms_list_file")}
        worker_inputs = {"node": "{{inputs.parameters.node}}", "queue_file": "{{inputs.parameters.queue_file}}"}
        with Steps(name="slot", inputs=[input_parameter(n) for n in ("node", "queue_file")], outputs=[
                Parameter(name="has_unit", value_from=m.ValueFrom(parameter="{{steps.claim.outputs.parameters.has_unit}}")),
                Parameter(name="unit_status", value_from=m.ValueFrom(
                    parameter=f"{out['unit_id']}={{{{steps.run.status}}}}"))]) as slot:
            Step(name="claim", template=claim, arguments=worker_inputs)
            Step(name="run", template=unit, when=claimed, continue_on=CONTINUE,
                 arguments={k: out[k] for k in ("subband", "lst_label", "obs_date", "ms_list_file")}
                 | {"node": "{{inputs.parameters.node}}"})
            Step(name="finish", template=finish, when=claimed,
                 arguments={"queue_file": "{{inputs.parameters.queue_file}}", "unit_id": out["unit_id"],
                            "status": "{{steps.run.status}}"})
        with Steps(name="worker", parallelism=1, inputs=[input_parameter(n) for n in ("node", "queue_file")]) as worker:
            Step(name="round", template=slot, arguments=worker_inputs,
                 with_sequence=m.Sequence(count=str(DISPATCH_SLOTS_PER_ROUND)))
            Step(name="next", template="worker", arguments=worker_inputs,
                 when="'{{steps.round.outputs.parameters.has_unit}}' !~ 'false'")
            Step(name="failed-units", template=failed_units,
                 arguments={"unit_status": "{{steps.round.outputs.parameters.unit_status}}"},
                 when="'{{steps.round.outputs.parameters.unit_status}}' =~ '=(Failed|Error)'")
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
