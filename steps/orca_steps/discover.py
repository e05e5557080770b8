"""Step ``discover``: turn a night (date, LST range, subbands) into (subband, LST hour) work units.

An LST hour of ``obs_date`` is the first UTC interval on or after ``obs_date`` 00:00 UTC in which the
local apparent sidereal time runs from ``h`` to ``h+1`` (the simulator uses the same definition). The
interval may cross UTC midnight, so its files can sit in two date folders. Labels are always 00h..23h:
an LST range is a list of whole hours (``lst_end`` exclusive, 24 means midnight, ranges wrap), never a
rounded sidereal time, so orca's 00-24 rounding bug cannot happen.

Input files live under ``<input_root>/<sb>/<YYYY-MM-DD>/<HH>/`` by UTC date and hour, named
``YYYYMMDD_HHMMSS_<sb>[_averaged].ms[.tar]`` (the time is the integration's start). When both ``x.ms``
and ``x.ms.tar`` exist the tar is listed. A Sun cut keeps only integrations whose mid-time has the Sun
below ``sun_max_elevation_deg``. Each unit's MS list is written to ``<list_dir>`` on shared storage, so
that Argo passes paths, never long lists.
"""
from __future__ import annotations

import logging
import re
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field

from . import config, coords
from .constants import mjd_seconds
from .copy_ms import compressed_tar_problem
from .errors import InputError
from .fileio import write_json
from .labels import check_obs_date, check_run_label, check_write_root, path_under
from .logs import get_logger, log, step_timer

_logger = get_logger("discover")
PREVIOUS_NIGHT = "previous-night"
NIGHT_END_UTC_HOURS = 15  # every OVRO night (Sun below -10 deg) is over by ~14:30 UTC
GRID_STEP_S = 60.0  # sidereal time and the Sun are interpolated on this grid
_NAME_RE = re.compile(r"^(\d{8}_\d{6})_(\d{2}MHz)(?:_[A-Za-z0-9]+)*\.ms(\.tar)?$")


# --- Time: LST and the Sun (coords), on a grid ---------------------------------------------------------
def _grid(start: datetime, hours: float, step_s: float = GRID_STEP_S):
    """UTC datetimes every ``step_s`` from ``start`` for ``hours`` (inclusive), and their offsets (s)."""
    offsets = np.arange(0.0, hours * 3600.0 + step_s / 2, step_s)
    return [start + timedelta(seconds=float(o)) for o in offsets], offsets


def _mjd_seconds(times: list[datetime]) -> np.ndarray:
    return np.array([mjd_seconds(t) for t in times])


@lru_cache(maxsize=64)
def _sun_over_hour(hour_start: datetime) -> np.ndarray:
    """The Sun's elevation every GRID_STEP_S through one UTC hour (computed once per hour, cached)."""
    return coords.sun_elevation_deg(_mjd_seconds(_grid(hour_start, 1.0)[0]))


def sun_elevation_fast(times: list[datetime]) -> np.ndarray:
    """The Sun's elevation (deg) at UTC datetimes, interpolated on a 60 s grid per UTC hour (error < 1e-3
    deg): many files, few hours."""
    out = np.empty(len(times))
    for i, t in enumerate(times):
        hour = t.replace(minute=0, second=0, microsecond=0)
        grid = _sun_over_hour(hour)
        out[i] = np.interp((t - hour).total_seconds(), np.arange(grid.size) * GRID_STEP_S, grid)
    return out


@lru_cache(maxsize=32)
def _lst_track(obs_date: str) -> tuple[datetime, np.ndarray, np.ndarray]:
    """Unwrapped LST (h) every GRID_STEP_S over 26 h from ``obs_date`` 00:00 UTC: computed once a night."""
    midnight = datetime.fromisoformat(obs_date).replace(tzinfo=timezone.utc)
    times, offsets = _grid(midnight, 26.0)
    lst = np.unwrap(coords.local_sidereal_hours(_mjd_seconds(times)) * (np.pi / 12)) * (12 / np.pi)
    return midnight, offsets, lst


