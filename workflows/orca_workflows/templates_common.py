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
BOOL = ["true", "false"]
PHASE1_DEADLINE_S = 3600
PHASE2_DEADLINE_S = 8 * 3600
SMALL_DEADLINE_S = 1800
# activeDeadlineSeconds counts only once a pod runs: a pod that cannot be scheduled (pinned to a missing,
# cordoned or full node) fails after this long Pending instead of holding its hour's node lock forever.
PENDING_TIMEOUT = "30m"
HOSTNAME_LABEL = "kubernetes.io/hostname"
# A failed unit never stops the others; Argo judges Failed and Error apart (WorkflowStep.ContinuesOn).
CONTINUE = m.ContinueOn(failed=True, error=True)


def resource_table() -> dict[str, dict]:
    """Pod resources by template (the chart's values.yaml is generated from this table).

    ``small`` is every bookkeeping pod; Phase 2 asks for the CPUs WSClean is told to use.
    """
    return {
        "small": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}},
        "prepare-ms": {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"memory": "4Gi"}},
        "process-subband": {"requests": {"cpu": str(config.site().wsclean_threads), "memory": "100Gi"},
                            "limits": {"memory": "115Gi"}},
    }


def image() -> str:
    """The step image; its tag is this package's version."""
    return f"{IMAGE_REPOSITORY}:{version('orca-argo')}"


# --- Parameters: seed names, descriptions, enums -----------------------------------------------------
@dataclass(frozen=True)
class Spec:
    description: str
    enum: tuple[str, ...] | None = None
    default: str | None = None  # None: required at submission


def _lst_labels() -> tuple[str, ...]:
    return tuple(config.lst_label(h) for h in range(24))


PARAMS: dict[str, Spec] = {
    # prepare_one_ms_task
    "src_ms": Spec("Source MS on Lustre: x.ms or x.ms.tar (the tar is preferred when both exist)."),
    "nvme_work_dir": Spec("NVMe work dir of the subband-hour; empty: <nvme_root>/<lst>/<date>/<run_label>/<sb>.",
                          default=""),
    "bp_table": Spec("Bandpass calibration table (CASA B Jones), e.g. .../73MHz.bandpass.B.flagged."),
    "xy_table": Spec("Cross-hand XY-phase table (CASA Xf Jones)."),
    "peel_sky": Spec("Peel bright sky sources (TTCal zest with sky_model).", tuple(BOOL), "false"),
    "peel_rfi": Spec("Peel ground RFI sources (TTCal zest with rfi_model).", tuple(BOOL), "false"),
    "sky_model": Spec("TTCal sky model JSON (needed when peel_sky is true).", default=""),
    "rfi_model": Spec("TTCal RFI model JSON (needed when peel_rfi is true).", default=""),
    # process_subband_task
    "ms_paths": Spec("MS for Phase 2: @file holding a JSON list (the Phase 1 outputs), or a JSON list."),
    "work_dir": Spec("NVMe work dir of the subband-hour (same as Phase 1)."),
    "subband": Spec("Subband label, e.g. 73MHz.", config.PROCESSED_SUBBANDS),
    "lst_label": Spec("LST hour label, e.g. 14h.", _lst_labels()),
    "obs_date": Spec("Observation date YYYY-MM-DD: the UTC date on which the LST hour starts; "
                     "'previous-night' for the last night that is over."),
    "run_label": Spec("Pipeline run label: path part and Kubernetes label ([A-Za-z0-9._-], at most 63)."),
    "hot_baselines": Spec("Run hot-baseline diagnostics and flag what they find.", tuple(BOOL), "false"),
    "skip_cleanup": Spec("Keep intermediate files (the concat MS) on NVMe.", tuple(BOOL), "false"),
    "cleanup_nvme": Spec("Remove the whole NVMe work dir after archiving (or after a failure).",
                         tuple(BOOL), "false"),
    "targets": Spec("Target-list files for photometry: comma-separated paths or a JSON list; empty: none.",
                    default=""),
    "catalog": Spec("BDSF catalogue for transient-search masking; empty: none.", default=""),
    "clean_snapshots": Spec("Also make CLEANed Stokes-I snapshots (always fpacked).", tuple(BOOL), "false"),
    "clean_reduced_pixels": Spec("Scale clean-snapshot pixels by subband frequency.", tuple(BOOL), "false"),
    "reduced_pixels": Spec("Scale image pixels by subband frequency (pixel tiers).", tuple(BOOL), "false"),
    "skip_science": Spec("Skip the science phases after primary-beam correction.", tuple(BOOL), "false"),
    "compress_snapshots": Spec("fpack-compress snapshot FITS.", tuple(BOOL), "false"),
    "snapshot_only": Spec("Only snapshots: clean_snapshots on, skip_science on, no cube.", tuple(BOOL), "false"),
    "archive_concat_ms": Spec("Archive the concatenated MS as well.", tuple(BOOL), "false"),
    "cube": Spec("Also make the spectral cube of I-Deep-Taper-Robust-0 (-channels-out nchan).", tuple(BOOL),
                 "false"),
    "cube_only": Spec("Only the cube: clean_snapshots off, skip_science on, archive_concat_ms on.", tuple(BOOL),
                      "false"),
    "cube_dewarp": Spec("Dewarp each cube channel with the MFS screen x (nu_MFS/nu)^2.", tuple(BOOL), "false"),
    # submit_subband_pipeline / _chained
    "ms_files": Spec("Source MS of the hour: @file with a JSON list, a JSON list or comma list; "
                     "empty: discover them from obs_date and lst_label.", default=""),
    "queue_override": Spec("Run on this node (kubernetes.io/hostname) instead of the node map's.", default=""),
    "hour_specs": Spec("orca's hour_specs: JSON list of {lst_label, obs_date, ms_files?}; "
                       "empty: every LST hour from lst_start to lst_end of obs_date.", default=""),
    "dynamic_run_label": Spec("Name of the dispatch queue; a rerun with the same name resumes it."),
    # ours
    "node": Spec("Node (kubernetes.io/hostname) whose NVMe holds the work dir."),
    "min_ms_fraction": Spec("Fail the hour only if fewer than this fraction of its MS survive Phase 1.",
                            default="0.5"),
    "sun_max_elevation_deg": Spec("Keep only integrations with the Sun below this elevation (deg).",
                                  default="-10"),
    "lst_start": Spec("First LST hour of the night (0-23).", tuple(str(h) for h in range(24)), "0"),
    "lst_end": Spec("LST hour to stop before (1-24, exclusive; ranges wrap, e.g. 22 to 2).",
                    tuple(str(h) for h in range(1, 25)), "24"),
}

