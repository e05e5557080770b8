"""What every Argo template of the pipeline shares: image, pod settings, volumes, parameters.

Site values come from ``orca_steps.config.site()`` at render time (volume mounts, parallelism) or, in
pods, from the ``orca-site-config`` ConfigMap that the chart builds from the same values (node map,
roots, pool). Nothing here copies a node list.
"""
from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import version
from pathlib import PurePosixPath

from hera.workflows import Container, Parameter
from pydantic import BaseModel
from hera.workflows import models as m
from orca_steps import config
from orca_steps.errors import NOT_RETRIED_EXIT_CODES

IMAGE_REPOSITORY = "ghcr.io/ovro-lwa/orca-steps"
SERVICE_ACCOUNT = "orca-pipeline"
SITE_CONFIGMAP = "orca-site-config"  # key SITE_CONFIG_KEY: the SiteConfig as JSON
SITE_CONFIG_KEY = "site.json"
SITE_CONFIG_DIR = "/etc/orca"
NODE_LOCKS_CONFIGMAP = "orca-node-locks"  # key per node, value 1: one unit per node at a time
OUTPUTS_DIR = "/tmp/outputs"
NVME_MOUNT = "/fast"
LUSTRE_MOUNT = "/lustre"
RUN_AS_USER = 1000
PHASE1_DEADLINE_S = 3600
SMALL_DEADLINE_S = 1800
# activeDeadlineSeconds counts only once a pod runs: a pod that cannot be scheduled (pinned to a missing,
# cordoned or full node) fails after this long Pending instead of holding its hour's node lock forever.
PENDING_TIMEOUT = "30m"
HOSTNAME_LABEL = "kubernetes.io/hostname"
# A failed unit never stops the others; Argo judges Failed and Error apart (WorkflowStep.ContinuesOn).
CONTINUE = m.ContinueOn(failed=True, error=True)


def resource_table() -> dict[str, dict]:
    """Pod resources by kind (the chart's values.yaml is generated from this table; pods name their kind in
    the label RESOURCES_LABEL).

    ``small`` is every bookkeeping pod; ``wsclean`` asks for the CPUs WSClean is told to use; ``phase2-data``
    is a Phase 2 step that reads or writes the whole MS or its images (concat, AOFlagger, science)."""
    return {
        "small": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}},
        "prepare-ms": {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"memory": "4Gi"}},
        "phase2-data": {"requests": {"cpu": "4", "memory": "32Gi"}, "limits": {"memory": "115Gi"}},
        "wsclean": {"requests": {"cpu": str(config.site().wsclean_threads), "memory": "100Gi"},
                    "limits": {"memory": "115Gi"}},
    }


def image() -> str:
    """The step image; its tag is this package's version."""
    return f"{IMAGE_REPOSITORY}:{version('orca-argo')}"


# --- Parameters: names, descriptions, enums and defaults, read from the steps' Options models -----------
@dataclass(frozen=True)
class Spec:
    description: str
    enum: tuple[str, ...] | None = None
    default: str | None = None  # None: required at submission


# Parameters only Argo has (no step's Options declares them).
ARGO_PARAMS: dict[str, Spec] = {
    "node": Spec("Node (kubernetes.io/hostname) whose NVMe holds the work dir."),
    # discover takes an empty name as "no queue"; subband-dispatch cannot run without one
    "dynamic_run_label": Spec("Name of the dispatch queue; a rerun with the same name resumes it."),
}

# Where each seed parameter lives. Celery plumbing is replaced by Argo itself:
SEED_REPLACED = {
    "remaining_hours": "subband-hours runs the hours as a declarative chain of child workflows",
    "dynamic_run_label (on the per-hour tasks)": "subband-dispatch owns the queue; its units are plain hours",
}


