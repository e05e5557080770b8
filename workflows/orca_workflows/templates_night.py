"""Night-level templates: subband-hours (static chains), subband-dispatch (dynamic pool) and the nightly cron.

Each (subband, hour) runs as its own child Workflow of ``subband-pipeline`` (a resource template that
creates it and waits for it), so every workflow object stays small. Children carry the label
``orca/parent=<workflow name>``; when a night does not succeed (e.g. it is stopped), its exit handler
deletes the children still running, because stopping a parent does not stop them. Children have no owner
reference: the night's TTL (3 days after success) must not delete failed children kept 14 days, and
blockOwnerDeletion would need ``update`` on ``workflows/finalizers`` where the OwnerReferencesPermission-
Enforcement admission plugin runs.

A failed hour never stops the others (continueOn), and a night in which any hour failed ends Failed once
every hour has run, its status.message naming the failed units ("failed units: 73MHz 14h, ..."): the
night's root then succeeds and its exit handler, run-report, fails with that message (see exit_handler).
"""
from __future__ import annotations

import yaml
from hera.workflows import DAG, Container, CronWorkflow, Parameter, Resource, Step, Steps, Task, WorkflowTemplate
from hera.workflows import models as m

from orca_steps import discover

from .templates_common import (CONTINUE, from_inputs, from_workflow, input_parameter, orca_step, retry,
                               workflow_parameter, workflow_settings)
from .templates_units import PHASE2_OPTIONS, PIPELINE, PIPELINE_MODELS

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


# A night's parameters are read first by discover; its "subband" is discover's list of subbands.
NIGHT_MODELS = ((discover.Options, "subbands", "subband"), discover.Options, *PIPELINE_MODELS)


def night_arguments(names: list[str]) -> list:
    return [workflow_parameter(n, NIGHT_MODELS) for n in names]


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
                    inputs=[input_parameter(n, PIPELINE_MODELS) for n in ("subband", "lst_label", "obs_date", "ms_list_file", "node")])


def discover_template(extra: dict[str, str]) -> Container:
    return orca_step(
        "discover", "discover",
        {**from_workflow("obs_date", "lst_start", "lst_end"), "subbands": "{{workflow.parameters.subband}}",
         **from_workflow("hour_specs", "run_label", "queue_override", "sun_max_elevation_deg"), **extra},
        inputs=[], outputs=["obs_date", "units", "chains", "pool", "queue_file", "n_units"],
        retry=retry(2, backoff="10s"), labels=False)


REPORT = "run-report"
STOP_CHILDREN = "stop-children"


def exit_handler(extra: dict[str, str]) -> Container:
    """The night's onExit pod: reports the night and fails naming the failed units.

    Argo gives a workflow the message of its root node (a DAG: none, dag.go:378) unless the root
    succeeded and the exit handler failed: then the exit handler's (operator.go:541-566). So the night's
    root succeeds when only units failed, and this pod fails with "failed units: ..." in its termination
    message, which becomes its node's message (operator.go:1864-1868) and the night's. A single pod: a
    steps exit handler's message would only name a child node ID (steps.go:374). Retried only on Error:
    a Failed attempt keeps its message (operator.go:1174-1176); a retried one would end "No more retries
    left" (operator.go:1190)."""
    return orca_step(REPORT, "run-report",
                     {"workflow": "{{workflow.name}}", "run_label": "{{workflow.parameters.run_label}}",
                      "status": "{{workflow.status}}", "failures": "{{workflow.failures}}", **extra,
                      "termination_log": "/dev/termination-log"},
                     inputs=[], retry=m.RetryStrategy(limit=m.IntOrString(2), retry_policy="OnError",
                                                      backoff=m.Backoff(duration="10s", factor=m.IntOrString(2))),
                     labels=False)


def stop_children() -> Resource:
    """Deletes the night's children still running: stopping a night does not stop them."""
    return Resource(name=STOP_CHILDREN, action="delete", flags=[
        "workflows", "--selector", f"{PARENT_LABEL}={{{{workflow.name}}}},workflows.argoproj.io/completed!=true"])