# Night-level templates take several subbands under the seed's name.
NIGHT_PARAMS: dict[str, Spec] = {
    "subband": Spec("Subbands of the night: 'all', one label or comma-separated labels (e.g. 73MHz,78MHz); "
                    f"labels: {', '.join(config.PROCESSED_SUBBANDS)}.", default="all"),
}

# Where each seed parameter lives. Celery plumbing is replaced by Argo itself:
SEED_REPLACED = {
    "remaining_hours": "subband-hours runs the hours as a declarative chain of child workflows",
    "dynamic_run_label (on the per-hour tasks)": "subband-dispatch owns the queue; its units are plain hours",
}


def workflow_parameter(name: str, default: str | None = None, night: bool = False) -> Parameter:
    """A WorkflowTemplate argument with its description and enum, for the Argo UI's form."""
    spec = NIGHT_PARAMS[name] if night and name in NIGHT_PARAMS else PARAMS[name]
    value = spec.default if default is None else default
    fields = {"value": value} if value is not None else {}  # no value: required at submission
    return Parameter(name=name, description=spec.description, enum=list(spec.enum) if spec.enum else None,
                     **fields)


def input_parameter(name: str) -> Parameter:
    return Parameter(name=name, description=PARAMS[name].description if name in PARAMS else None)


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


def orca_step(name: str, step: str, flags: dict[str, str], inputs: list[str], outputs: list[str] = (),
              on_node: bool = False, kind: str = "small", deadline: int = SMALL_DEADLINE_S,
              retry: m.RetryStrategy | None = None, labels: bool = True, metrics: list[m.Prometheus] = (),
              **extra) -> Container:
    """A container template running one ``orca-step``; ``on_node`` pins it to ``{{inputs.parameters.node}}``.

    A unit's steps (``labels``) report their duration to Prometheus, labelled by subband and LST hour."""
    return Container(
        name=name, image=image(), command=["orca-step"], args=step_args(step, flags),
        inputs=[input_parameter(n) for n in inputs], outputs=output_parameters(*outputs) if outputs else None,
        env=env(), volume_mounts=volume_mounts(on_node), volumes=pod_volumes(on_node),
        security_context=container_security(), resources=resources(kind), active_deadline_seconds=deadline,
        node_selector={HOSTNAME_LABEL: "{{inputs.parameters.node}}"} if on_node else None,
        labels=unit_labels() if labels else None, retry_strategy=retry,
        metrics=m.Metrics(prometheus=[step_duration_metric(step), *metrics]) if labels else None, **extra)


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
