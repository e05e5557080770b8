"""Structure of the Hera-rendered Argo objects: pinning, volumes, security, seed parameters, locks, exits."""
import json

import pytest
import yaml
from chart_tools import args_of, flags, templates
from hera.workflows import CronWorkflow, WorkflowTemplate

from orca_steps import config
from orca_workflows import templates_common as common
from orca_workflows import validate as v
from orca_steps.pipeline import PHASE2
from orca_workflows.templates import manifests
from orca_workflows.templates_units import PHASE2_PODS, WSCLEAN

DOCS = manifests()
WORKFLOW_TEMPLATES = {k: v for k, v in DOCS.items() if v["kind"] == "WorkflowTemplate"}
# The pods that work on a unit's NVMe: pinned to the unit's node.
PHASE2_STEP_PODS = {("subband-process", s.name) for s in PHASE2}
UNIT_PODS = {("subband-prepare-ms", "prepare-ms"), ("subband-process", "preflight"),
             ("subband-process", "partial-archive"), *PHASE2_STEP_PODS,
             ("subband-pipeline", "collect-ms"), ("subband-pipeline", "unit-report")}
LABELS = {"orca/subband", "orca/obs-date", "orca/lst", "orca/run-label"}

# The seed API (orca.tasks.subband_tasks), parameter names per function; self/Celery internals omitted.
SEED = {
    "prepare_one_ms_task": ["src_ms", "nvme_work_dir", "bp_table", "xy_table", "peel_sky", "peel_rfi"],
    "process_subband_task": ["ms_paths", "work_dir", "subband", "lst_label", "obs_date", "run_label",
                             "hot_baselines", "skip_cleanup", "cleanup_nvme", "targets", "catalog",
                             "clean_snapshots", "clean_reduced_pixels", "reduced_pixels", "skip_science",
                             "compress_snapshots", "remaining_hours", "dynamic_run_label", "bp_table", "xy_table"],
    "submit_subband_pipeline": ["ms_files", "subband", "bp_table", "xy_table", "lst_label", "obs_date", "run_label",
                                "peel_sky", "peel_rfi", "hot_baselines", "skip_cleanup", "cleanup_nvme",
                                "nvme_work_dir", "queue_override", "targets", "catalog", "clean_snapshots",
                                "clean_reduced_pixels", "reduced_pixels", "skip_science", "compress_snapshots",
                                "remaining_hours", "dynamic_run_label"],
    "submit_subband_pipeline_chained": ["hour_specs", "subband", "bp_table", "xy_table", "run_label", "peel_sky",
                                        "peel_rfi", "hot_baselines", "skip_cleanup", "cleanup_nvme",
                                        "queue_override", "targets", "catalog", "clean_snapshots",
                                        "clean_reduced_pixels", "reduced_pixels", "skip_science",
                                        "compress_snapshots"],
}
# Celery plumbing that Argo replaces (documented in templates_common.SEED_REPLACED).
REPLACED = {"remaining_hours", "dynamic_run_label"}
SEED_TEMPLATE = {"prepare_one_ms_task": "subband-prepare-ms", "process_subband_task": "subband-process",
                 "submit_subband_pipeline": "subband-pipeline", "submit_subband_pipeline_chained": "subband-hours"}
BOOLEAN = {"peel_sky", "peel_rfi", "hot_baselines", "skip_cleanup", "cleanup_nvme", "clean_snapshots",
           "clean_reduced_pixels", "reduced_pixels", "skip_science", "compress_snapshots"}


def containers():
    """Every orca-step pod."""
    for doc_name, doc in WORKFLOW_TEMPLATES.items():
        for name, tmpl in templates(doc).items():
            if "container" in tmpl and tmpl["container"]["command"] == ["orca-step"]:
                yield doc_name, name, tmpl


def mounts(tmpl):
    return {m["mountPath"]: m for m in tmpl["container"]["volumeMounts"]}