def argo_value(value) -> str:
    """A Python default as Argo passes it to ``orca-step`` (the CLI's forms: true/false, lists comma-separated)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    return str(value)


def field_spec(model: type[BaseModel], field: str) -> Spec:
    """A template parameter's description, enum and default, from the Options field the step reads it into."""
    info = model.model_fields[field]
    schema = model.model_json_schema()["properties"][field]
    kinds = [schema, *schema.get("anyOf", [])]
    optional = any(k.get("type") == "null" for k in kinds)
    enum = next((k["enum"] for k in kinds if "enum" in k), None)
    if enum is None and any(k.get("type") == "boolean" for k in kinds):
        enum = [True, False]
    if enum is not None:
        enum = ([""] if optional else []) + [argo_value(v) for v in enum]
    default = None if info.is_required() else argo_value(info.get_default(call_default_factory=True))
    text = (info.description or field).strip()
    return Spec(text + ("" if text.endswith(".") else "."),
                tuple(enum) if enum else None, default)


def param_spec(name: str, models: tuple) -> Spec:
    """The spec of ``name`` from the first of ``models`` (the steps that read it, first reader first)."""
    if name in ARGO_PARAMS:
        return ARGO_PARAMS[name]
    for source in models:
        if isinstance(source, tuple):  # (model, field, parameter name): a field under another name
            model, field, param = source
            if name != param:
                continue
        else:
            model, field = source, name
        if field in model.model_fields:
            return field_spec(model, field)
    raise KeyError(f"template parameter {name!r}: no step's Options declares it and it is not in ARGO_PARAMS")


def workflow_parameter(name: str, models: tuple, default: str | None = None) -> Parameter:
    """A WorkflowTemplate argument with its description and enum, for the Argo UI's form."""
    spec = param_spec(name, models)
    value = spec.default if default is None else default
    fields = {"value": value} if value is not None else {}  # no value: required at submission
    return Parameter(name=name, description=spec.description, enum=list(spec.enum) if spec.enum else None,
                     **fields)


def input_parameter(name: str, models: tuple = ()) -> Parameter:
    try:
        description = param_spec(name, models).description
    except KeyError:
        description = None
    return Parameter(name=name, description=description)


def from_workflow(*names: str) -> dict[str, str]:
    return {n: f"{{{{workflow.parameters.{n}}}}}" for n in names}


def from_inputs(*names: str) -> dict[str, str]:
    return {n: f"{{{{inputs.parameters.{n}}}}}" for n in names}


# --- Pods ----------------------------------------------------------------------------------------------
def _lustre_subpath(path: str) -> str:
    p = PurePosixPath(path)
    if PurePosixPath(LUSTRE_MOUNT) not in p.parents:
        raise ValueError(f"{path} must lie under {LUSTRE_MOUNT} (mounted from the node)")
    return str(p.relative_to(LUSTRE_MOUNT))


def site_nodes(site: config.SiteConfig) -> list[str]:
    """Every node of the site (node map and dynamic pool): they mount Lustre and NVMe."""
    return sorted(set(site.node_map.values()) | set(site.dynamic_pool))


def volumes() -> list[m.Volume]:
    """hostPath NVMe and Lustre (type Directory: a missing mount fails the pod, never writes root disk)."""
    return [
        m.Volume(name="fast", host_path=m.HostPathVolumeSource(path=NVME_MOUNT, type="Directory")),
        m.Volume(name="lustre", host_path=m.HostPathVolumeSource(path=LUSTRE_MOUNT, type="Directory")),
        m.Volume(name="tmp", empty_dir=m.EmptyDirVolumeSource()),
        m.Volume(name="site-config", config_map=m.ConfigMapVolumeSource(
            name=SITE_CONFIGMAP, items=[m.KeyToPath(key=SITE_CONFIG_KEY, path=SITE_CONFIG_KEY)])),
    ]


def volume_mounts(on_node: bool) -> list[m.VolumeMount]:
    """Lustre read-only with the archive and run folders writable; NVMe only for pods pinned to a node."""
    site = config.site()
    mounts = [
        m.VolumeMount(name="lustre", mount_path=LUSTRE_MOUNT, read_only=True),
        m.VolumeMount(name="lustre", mount_path=site.runs_root, sub_path=_lustre_subpath(site.runs_root)),
        m.VolumeMount(name="tmp", mount_path="/tmp"),
        m.VolumeMount(name="site-config", mount_path=SITE_CONFIG_DIR, read_only=True),
    ]
    if on_node:
        mounts[2:2] = [
            m.VolumeMount(name="lustre", mount_path=site.archive_root, sub_path=_lustre_subpath(site.archive_root)),
            m.VolumeMount(name="fast", mount_path=NVME_MOUNT),
        ]
    return mounts