def parse_obs_date(text: str, now: datetime | None = None) -> str:
    """``YYYY-MM-DD``, or ``previous-night``: the last night that is over (UTC date of now - 15 h)."""
    if text == PREVIOUS_NIGHT:
        now = now or datetime.now(timezone.utc)
        return (now - timedelta(hours=NIGHT_END_UTC_HOURS)).date().isoformat()
    return check_obs_date(text)


def lst_hours_in_range(lst_start: int, lst_end: int) -> list[int]:
    """Whole LST hours from ``lst_start`` up to (not including) ``lst_end``; wraps; 24 is midnight."""
    if not 0 <= lst_start <= 23 or not 0 <= lst_end <= 24:
        raise InputError(f"LST range {lst_start}..{lst_end} is malformed: start 0..23, end 0..24 (exclusive)")
    if lst_start == lst_end:
        raise InputError(f"LST range {lst_start}..{lst_end} is empty: lst_end is exclusive (use {lst_start + 1})")
    n = (lst_end - lst_start) % 24 or 24
    return [(lst_start + k) % 24 for k in range(n)]


def lst_interval(obs_date: str, hour: int) -> tuple[datetime, datetime]:
    """UTC [start, end) of LST hour ``hour``: its first occurrence on or after ``obs_date`` 00:00 UTC.

    Sidereal time is smooth, so interpolating it on a 60 s grid places the boundaries to well under 1 ms.
    """
    midnight, offsets, lst = _lst_track(parse_obs_date(obs_date))
    target = hour % 24 + 24.0 * np.ceil((lst[0] - hour % 24) / 24.0)  # first LST == hour at or after midnight
    start, end = np.interp([target, target + 1.0], lst, offsets)
    return midnight + timedelta(seconds=float(start)), midnight + timedelta(seconds=float(end))


# --- Files -------------------------------------------------------------------------------------------
def file_start_time(path: str | Path) -> datetime:
    """UTC start of the integration, from ``YYYYMMDD_HHMMSS_<sb>...`` in the name."""
    m = _NAME_RE.match(Path(path).name)
    if not m:
        raise InputError(f"{path}: name is not YYYYMMDD_HHMMSS_<sb>[_averaged].ms[.tar]")
    return _stamp_time(m.group(1))


def file_subband(path: str | Path) -> str:
    """The subband label in ``YYYYMMDD_HHMMSS_<sb>...`` (``73MHz`` in ``..._73MHz.ms`` and ``..._73MHz_averaged.ms``)."""
    m = _NAME_RE.match(Path(path).name)
    if not m:
        raise InputError(f"{path}: name is not YYYYMMDD_HHMMSS_<sb>[_averaged].ms[.tar]")
    return m.group(2)


def _stamp_time(stamp: str) -> datetime:
    """``YYYYMMDD_HHMMSS`` as a UTC datetime (strptime is slow for tens of thousands of names)."""
    return datetime(int(stamp[:4]), int(stamp[4:6]), int(stamp[6:8]), int(stamp[9:11]), int(stamp[11:13]),
                    int(stamp[13:15]), tzinfo=timezone.utc)