def test_unit_pods_are_pinned_to_their_node_with_nvme_and_lustre():
    site = config.site()
    pinned = {(d, n) for d, n, t in containers() if t.get("nodeSelector")}
    assert pinned == UNIT_PODS
    for doc_name, name, tmpl in containers():
        vols = {v["name"]: v for v in tmpl["volumes"]}
        mp = mounts(tmpl)
        assert vols["lustre"]["hostPath"] == {"path": "/lustre", "type": "Directory"}
        assert mp["/lustre"]["readOnly"] is True  # input and everything else on Lustre: read-only
        assert mp[site.runs_root]["subPath"] == site.runs_root.removeprefix("/lustre/")
        assert not mp[site.runs_root].get("readOnly")
        assert vols["tmp"] == {"name": "tmp", "emptyDir": {}} and "/tmp" in mp
        if (doc_name, name) in UNIT_PODS:
            assert tmpl["nodeSelector"] == {"kubernetes.io/hostname": "{{inputs.parameters.node}}"}
            assert vols["fast"]["hostPath"] == {"path": "/fast", "type": "Directory"}
            assert not mp["/fast"].get("readOnly")
            assert mp[site.archive_root]["subPath"] == site.archive_root.removeprefix("/lustre/")
            assert set(tmpl["metadata"]["labels"]) == LABELS | {common.RESOURCES_LABEL}
            assert {p["name"] for p in tmpl["inputs"]["parameters"]} >= {"node", *common.UNIT_LABELS.values()}
        else:  # pods that may land anywhere never touch a node's NVMe or the archive
            assert "fast" not in vols and "/fast" not in mp and site.archive_root not in mp


def test_every_pod_is_non_root_with_a_read_only_root_and_limits():
    for doc_name, name, tmpl in containers():
        c = tmpl["container"]
        sc = c["securityContext"]
        assert sc["readOnlyRootFilesystem"] and sc["runAsNonRoot"] and sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"] == {"drop": ["ALL"]}
        assert c["command"] == ["orca-step"] and c["image"] == common.image()
        assert c["resources"]["requests"]["cpu"] and c["resources"]["limits"]["memory"]
        assert {"name": "ORCA_CONFIG", "value": "/etc/orca/site.json"} in c["env"]
        assert tmpl["activeDeadlineSeconds"] > 0, (doc_name, name)
    for doc in WORKFLOW_TEMPLATES.values():
        spec = doc["spec"]
        assert spec["securityContext"]["runAsNonRoot"] and spec["securityContext"]["runAsUser"] > 0
        assert spec["serviceAccountName"] == common.SERVICE_ACCOUNT
        assert spec["podGC"]["strategy"] == "OnPodSuccess"
        assert spec["ttlStrategy"]["secondsAfterSuccess"] > 0 and spec["ttlStrategy"]["secondsAfterFailure"] > 0


def test_deadlines_and_retries():
    prepare = templates(DOCS["subband-prepare-ms"])["prepare-ms"]
    assert prepare["retryStrategy"]["limit"] == 2 and prepare["retryStrategy"]["retryPolicy"] == "Always"
    assert prepare["retryStrategy"]["backoff"]["duration"] and prepare["retryStrategy"]["backoff"]["factor"] == 2
    process = templates(DOCS["subband-process"])
    for _, name in PHASE2_STEP_PODS:  # each step its own deadline and resources; a retry resumes the step
        pod = process[name]
        assert pod["retryStrategy"]["retryPolicy"] == "Always"  # evictions are Failed in Argo
        assert pod["retryStrategy"]["expression"] == common.NO_RETRY_EXPRESSION
        assert pod["activeDeadlineSeconds"] == (PHASE2_PODS[name].deadline if name in PHASE2_PODS
                                                else common.SMALL_DEADLINE_S)
        assert pod["container"]["resources"] == common.resource_table()[pod["metadata"]["labels"][common.RESOURCES_LABEL]]
    kind = {n: process[n]["metadata"]["labels"][common.RESOURCES_LABEL] for _, n in PHASE2_STEP_PODS}
    assert {n for n, k in kind.items() if k == WSCLEAN} == {"pilot-snapshots", "science-images", "cube",
                                                             "clean-snapshots"}
    assert kind["provenance"] == kind["qa-summary"] == "small"  # bookkeeping does not ask for WSClean's CPUs
    assert prepare["retryStrategy"]["expression"] == common.NO_RETRY_EXPRESSION  # a corrupt MS is not retried
    for _, _, tmpl in containers():  # pinned pods must never retry with anti-affinity: they would hang
        assert "affinity" not in tmpl.get("retryStrategy", {})