def pod_volumes(on_node: bool) -> list[m.Volume]:
    return [v for v in volumes() if on_node or v.name != "fast"]


def env() -> list[m.EnvVar]:
    return [m.EnvVar(name="ORCA_CONFIG", value=f"{SITE_CONFIG_DIR}/{SITE_CONFIG_KEY}"),
            m.EnvVar(name="HOME", value="/tmp"),
            m.EnvVar(name="MPLCONFIGDIR", value="/tmp/matplotlib"),
            m.EnvVar(name="PYTHONDONTWRITEBYTECODE", value="1")]


def container_security() -> m.SecurityContext:
    return m.SecurityContext(run_as_non_root=True, read_only_root_filesystem=True,
                             allow_privilege_escalation=False, capabilities=m.Capabilities(drop=["ALL"]))


def pod_security() -> m.PodSecurityContext:
    return m.PodSecurityContext(run_as_non_root=True, run_as_user=RUN_AS_USER, run_as_group=RUN_AS_USER,
                                seccomp_profile=m.SeccompProfile(type="RuntimeDefault"))


def workflow_settings() -> dict:
    """Settings of every WorkflowTemplate: service account, pod security, pod GC, TTL."""
    return dict(service_account_name=SERVICE_ACCOUNT, security_context=pod_security(),
                pod_gc=m.PodGC(strategy="OnPodSuccess"),
                ttl_strategy=m.TTLStrategy(seconds_after_success=3 * 86400, seconds_after_failure=14 * 86400))


def resources(kind: str) -> m.ResourceRequirements:
    spec = resource_table()[kind]
    return m.ResourceRequirements(requests={k: m.Quantity(v) for k, v in spec["requests"].items()},
                                  limits={k: m.Quantity(v) for k, v in spec["limits"].items()})


UNIT_LABELS = {"orca/subband": "subband", "orca/obs-date": "obs_date", "orca/lst": "lst_label",
               "orca/run-label": "run_label"}


def unit_labels(source: str = "inputs") -> dict[str, str]:
    return {k: f"{{{{{source}.parameters.{v}}}}}" for k, v in UNIT_LABELS.items()}


def step_args(step: str, flags: dict[str, str], outputs: bool = True) -> list[str]:
    """``orca-step <step> --flag value ...`` (+ result files under OUTPUTS_DIR)."""
    args = [step]
    for flag, value in flags.items():
        args += [f"--{flag}", value]
    if outputs:
        args += ["--result-file", f"{OUTPUTS_DIR}/result.json", "--outputs-dir", OUTPUTS_DIR]
    return args


def output_parameters(*names: str, global_names: dict[str, str] | None = None) -> list[Parameter]:
    global_names = global_names or {}
    return [Parameter(name=n, value_from=m.ValueFrom(path=f"{OUTPUTS_DIR}/{n}"), global_name=global_names.get(n))
            for n in names]


# --- Prometheus metrics (Argo template metrics), labelled by subband and LST hour -----------------
UNIT_METRIC_LABELS = {"subband": "{{inputs.parameters.subband}}", "lst": "{{inputs.parameters.lst_label}}"}


def _labels(**extra: str) -> list[m.MetricLabel]:
    return [m.MetricLabel(key=k, value=v) for k, v in {**UNIT_METRIC_LABELS, **extra}.items()]


def step_duration_metric(step: str) -> m.Prometheus:
    """Wall seconds of one step pod of one unit, whatever its outcome."""
    return m.Prometheus(name="orca_step_duration_seconds", help="Duration of an orca step pod (seconds)",
                        labels=_labels(step=step, status="{{status}}"),
                        gauge=m.Gauge(value="{{duration}}", realtime=False))