def list_input_files(input_root: str | Path, subband: str, start: datetime,
                     end: datetime) -> tuple[list[Path], list[str]]:
    """MS (or their tars) of ``subband`` whose start time is in [start, end), in time order; and the
    entries of the folders searched whose names are not such inputs ("<path>: <problem>"), which are
    reported, never silently dropped (hidden files aside)."""
    config.check_subband(subband)
    found: dict[str, Path] = {}
    unrecognised: list[str] = []
    hour = start.replace(minute=0, second=0, microsecond=0)
    while hour < end:
        folder = Path(input_root) / subband / f"{hour:%Y-%m-%d}" / f"{hour:%H}"
        if folder.is_dir():
            for entry in folder.iterdir():
                m = _NAME_RE.match(entry.name)
                if not m or m.group(2) != subband:
                    if not entry.name.startswith("."):
                        unrecognised.append(f"{entry}: {name_problem(entry.name, subband)}")
                    continue
                if not start <= _stamp_time(m.group(1)) < end:
                    continue
                if m.group(3) and not entry.is_file() or not m.group(3) and not entry.is_dir():
                    raise InputError(f"{entry}: expected {'a tar file' if m.group(3) else 'an MS directory'}")
                stem = entry.name.removesuffix(".tar")
                if m.group(3) or stem not in found:  # the tar wins, as in orca
                    found[stem] = entry
        hour += timedelta(hours=1)
    return [found[k] for k in sorted(found)], sorted(unrecognised)


def name_problem(name: str, subband: str) -> str:
    """Why ``name`` is not an input of ``subband``, for the report."""
    compressed = compressed_tar_problem(name)
    if compressed:
        return compressed
    m = _NAME_RE.match(name)
    if m:
        return f"a {m.group(2)} file in the {subband} folder"
    return "name is not YYYYMMDD_HHMMSS_<sb>[_averaged].ms[.tar]"


def sun_cut(paths: list[Path], max_elevation_deg: float) -> tuple[list[Path], list[Path]]:
    """(kept, dropped): keep integrations whose mid-time has the Sun below ``max_elevation_deg``."""
    mids = [file_start_time(p) + timedelta(seconds=config.INTEGRATION_S / 2) for p in paths]
    night = sun_elevation_fast(mids) < max_elevation_deg
    return [p for p, k in zip(paths, night) if k], [p for p, k in zip(paths, night) if not k]


def check_ms_files(paths: list[str]) -> list[str]:
    """Given MS paths must exist (as an MS directory or a tar); returns them unchanged."""
    for p in paths:
        problem = compressed_tar_problem(Path(p).name)
        if problem:
            raise InputError(f"{p}: {problem}")
    missing = [p for p in paths if not (Path(p).exists() or Path(p + ".tar").is_file())]
    if missing:
        raise InputError(f"{len(missing)} given MS do not exist, e.g. {missing[0]}")
    return paths


# --- Units -------------------------------------------------------------------------------------------
class WorkUnit(BaseModel):
    """One (subband, LST hour) of one night: what a subband-pipeline run processes."""
    id: str
    subband: str
    lst_label: str
    obs_date: str
    node: str
    work_dir: str
    ms_list_file: str
    n_ms: int
    n_daylight: int = Field(0, description="integrations dropped by the Sun cut")
    utc_start: str = ""
    utc_end: str = ""
    unrecognised: list[str] = Field(default_factory=list, description=(
        "files in the unit's input folders not named as inputs of its subband: '<path>: <problem>'"))


class HourSpec(BaseModel):
    """orca's ``hour_specs`` entry: one hour of a chain, optionally with its MS list."""
    lst_label: str
    obs_date: str
    ms_files: list[str] = Field(default_factory=list)


def known_nodes(site: config.SiteConfig) -> list[str]:
    return sorted(set(site.node_map.values()) | set(site.dynamic_pool))


def resolve_node(site: config.SiteConfig, subband: str, queue_override: str = "") -> str:
    """The subband's node from the node map, or ``queue_override`` if it names a known node."""
    if queue_override:
        if queue_override not in known_nodes(site):
            raise InputError(f"queue_override {queue_override!r} is not a known node: {', '.join(known_nodes(site))}")
        return queue_override
    return site.node_for(subband)