def test_phase1_and_phase2_run_the_seed_steps_with_outputs_from_files():
    prepare = templates(DOCS["subband-prepare-ms"])["prepare-ms"]
    assert prepare["container"]["args"][0] == "prepare-ms"
    f = flags(prepare["container"])
    assert {k: f[k] for k in SEED["prepare_one_ms_task"]} == {
        k: f"{{{{inputs.parameters.{k}}}}}" for k in SEED["prepare_one_ms_task"]}
    assert f["result-file"] == "/tmp/outputs/result.json" and f["outputs-dir"] == "/tmp/outputs"
    assert prepare["outputs"]["parameters"] == [{"name": "ms_path", "valueFrom": {"path": "/tmp/outputs/ms_path"}}]
    process = templates(DOCS["subband-process"])
    preflight = process["preflight"]
    assert preflight["container"]["args"][0] == "phase2-preflight"
    assert set(flags(preflight["container"])) >= set(SEED["process_subband_task"]) - REPLACED
    for step in PHASE2:
        f = flags(process[step.name]["container"])
        assert process[step.name]["container"]["args"][0] == "phase2-step" and f["step"] == step.name
    # only the result fields a later step reads are output parameters (JSON), never a whole result
    outputs = {name: {p["name"] for p in t.get("outputs", {}).get("parameters", [])} for name, t in process.items()}
    assert outputs["concat"] == {"concat_ms"} and outputs["pilot-snapshots"] == {"images"}
    assert outputs["fix-field"] == set() and outputs["archive"] == {"archive_path"}
    assert flags(process["snapshot-qa"]["container"])["json_outputs"] == "/tmp/outputs/json"
    assert process["concat"]["outputs"]["parameters"] == [{"name": "concat_ms",
                                                           "valueFrom": {"path": "/tmp/outputs/json/concat_ms"}}]
    assert {"name": "archive_path", "valueFrom": {"path": "/tmp/outputs/archive_path"}} in process["archive"][
        "outputs"]["parameters"]
    assert process["process-subband"]["outputs"]["parameters"][0]["valueFrom"]["parameter"] == (
        "{{steps.phase2.outputs.parameters.archive_path}}")


@pytest.mark.parametrize("seed_function", sorted(SEED_TEMPLATE))
def test_every_seed_parameter_is_an_argument_with_description_and_enum(seed_function):
    args = args_of(DOCS[SEED_TEMPLATE[seed_function]])
    for name in SEED[seed_function]:
        if name in REPLACED:
            continue
        assert name in args, f"{SEED_TEMPLATE[seed_function]} lacks seed parameter {name}"
        assert len(args[name].get("description", "")) > 10
        if name in BOOLEAN:
            assert args[name]["enum"] == ["true", "false"] and args[name]["value"] in ("true", "false")
    if "lst_label" in args:
        assert args["lst_label"]["enum"] == [f"{h:02d}h" for h in range(24)]
    if "subband" in args and seed_function != "submit_subband_pipeline_chained":
        assert args["subband"]["enum"] == list(config.PROCESSED_SUBBANDS)
    assert "remaining_hours" in common.SEED_REPLACED


def test_dispatch_takes_the_dynamic_run_label_and_required_arguments_have_no_default():
    args = args_of(DOCS["subband-dispatch"])
    assert "dynamic_run_label" in args and "value" not in args["dynamic_run_label"]
    pipeline = args_of(DOCS["subband-pipeline"])
    assert {n for n, p in pipeline.items() if "value" not in p} == {"subband", "bp_table", "xy_table", "lst_label",
                                                                    "obs_date", "run_label"}