def ms_dropped_metric() -> m.Prometheus:
    """MS of the hour lost in Phase 1 (collect-ms knows expected and prepared)."""
    return m.Prometheus(name="orca_ms_dropped", help="MS of a subband-hour whose Phase 1 failed",
                        labels=_labels(), when="{{status}} == Succeeded",
                        gauge=m.Gauge(value="{{outputs.parameters.n_dropped}}", realtime=False))


def unit_outcome_metric() -> m.Prometheus:
    """One count per finished subband-hour, by outcome (the hour's Argo status)."""
    return m.Prometheus(name="orca_unit_outcome_total", help="Finished subband-hours by outcome",
                        labels=_labels(outcome="{{inputs.parameters.status}}"), counter=m.Counter(value="1"))


RESOURCES_LABEL = "orca/resources"  # the key of resource_table a pod asks for (the chart reads it)


def orca_step(name: str, step: str, flags: dict[str, str], inputs: list[str], outputs: list[str] = (),
              on_node: bool = False, kind: str = "small", deadline: int = SMALL_DEADLINE_S,
              retry: m.RetryStrategy | None = None, labels: bool = True, metrics: list[m.Prometheus] = (),
              models: tuple = (), **extra) -> Container:
    """A container template running one ``orca-step``; ``on_node`` pins it to ``{{inputs.parameters.node}}``.

    A unit's steps (``labels``) report their duration to Prometheus, labelled by subband and LST hour;
    ``models`` describe the inputs (see ``param_spec``)."""
    return Container(
        name=name, image=image(), command=["orca-step"], args=step_args(step, flags),
        inputs=[input_parameter(n, models) for n in inputs], outputs=output_parameters(*outputs) if outputs else None,
        env=env(), volume_mounts=volume_mounts(on_node), volumes=pod_volumes(on_node),
        security_context=container_security(), resources=resources(kind), active_deadline_seconds=deadline,
        node_selector={HOSTNAME_LABEL: "{{inputs.parameters.node}}"} if on_node else None,
        labels={**(unit_labels() if labels else {}), RESOURCES_LABEL: kind}, retry_strategy=retry,
        metrics=m.Metrics(prometheus=[step_duration_metric(name), *metrics]) if labels else None, **extra)


# orca-step's exit codes after which a retry cannot help (a refused input or unexpected error, a missing tool);
# a tool crash and a fault that may pass (a full disk) exit otherwise and are retried.
NO_RETRY_EXPRESSION = " && ".join(f"asInt(lastRetry.exitCode) != {code}" for code in NOT_RETRIED_EXIT_CODES)


def retry(limit: int, backoff: str = "30s") -> m.RetryStrategy:
    """Retries with exponential backoff, except after a refused input or a missing tool.

    Policy Always: Argo marks an evicted pod or a lost node Failed, not Error. No backoff.maxDuration:
    Argo counts it from the first attempt and makes it the retry pod's deadline (operator.go "Max duration
    limit exceeded"), which would cut a long retry short. Never with node anti-affinity: pinned pods would
    stay Pending.
    """
    return m.RetryStrategy(limit=m.IntOrString(limit), retry_policy="Always", expression=NO_RETRY_EXPRESSION,
                           backoff=m.Backoff(duration=backoff, factor=m.IntOrString(2)))


def with_pending_timeout(doc: dict) -> dict:
    """Add ``pendingTimeout`` to every pod template pinned to a node (Argo v4.1's Template.PendingTimeout,
    operator.go checkTemplateTimeouts); Hera 7.1's models come from Argo v4.0.5, which lacks it."""
    spec = doc["spec"].get("workflowSpec", doc["spec"])
    for template in spec.get("templates") or []:
        if "container" in template and HOSTNAME_LABEL in (template.get("nodeSelector") or {}):
            template["pendingTimeout"] = PENDING_TIMEOUT
    return doc


def node_lock() -> m.Synchronization:
    """One unit per node: a semaphore of limit 1 per node, from the orca-node-locks ConfigMap."""
    return m.Synchronization(semaphores=[m.SemaphoreRef(config_map_key_ref=m.ConfigMapKeySelector(
        name=NODE_LOCKS_CONFIGMAP, key="{{inputs.parameters.node}}"))])