def night_root(night: DAG) -> DAG:
    """The entrypoint: runs the night with an exit hook that deletes children left running.

    A task's exit hook runs even when the night is stopped (exit_handler.go:23, ShouldExecute(true)); when
    the night ran to its end no child is left and the delete is a no-op. It cannot be in the onExit
    handler, which must be one pod (see exit_handler)."""
    with DAG(name="main") as root:
        Task(name="night", template=night, hooks={"exit": m.LifecycleHook(template=STOP_CHILDREN)})
    return root


def subband_hours() -> WorkflowTemplate:
    """orca's submit_subband_pipeline_chained: per subband, its hours one after another; subbands in parallel."""
    with WorkflowTemplate(
            name=HOURS, entrypoint="main", on_exit=REPORT,
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
            # continueOn: a failed hour leaves the night's root Succeeded, so run-report's message names it
            Step(name="hour", template=hour, with_param="{{steps.hours.outputs.parameters.hours}}",
                 continue_on=CONTINUE,
                 arguments={"subband": "{{inputs.parameters.subband}}", "lst_label": "{{item.lst_label}}",
                            "obs_date": "{{item.obs_date}}", "ms_list_file": "{{item.ms_list_file}}",
                            "node": "{{inputs.parameters.node}}"})
        with DAG(name="night") as night:
            Task(name="discover", template=discover)
            Task(name="chains", template=chain, dependencies=["discover"],
                 with_param="{{tasks.discover.outputs.parameters.chains}}",
                 arguments={"subband": "{{item.subband}}", "node": "{{item.node}}",
                            "hours_file": "{{item.hours_file}}"})
        night_root(night)
        exit_handler({})
        stop_children()
    return wt


# Units a dispatch worker claims one after another before it calls itself for the next round. Argo stops
# at 100 nested template calls (controller.go maxAllowedStackDepth): a round adds one, so a worker can take
# about 95 rounds of units, far more than a night holds (15 subbands x 24 hours).
DISPATCH_SLOTS_PER_ROUND = 10


def subband_dispatch() -> WorkflowTemplate:
    """Dynamic mode: one worker per pool node takes (subband, hour) units from one queue until it is empty.

    The queue is a file on Lustre; every claim and finish runs under one Argo mutex, so each unit goes to
    exactly one worker, and a free node takes the next unit. A worker runs rounds of claim slots, one slot
    after another (claim, run the unit's child workflow, record how it ended); while no slot of a round found
    the queue empty it calls itself for the next round. A failed unit is marked so in the queue, and
    run-report, the night's exit handler, fails the night naming it.
    One dispatch run per queue at a time (a workflow-level mutex); a rerun with the same
    dynamic_run_label resumes the queue.
    """
    queue_lock = m.Synchronization(mutexes=[m.Mutex(name="orca-queue-{{workflow.parameters.dynamic_run_label}}")])
    with WorkflowTemplate(
            name=DISPATCH, entrypoint="main", on_exit=REPORT,
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
        with Steps(name="slot", inputs=[input_parameter(n) for n in ("node", "queue_file")], outputs=[
                Parameter(name="has_unit", value_from=m.ValueFrom(parameter="{{steps.claim.outputs.parameters.has_unit}}"))
        ]) as slot:
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
        with DAG(name="night") as night:
            Task(name="discover", template=discover)
            Task(name="workers", template=worker, dependencies=["discover"],
                 with_param="{{tasks.discover.outputs.parameters.pool}}",
                 arguments={"node": "{{item}}", "queue_file": "{{tasks.discover.outputs.parameters.queue_file}}"})
        night_root(night)
        # the queue says which units failed; run-report names them (see exit_handler)
        exit_handler({"dynamic_run_label": "{{workflow.parameters.dynamic_run_label}}"})
        stop_children()
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