def test_pipeline_fans_out_per_ms_and_a_failed_ms_does_not_sink_the_hour():
    t = templates(DOCS["subband-pipeline"])
    hour = t["hour"]
    tasks = {x["name"]: x for x in hour["dag"]["tasks"]}
    assert tasks["prepare"]["withParam"] == "{{inputs.parameters.ms_files}}"
    assert tasks["prepare"]["continueOn"] == {"failed": True, "error": True}  # Argo judges Error apart
    assert tasks["prepare"]["templateRef"] == {"name": "subband-prepare-ms", "template": "prepare-ms"}
    assert tasks["collect"]["dependencies"] == ["prepare"] and "depends" not in tasks["collect"]
    collect_args = {p["name"]: p["value"] for p in tasks["collect"]["arguments"]["parameters"]}
    # Survivors come from the work dir's Phase 1 markers, not the aggregated outputs (unresolvable if all failed).
    assert "ms_paths" not in collect_args and "ms_paths" not in flags(t["collect-ms"]["container"])
    assert flags(t["collect-ms"]["container"])["min_ms_fraction"] == "{{workflow.parameters.min_ms_fraction}}"
    process_args = {p["name"]: p["value"] for p in tasks["process"]["arguments"]["parameters"]}
    assert process_args["ms_paths"] == "@{{tasks.collect.outputs.parameters.ms_list_file}}"  # a path, not a list
    assert hour["parallelism"] == config.site().phase1_parallelism
    assert hour["synchronization"] == {"semaphores": [{"configMapKeyRef": {
        "name": common.NODE_LOCKS_CONFIGMAP, "key": "{{inputs.parameters.node}}"}}]}
    main = {x["name"]: x for x in t["main"]["dag"]["tasks"]}
    exit_hook = main["hour"]["hooks"]["exit"]
    assert exit_hook["template"] == "unit-report"
    hook_args = {p["name"]: p["value"] for p in exit_hook["arguments"]["parameters"]}
    assert hook_args["status"] == "{{tasks.hour.status}}"
    assert flags(t["unit-report"]["container"])["cleanup_nvme"] == "{{workflow.parameters.cleanup_nvme}}"


def child(tmpl):
    return yaml.safe_load(tmpl["resource"]["manifest"])


@pytest.mark.parametrize("doc_name, template_name", [("subband-hours", "run-hour"), ("subband-dispatch", "run-unit")])
def test_children_are_subband_pipelines_that_cannot_hang_the_parent(doc_name, template_name):
    tmpl = templates(DOCS[doc_name])[template_name]
    res = tmpl["resource"]
    # No owner reference: the night's TTL would delete failed children, and blockOwnerDeletion needs
    # update on workflows/finalizers (OwnerReferencesPermissionEnforcement); the exit handler stops them.
    assert res["action"] == "create" and "setOwnerReference" not in res
    assert res["successCondition"] == "status.phase == Succeeded"
    assert res["failureCondition"] == "status.phase in (Failed, Error)"
    wf = child(tmpl)
    assert wf["kind"] == "Workflow" and wf["spec"]["workflowTemplateRef"] == {"name": "subband-pipeline"}
    assert "ownerReferences" not in wf["metadata"]
    assert wf["metadata"]["labels"]["orca/parent"] == "{{workflow.name}}"
    assert LABELS <= set(wf["metadata"]["labels"])
    given = {p["name"]: p["value"] for p in wf["spec"]["arguments"]["parameters"]}
    required = {n for n, p in args_of(DOCS["subband-pipeline"]).items() if "value" not in p}
    assert required <= set(given)
    assert given["queue_override"] == "{{inputs.parameters.node}}"  # the node the night chose
    assert given["ms_files"] == "@{{inputs.parameters.ms_list_file}}"


