"""``orca-argo demo``: simulate a small night and run it through the chart's templates on this machine.

The night (2 subbands x 2 LST hours, a small array, a few integrations) is written where a cluster keeps
its inputs, under the local folder standing for ``/lustre``; ``/fast`` (NVMe) is another local folder.
The same rendered YAML as in the chart then runs twice: ``subband-hours`` (hours of a subband chained,
subbands in parallel, each on its node) and ``subband-dispatch`` (a pool of nodes taking units from one
queue), each with live progress and a final table of units, nodes, status, times and archive paths.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from orca_steps import config
from orca_steps.wsclean import short_hour_recipes

from .localrun import LocalRunner, final_table, units
from .localrun.progress import Progress
from .render import site_configmaps

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART_FILES = REPO_ROOT / "charts" / "orca-pipeline" / "files"

DEMO_DATE = "2025-06-15"
DEMO_SUBBANDS = ("73MHz", "78MHz")
DEMO_HOURS = (14, 15)
SIM_ROOT = "/lustre/pipeline/demo-sim"   # where the simulated night lies, as the pods see it


# The site as the demo runs it: the simulated inputs and references, this machine's cores, small all-sky
# images (one tier: a ~150 m core's beam sampled by 3-4 pixels) and recipes for hours of a few integrations.
DEMO_SITE = {"input_root": f"{SIM_ROOT}/input", "beam_model": f"{SIM_ROOT}/refs/beam.h5",
             "vlssr_catalog": f"{SIM_ROOT}/refs/vlssr_catalog.txt",
             "pixel_tiers": [{"max_mhz": 90, "size": 512, "scale_deg": 0.25}], "wsclean_threads": 2,
             "wsclean_recipes": short_hour_recipes().model_dump(mode="json")}


@dataclass
class DemoSite:
    """A local stand-in for the cluster: folders for /fast and /lustre, the ConfigMaps, the night."""
    out: Path
    fast: Path
    lustre: Path
    configmaps: Path
    site: config.SiteConfig
    subbands: tuple[str, ...]
    hours: tuple[int, ...]
    obs_date: str
    ms_paths: dict

    @property
    def volume_roots(self) -> dict[str, Path]:
        return {"/fast": self.fast, "/lustre": self.lustre}

    def local(self, container_path: str) -> Path:
        """The local file standing for a path on a node."""
        for root, local in sorted(self.volume_roots.items(), key=lambda kv: len(kv[0]), reverse=True):
            if container_path == root or container_path.startswith(root + "/"):
                return local / container_path[len(root):].lstrip("/")
        raise ValueError(f"{container_path} lies under neither /fast nor /lustre")

    def container(self, local_path: Path) -> str:
        """The path on a node of a local file under the /fast or /lustre folder."""
        local_path = Path(local_path).resolve()
        for root, local in self.volume_roots.items():
            if local_path == local or local in local_path.parents:
                return root + "/" + str(local_path.relative_to(local)) if local_path != local else root
        raise ValueError(f"{local_path} lies under neither local folder")

    @staticmethod
    def refs(subband: str | None = None) -> dict[str, str]:
        """Reference files of one subband, or (None) the night's tables holding every subband's window."""
        refs = f"{SIM_ROOT}/refs"
        name = subband or "night"
        return {"bp_table": f"{refs}/{name}.bandpass.B.flagged", "xy_table": f"{refs}/{name}.xyphase.Xf",
                "sky_model": f"{refs}/sources.json", "rfi_model": f"{refs}/rfi_ovro.json"}


def merge_caltables(demo: DemoSite) -> None:
    """One B and one Xf table for the night, one spectral window per subband, from the simulator's
    per-subband tables: a night's workflow takes one bp_table and one xy_table for all its subbands, and
    apply-calibration picks each MS's window by frequency."""
    from orca_steps.caltables import read_caltable, write_bandpass_table, write_xyphase_table
    tables = {kind: [read_caltable(demo.local(demo.refs(sb)[kind])) for sb in demo.subbands]
              for kind in ("bp_table", "xy_table")}
    windows = {kind: [w for t in ts for w in t.windows] for kind, ts in tables.items()}
    names = tables["bp_table"][0].antenna_names
    night = demo.refs(None)
    write_bandpass_table(demo.local(night["bp_table"]), [w.gains for w in windows["bp_table"]],
                         [w.freqs for w in windows["bp_table"]], names,
                         flags=[w.flags for w in windows["bp_table"]], overwrite=True)
    write_xyphase_table(demo.local(night["xy_table"]), [np.angle(w.gains[0, :, 0]) for w in windows["xy_table"]],
                        [w.freqs for w in windows["xy_table"]], names,
                        flags=[w.flags[0, :, 0] for w in windows["xy_table"]], overwrite=True)