def expand_subbands(subbands: list[str]) -> list[str]:
    """Subband labels, or ['all']; an empty list is a mistake (an unset parameter), never 'all 15'."""
    if not subbands:
        raise InputError("subbands is empty: give subband labels (e.g. 73MHz,78MHz) or 'all'")
    if subbands == ["all"]:
        return list(config.PROCESSED_SUBBANDS)
    for sb in subbands:
        config.check_subband(sb)
        if sb in config.UNUSABLE_SUBBANDS:
            raise InputError(f"subband {sb} is not processed (unusable)")
    return list(dict.fromkeys(subbands))


def unit_id(subband: str, lst: str, obs_date: str) -> str:
    return f"{subband}_{lst}_{obs_date}"


def make_unit(site: config.SiteConfig, subband: str, hour: int, obs_date: str, run_label: str, list_dir: Path,
              input_root: str, sun_max_elevation_deg: float, ms_files: list[str] | None = None,
              queue_override: str = "", nvme_work_dir: str = "") -> tuple[WorkUnit, list[str]]:
    """One unit and its MS list (given, or listed and Sun-cut); writes the list file."""
    lst = config.lst_label(hour)
    start, end = lst_interval(obs_date, hour)
    dropped: list[Path] = []
    unrecognised: list[str] = []
    if ms_files:
        paths = check_ms_files([str(p) for p in ms_files])
    else:
        listed, unrecognised = list_input_files(input_root, subband, start, end)
        kept, dropped = sun_cut(listed, sun_max_elevation_deg)
        paths = [str(p) for p in kept]
    uid = unit_id(subband, lst, obs_date)
    list_file = list_dir / f"{uid}.json"
    if paths:
        write_json(list_file, paths)
    unit = WorkUnit(id=uid, subband=subband, lst_label=lst, obs_date=obs_date,
                    node=resolve_node(site, subband, queue_override),
                    work_dir=nvme_work_dir or config.work_dir(site.nvme_root, lst, obs_date, run_label, subband),
                    ms_list_file=str(list_file), n_ms=len(paths), n_daylight=len(dropped), unrecognised=unrecognised,
                    utc_start=start.isoformat(timespec="seconds"), utc_end=end.isoformat(timespec="seconds"))
    return unit, paths


def default_list_dir(site: config.SiteConfig, run_label: str) -> Path:
    return path_under(site.runs_root, check_run_label(run_label), "units")


class Options(BaseModel):
    obs_date: str = Field(description="night to process: YYYY-MM-DD (UTC date on which its LST hours start) "
                          f"or '{PREVIOUS_NIGHT}'")
    lst_start: int = Field(0, description="first LST hour (0-23)", json_schema_extra={"enum": list(range(24))})
    lst_end: int = Field(24, description="LST hour to stop before (1-24, exclusive; wraps, e.g. 22 -> 2)",
                         json_schema_extra={"enum": list(range(1, 25))})
    subbands: list[str] = Field(default_factory=lambda: ["all"], description="subband labels, or 'all'")
    hour_specs: list[HourSpec] = Field(default_factory=list,
                                       description="orca's hour_specs: [{lst_label, obs_date, ms_files?}]; "
                                                   "replaces obs_date and the LST range when given")
    run_label: str = Field(description="pipeline run label (path part and Kubernetes label)")
    queue_override: str = Field("", description="run every unit on this node instead of the node map's")
    sun_max_elevation_deg: float = Field(-10.0, description="keep integrations with the Sun below this elevation")
    input_root: str = Field("", description="input tree root (default: the site's input_root)")
    list_dir: str = Field("", description="where MS list files go (default: <runs_root>/<run_label>/units)")
    dynamic_run_label: str = Field("", description="also create (or resume) the dispatch queue of this name")