def test_hours_run_in_order_per_subband_and_a_failed_hour_does_not_stop_the_others():
    t = templates(DOCS["subband-hours"])
    chain = t["chain"]
    assert chain["parallelism"] == 1  # one hour at a time ...
    (read,), (step,) = chain["steps"]
    # ... in the order discover listed them, read from its file: a chains item holding the hours made
    # every node name of the chain about 3 KB (Argo names loop nodes after every field of the item)
    assert read["template"] == "chain-hours"
    assert step["withParam"] == "{{steps.hours.outputs.parameters.hours}}"
    night = {x["name"]: x for x in t["night"]["dag"]["tasks"]}
    chain_args = {p["name"]: p["value"] for p in night["chains"]["arguments"]["parameters"]}
    assert chain_args == {"subband": "{{item.subband}}", "node": "{{item.node}}", "hours_file": "{{item.hours_file}}"}
    # A failed hour leaves the chain, and the night's root, Succeeded: run-report then fails the night
    # naming it (test_a_night_fails_through_its_exit_handler). A failed chain-hours still fails it.
    assert step["continueOn"] == {"failed": True, "error": True} and "failFast" not in chain
    assert "continueOn" not in read and "continueOn" not in night["chains"]
    assert night["chains"]["withParam"] == "{{tasks.discover.outputs.parameters.chains}}"  # subbands in parallel
    assert "parallelism" not in t["night"]


def test_dispatch_locks_the_queue_and_each_worker_runs_one_unit_at_a_time():
    doc = DOCS["subband-dispatch"]
    t = templates(doc)
    assert doc["spec"]["synchronization"] == {"mutexes": [
        {"name": "orca-dispatch-{{workflow.parameters.dynamic_run_label}}"}]}
    queue_mutex = {"mutexes": [{"name": "orca-queue-{{workflow.parameters.dynamic_run_label}}"}]}
    assert t["queue-claim"]["synchronization"] == queue_mutex == t["queue-finish"]["synchronization"]
    groups = t["slot"]["steps"]
    assert [[s["name"] for s in g] for g in groups] == [["claim"], ["run"], ["finish"]]  # sequential
    run, finish = groups[1][0], groups[2][0]
    claimed = "{{steps.claim.outputs.parameters.has_unit}} == true"
    assert run["when"] == finish["when"] == claimed
    assert run["continueOn"] == {"failed": True, "error": True}
    assert {p["name"]: p["value"] for p in finish["arguments"]["parameters"]}["status"] == "{{steps.run.status}}"
    workers = {x["name"]: x for x in t["night"]["dag"]["tasks"]}["workers"]
    assert workers["withParam"] == "{{tasks.discover.outputs.parameters.pool}}"


def test_dispatch_worker_nests_one_call_per_round_not_per_unit():
    # Argo stops at 100 nested template calls (controller.go maxAllowedStackDepth): a worker that called
    # itself once per unit failed at about its 98th unit. Now one round of slots runs one after another
    # (parallelism 1) and the worker calls itself once per round.
    from orca_workflows.templates_night import DISPATCH_SLOTS_PER_ROUND

    t = templates(DOCS["subband-dispatch"])
    worker = t["worker"]
    assert worker["parallelism"] == 1
    (rnd,), (again,) = worker["steps"]
    assert rnd["template"] == "slot" and rnd["withSequence"] == {"count": str(DISPATCH_SLOTS_PER_ROUND)}
    assert again["template"] == "worker" and "false" in again["when"]  # no slot found the queue empty
    assert "continueOn" not in rnd and "continueOn" not in again
    night = 15 * 24   # every processed subband, every LST hour: on a single-node pool
    assert night / DISPATCH_SLOTS_PER_ROUND + 5 < 100
    # A failed unit is marked failed in the queue (queue-finish); run-report names it (see below).
    assert {o["name"] for o in t["slot"]["outputs"]["parameters"]} == {"has_unit"}


