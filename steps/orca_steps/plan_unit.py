"""Step ``plan-unit``: resolve one (subband, LST hour) before its pods start.

It answers what Argo must know before it can pin pods: the node (the node map's, or
``queue_override``), the NVMe work dir and the MS list (given, or discovered and Sun-cut). It runs
on any node and writes the MS list to shared storage.
"""
from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field

from . import config
from .discover import default_list_dir, make_unit, parse_obs_date
from .errors import InputError
from .labels import LstLabel, Subband, check_run_label, check_write_root
from .logs import step_timer


class Options(BaseModel):
    subband: Subband = Field(description="subband label, e.g. 73MHz")
    lst_label: LstLabel = Field(description="LST hour label, e.g. 14h")
    obs_date: str = Field(description="YYYY-MM-DD (UTC date on which the LST hour starts) or 'previous-night'")
    run_label: str = Field(description="pipeline run label")
    ms_files: list[str] = Field(default_factory=list, description="MS to process; empty: discover them")
    queue_override: str = Field("", description="run on this node instead of the node map's")
    nvme_work_dir: str = Field("", description="NVMe work dir (default <nvme_root>/<lst>/<date>/<run_label>/<sb>)")
    sun_max_elevation_deg: float = Field(-10.0, description="Sun cut for discovered MS")
    input_root: str = Field("", description="input tree root (default: the site's)")
    list_dir: str = Field("", description="where the MS list file goes (default <runs_root>/<run_label>/units)")


class Result(BaseModel):
    node: str
    work_dir: str
    ms_files: list[str]
    ms_list_file: str
    n_ms: int
    obs_date: str
    utc_start: str
    utc_end: str


def plan_unit(options: Options, site: config.SiteConfig | None = None) -> Result:
    site = site or config.site()
    run_label = check_run_label(options.run_label, "run_label")
    if options.nvme_work_dir:
        check_write_root(options.nvme_work_dir, "nvme_work_dir")
    subband = config.check_subband(options.subband)
    hour = config.parse_lst_label(options.lst_label)
    obs_date = parse_obs_date(options.obs_date)
    list_dir = (Path(check_write_root(options.list_dir, "list_dir")) if options.list_dir
                else default_list_dir(site, run_label))
    unit, paths = make_unit(site, subband, hour, obs_date, run_label, list_dir,
                            options.input_root or site.input_root, options.sun_max_elevation_deg,
                            options.ms_files, options.queue_override, options.nvme_work_dir)
    if not paths:
        why = f"all {unit.n_daylight} integrations are in daylight" if unit.n_daylight else "no input files"
        raise InputError(f"{subband} {unit.lst_label} of {obs_date} ({unit.utc_start} to {unit.utc_end} UTC) "
                         f"has nothing to process under {options.input_root or site.input_root}: {why}")
    return Result(node=unit.node, work_dir=unit.work_dir, ms_files=paths, ms_list_file=unit.ms_list_file,
                  n_ms=unit.n_ms, obs_date=obs_date, utc_start=unit.utc_start, utc_end=unit.utc_end)


def run(options: Options) -> Result:
    with step_timer("plan-unit", subband=options.subband, lst=options.lst_label):
        return plan_unit(options)