def prepare_site(out: Path, subbands=DEMO_SUBBANDS, hours=DEMO_HOURS, obs_date: str = DEMO_DATE,
                 n_integrations: int = 3, n_antennas: int = 48, site_overrides: dict | None = None,
                 **sim) -> DemoSite:
    """Make the local folders, simulate the night under /lustre, write the ConfigMaps
    (the site config is this machine's, with the simulated inputs and ``site_overrides``)."""
    from orca_steps.sim import simulate_night
    out = Path(out).resolve()
    fast, lustre = out / "fast", out / "lustre"
    fast.mkdir(parents=True, exist_ok=True)
    lustre.mkdir(parents=True, exist_ok=True)
    site = config.SiteConfig(**{**config.site().model_dump(), **DEMO_SITE, **(site_overrides or {})})
    demo = DemoSite(out, fast, lustre, out / "configmaps.yaml", site, tuple(subbands), tuple(hours), obs_date, {})
    night = simulate_night(demo.local(SIM_ROOT), obs_date=obs_date, subbands=list(subbands), lst_hours=list(hours),
                           n_integrations=n_integrations, n_antennas=n_antennas, reference_catalogue=True, **sim)
    demo.ms_paths = {k: [demo.container(p) for p in v] for k, v in night.ms_paths.items()}
    merge_caltables(demo)
    demo.configmaps.write_text(yaml.safe_dump_all(site_configmaps(site), sort_keys=False))
    return demo


def run_workflow(demo: DemoSite, target: str, parameters: dict[str, str], name: str,
                 templates: Path = CHART_FILES, progress: str = "auto", stream=None):
    """Submit one WorkflowTemplate of the chart and wait for it (children included)."""
    runner = LocalRunner([templates, demo.configmaps], demo.out / "runs" / name, volume_roots=demo.volume_roots)
    workflow = runner.submit(target, parameters, generate_name=f"{target}-")
    display = None if progress == "off" else Progress(runner, stream or sys.stderr,
                                                      None if progress == "auto" else progress == "live")
    runner.wait(on_tick=display.tick if display else (lambda: None))
    return runner, workflow


def night_parameters(demo: DemoSite, run_label: str) -> dict[str, str]:
    """Parameters of subband-hours / subband-dispatch for the whole simulated night."""
    refs = demo.refs(None)
    return {"subband": ",".join(demo.subbands), "obs_date": demo.obs_date, "run_label": run_label,
            "lst_start": str(min(demo.hours)), "lst_end": str(max(demo.hours) + 1),
            "bp_table": refs["bp_table"], "xy_table": refs["xy_table"]}


def peeling() -> dict[str, str]:
    """The demo peels the A-team and the ground emitter with the simulator's TTCal models, as orca's nights do."""
    refs = DemoSite.refs(None)
    return {"peel_sky": "true", "peel_rfi": "true", "sky_model": refs["sky_model"], "rfi_model": refs["rfi_model"]}


def run_demo(out: Path, progress: str = "auto", templates: Path = CHART_FILES) -> int:
    """The README's main command. Each run has its own run labels, so a second run processes afresh."""
    if not templates.is_dir() or not list(templates.glob("*.yaml")):
        print(f"orca-argo demo: no rendered templates in {templates}: run `orca-argo render` first", file=sys.stderr)
        return 2
    t0 = time.time()
    stamp = time.strftime("%Y%m%dT%H%M%S")
    print(f"Simulating {len(DEMO_SUBBANDS)} subbands x {len(DEMO_HOURS)} LST hours of {DEMO_DATE} into {out} ...",
          file=sys.stderr)
    demo = prepare_site(out)
    print(f"  {sum(len(v) for v in demo.ms_paths.values())} MS under {demo.local(SIM_ROOT + '/input')} "
          f"({time.time() - t0:.0f} s)", file=sys.stderr)
    ok = True
    for target, extra in (("subband-hours", {}), ("subband-dispatch", {"dynamic_run_label": f"demo-{stamp}"})):
        label = f"demo-{stamp}-{target.split('-')[1]}"
        print(f"\n=== {target} (run_label {label}): the chart's YAML, pods as local processes ===", file=sys.stderr)
        runner, workflow = run_workflow(demo, target, {**night_parameters(demo, label), **peeling(), **extra},
                                        label, templates, progress)
        record = runner.record()
        dashboards = sorted(demo.local(demo.site.runs_root).glob(f"{label}/dashboard-*.html"))
        print(f"\n{target}: {workflow.phase}\n{final_table(record, Path.cwd())}\nrun record: {runner.record_path}\n"
              + "".join(f"night dashboard: {d}\n" for d in dashboards))
        ok = ok and workflow.phase == "Succeeded" and all(u.status == "Succeeded" for u in units(record))
    print(f"demo {'succeeded' if ok else 'FAILED'} in {time.time() - t0:.0f} s; /fast is {demo.fast}, "
          f"/lustre is {demo.lustre}")
    return 0 if ok else 1