@pytest.mark.parametrize("doc_name", ["subband-hours", "subband-dispatch"])
def test_a_night_fails_through_its_exit_handler_and_a_stopped_one_stops_its_children(doc_name):
    doc = DOCS[doc_name]
    t = templates(doc)
    # The night's message is its root's (a DAG: none) unless the root succeeded and the exit handler
    # failed (operator.go:541-566): the exit handler is the run-report pod, whose termination message
    # names the failed units; Retried only on Error, a Failed attempt keeps its message (operator.go:1176).
    assert doc["spec"]["onExit"] == "run-report"
    report = t["run-report"]
    assert flags(report["container"])["failures"] == "{{workflow.failures}}"
    assert flags(report["container"])["termination_log"] == "/dev/termination-log"
    assert "terminationMessagePolicy" not in report["container"]   # File: only what run-report writes
    assert report["retryStrategy"]["retryPolicy"] == "OnError" and "expression" not in report["retryStrategy"]
    # stop-children hangs on the night's only task: an exit hook runs under a stop (exit_handler.go:23)
    assert doc["spec"]["entrypoint"] == "main"
    (night,) = t["main"]["dag"]["tasks"]
    assert night["template"] == "night" and night["hooks"] == {"exit": {"template": "stop-children"}}
    assert "continueOn" not in night
    assert t["stop-children"]["resource"] == {"action": "delete", "flags": [
        "workflows", "--selector", "orca/parent={{workflow.name}},workflows.argoproj.io/completed!=true"]}


def test_nightly_cron_is_suspended_and_takes_the_previous_night():
    cron = DOCS["orca-nightly"]["spec"]
    assert cron["suspend"] is True and cron["schedules"] and "schedule" not in cron  # v4: list form only
    assert cron["concurrencyPolicy"] == "Forbid"
    params = {p["name"]: p["value"] for p in cron["workflowSpec"]["arguments"]["parameters"]}
    assert params["obs_date"] == "previous-night" and params["lst_start"] == "0" and params["lst_end"] == "24"
    assert cron["workflowSpec"]["workflowTemplateRef"] == {"name": "subband-hours"}


def test_site_lists_are_never_copied_into_the_templates():
    text = json.dumps(DOCS)
    site = config.site()
    for node in set(site.node_map.values()) | set(site.dynamic_pool):
        assert node not in text  # nodes reach pods through the site ConfigMap and discover's outputs
    assert site.input_root not in text and site.nvme_root not in text


def test_only_v4_forms_and_hera_round_trips():
    text = json.dumps(DOCS)
    assert '"mutex":' not in text and '"semaphore":' not in text
    for doc in DOCS.values():
        cls = CronWorkflow if doc["kind"] == "CronWorkflow" else WorkflowTemplate
        # Hera's models accept every field we set; pendingTimeout (Argo v4.1) is added after Hera
        bare = json.loads(json.dumps(doc).replace(f', "pendingTimeout": "{common.PENDING_TIMEOUT}"', ""))
        assert cls.from_dict(bare).to_dict() == bare


def test_the_demo_peels_with_parameters_the_night_templates_take():
    from orca_workflows.demo import peeling

    for name in ("subband-hours", "subband-dispatch"):
        declared = {p["name"] for p in DOCS[name]["spec"]["arguments"]["parameters"]}
        assert set(peeling()) <= declared, name
    assert peeling()["peel_sky"] == peeling()["peel_rfi"] == "true"


def _all_templates():
    for doc in DOCS.values():
        spec = doc["spec"].get("workflowSpec", doc["spec"])
        yield from spec.get("templates") or []


def test_retries_have_no_max_duration_and_retry_evictions():
    # backoff.maxDuration counts from the first attempt and is the retry pod's deadline (operator.go "Max
    # duration limit exceeded", workflowpod.go getDeadline): 15m would lose an 8-hour Phase 2 retry.
    # Argo marks an evicted pod or a lost node Failed: OnError would not retry them.
    retried = [t for t in _all_templates() if "retryStrategy" in t]
    assert len(retried) >= 8
    for t in retried:
        assert "maxDuration" not in t["retryStrategy"].get("backoff", {}), t["name"]
        if t["name"] != "run-report":   # see test_a_night_fails_through_its_exit_handler...
            assert t["retryStrategy"]["retryPolicy"] == "Always", t["name"]