class Result(BaseModel):
    obs_date: str
    units: list[WorkUnit]
    chains: list[dict] = Field(description="per subband: {subband, node, hours_file}; hours_file holds "
                                           "[{subband, lst_label, obs_date, ms_list_file}] (read by chain-hours)")
    pool: list[str] = Field(description="the site's dynamic pool (dispatch workers)")
    skipped: list[dict] = Field(description="(subband, hour) without any night-time MS, and why")
    unrecognised: list[str] = Field(default_factory=list, description=(
        "files in the input folders searched that are not named YYYYMMDD_HHMMSS_<sb>[_averaged].ms[.tar], "
        "'<path>: <problem>' (not used)"))
    list_dir: str
    queue_file: str
    n_units: int
    n_ms: int


def discover(options: Options, site: config.SiteConfig | None = None) -> Result:
    """All work units of a night, their MS list files, per-subband chains and (optionally) the queue."""
    site = site or config.site()
    run_label = check_run_label(options.run_label, "run_label")
    subbands = expand_subbands(options.subbands)
    obs_date = parse_obs_date(options.obs_date)
    if options.hour_specs:
        specs = [HourSpec(lst_label=config.lst_label(config.parse_lst_label(s.lst_label)),
                          obs_date=parse_obs_date(s.obs_date), ms_files=s.ms_files) for s in options.hour_specs]
        if any(s.ms_files for s in specs) and len(subbands) != 1:
            raise InputError("hour_specs with ms_files need exactly one subband")
    else:
        specs = [HourSpec(lst_label=config.lst_label(h), obs_date=obs_date)
                 for h in lst_hours_in_range(options.lst_start, options.lst_end)]
    list_dir = (Path(check_write_root(options.list_dir, "list_dir")) if options.list_dir
                else default_list_dir(site, run_label))
    input_root = options.input_root or site.input_root
    units, skipped, unrecognised = [], [], []
    for sb in subbands:
        for spec in specs:
            unit, _ = make_unit(site, sb, config.parse_lst_label(spec.lst_label), spec.obs_date, run_label,
                                list_dir, input_root, options.sun_max_elevation_deg, spec.ms_files,
                                options.queue_override)
            unrecognised += [u for u in unit.unrecognised if u not in unrecognised]  # folders shared by hours
            if unit.n_ms:
                units.append(unit)
            else:
                reason = "all integrations in daylight" if unit.n_daylight else "no input files"
                if unit.unrecognised:
                    reason += f" ({len(unit.unrecognised)} files with unrecognised names)"
                skipped.append({"subband": sb, "lst_label": spec.lst_label, "obs_date": spec.obs_date,
                                "reason": reason})
    chains = []
    for sb in subbands:
        # subband too: it names each hour's loop node, from which run-report reads a failed unit
        hours = [{"subband": u.subband, "lst_label": u.lst_label, "obs_date": u.obs_date,
                  "ms_list_file": u.ms_list_file}
                 for u in units if u.subband == sb]
        if hours:   # in a file: Argo names loop nodes after every field of their item (see chain_hours)
            hours_file = write_json(list_dir / f"{sb}_{obs_date}_chain.json", hours)
            chains.append({"subband": sb, "node": resolve_node(site, sb, options.queue_override),
                           "hours_file": str(hours_file)})
    log(_logger, "night discovered", obs_date=obs_date, units=len(units), ms=sum(u.n_ms for u in units),
        skipped=len(skipped))
    if unrecognised:
        log(_logger, "files with unrecognised names were not used", logging.WARNING, count=len(unrecognised),
            first=unrecognised[:5])
    queue_file = ""
    if options.dynamic_run_label:
        from .work_queue import create_or_resume, queue_path

        label = check_run_label(options.dynamic_run_label, "dynamic_run_label")
        queue_file = str(create_or_resume(queue_path(site, label), label, units))
    return Result(obs_date=obs_date, units=units, chains=chains, pool=list(site.dynamic_pool), skipped=skipped,
                  unrecognised=unrecognised,
                  list_dir=str(list_dir), queue_file=queue_file, n_units=len(units),
                  n_ms=sum(u.n_ms for u in units))


def run(options: Options) -> Result:
    with step_timer("discover", obs_date=options.obs_date):
        return discover(options)