def test_pinned_pods_give_up_when_pending_too_long():
    # activeDeadlineSeconds starts only when the pod runs; pendingTimeout (operator.go
    # checkTemplateTimeouts) ends a pod that cannot be scheduled, so its hour lets go of the node lock.
    pinned = [t for t in _all_templates() if "nodeSelector" in t]
    assert {t["name"] for t in pinned} == {n for _, n in UNIT_PODS}
    for t in pinned:
        assert t["pendingTimeout"] == common.PENDING_TIMEOUT
    assert not [t["name"] for t in _all_templates() if "pendingTimeout" in t and "nodeSelector" not in t]


def test_every_continue_on_covers_failed_and_error():
    # Argo judges a child's Failed and Error apart (WorkflowStep.ContinuesOn): {failed: true} alone lets an
    # Error (deleted pod, failed wait container) stop the chain or the hour.
    found = []
    for t in _all_templates():
        for task in (t.get("dag") or {}).get("tasks", []) + [s for g in t.get("steps") or [] for s in g]:
            if "continueOn" in task:
                found.append((t["name"], task["name"], task["continueOn"]))
    assert len(found) >= 3   # a failed MS, hour or unit
    assert all(c == {"failed": True, "error": True} for _, _, c in found), found


NEWER_ORCA = ["snapshot_only", "archive_concat_ms", "cube", "cube_only", "cube_dewarp"]


def test_every_template_taking_phase2_options_takes_the_newer_orca_modes():
    """Where a template takes orca's Phase 2 switches it also takes the newer modes, as booleans, and the
    Phase 2 container receives them."""
    taking = [name for name, doc in WORKFLOW_TEMPLATES.items() if "skip_science" in args_of(doc)]
    assert {"subband-process", "subband-pipeline", "subband-hours", "subband-dispatch"} <= set(taking)
    for name in taking:
        args = args_of(WORKFLOW_TEMPLATES[name])
        for flag in NEWER_ORCA:
            assert flag in args, f"{name} lacks {flag}"
            assert args[flag]["enum"] == ["true", "false"] and args[flag]["value"] == "false"
            assert len(args[flag].get("description", "")) > 10
    process = flags(templates(DOCS["subband-process"])["preflight"]["container"])
    assert {k: process[k] for k in NEWER_ORCA} == {k: f"{{{{inputs.parameters.{k}}}}}" for k in NEWER_ORCA}
    rendered = json.dumps(DOCS["subband-pipeline"])
    for flag in NEWER_ORCA:  # the hour hands each one on to its Phase 2
        assert f'"value": "{{{{workflow.parameters.{flag}}}}}"' in rendered, flag


def metrics_of(doc_name: str, template: str) -> dict[str, dict]:
    return {p["name"]: p for p in templates(DOCS[doc_name])[template]["metrics"]["prometheus"]}


def test_unit_steps_report_prometheus_metrics_by_subband_and_lst_hour():
    unit_labels = {"subband": "{{inputs.parameters.subband}}", "lst": "{{inputs.parameters.lst_label}}"}
    for doc_name, name in UNIT_PODS:
        step = name
        duration = metrics_of(doc_name, name)["orca_step_duration_seconds"]
        assert {lab["key"]: lab["value"] for lab in duration["labels"]} == {**unit_labels, "step": step,
                                                                             "status": "{{status}}"}
        assert duration["gauge"] == {"value": "{{duration}}", "realtime": False}
    dropped = metrics_of("subband-pipeline", "collect-ms")["orca_ms_dropped"]
    assert dropped["gauge"]["value"] == "{{outputs.parameters.n_dropped}}" and dropped["when"] == "{{status}} == Succeeded"
    collect = templates(DOCS["subband-pipeline"])["collect-ms"]
    assert {"name": "n_dropped", "valueFrom": {"path": "/tmp/outputs/n_dropped"}} in collect["outputs"]["parameters"]
    outcome = metrics_of("subband-pipeline", "unit-report")["orca_unit_outcome_total"]
    assert {lab["key"]: lab["value"] for lab in outcome["labels"]} == {**unit_labels,
                                                                        "outcome": "{{inputs.parameters.status}}"}
    assert outcome["counter"] == {"value": "1"}
    assert v.validate_documents(list(DOCS.values())) == []  # the CRD schemas and Argo's metric variables accept them
