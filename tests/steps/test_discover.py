"""discover and plan-unit: LST hours (wrap, 00-24, UTC midnight), input listing, Sun cut, units.

Sidereal time and the Sun are checked against astropy, independently of the casacore measures discover uses.
"""
import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pytest

from orca_steps import chain_hours, config
from orca_steps import discover as d
from orca_steps.constants import SIDEREAL_RATE
from orca_steps.errors import InputError
from orca_steps.labels import check_run_label
from orca_steps.plan_unit import Options as PlanOptions
from orca_steps.plan_unit import plan_unit
from orca_steps.sim import geometry as simgeo
from orca_steps.sim.geometry import local_sidereal_hours
from orca_steps.sim.night import lst_hour_start, mjd_seconds, utc_of

SIDEREAL_HOUR_S = 3600.0 / SIDEREAL_RATE  # 3590.17 s
UTC = timezone.utc


def astropy_lst(t: datetime) -> float:
    return local_sidereal_hours(mjd_seconds(t.replace(tzinfo=None)))  # the simulator's astropy geometry


def astropy_sun_elevation_deg(t: datetime) -> float:
    _, coordinates, _ = simgeo._astropy()  # IERS tables offline
    when, site = simgeo._time(mjd_seconds(t.replace(tzinfo=None))), simgeo._site()
    sun = coordinates.get_body("sun", when, site)
    return float(sun.transform_to(coordinates.AltAz(obstime=when, location=site)).alt.deg)


def make_files(root, subband, times, tar=False):
    """Empty stand-ins named like the real tree (discover only reads names and kinds)."""
    paths = []
    for t in times:
        folder = root / subband / f"{t:%Y-%m-%d}" / f"{t:%H}"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{t:%Y%m%d_%H%M%S}_{subband}_averaged.ms"
        if tar:
            path = path.with_name(path.name + ".tar")
            path.write_bytes(b"")
        else:
            path.mkdir()
        paths.append(path)
    return paths


def site_for(tmp_path, **over):
    return config.SiteConfig(input_root=str(tmp_path / "input"), runs_root=str(tmp_path / "runs"),
                             **over)


# --- LST hours ------------------------------------------------------------------------------------------
def test_lst_range_wraps_and_never_labels_24h():
    assert d.lst_hours_in_range(14, 16) == [14, 15]
    assert d.lst_hours_in_range(22, 2) == [22, 23, 0, 1]
    assert d.lst_hours_in_range(23, 24) == [23]
    assert d.lst_hours_in_range(23, 0) == [23]
    full = d.lst_hours_in_range(0, 24)
    assert full == list(range(24))
    assert [config.lst_label(h) for h in full][-1] == "23h" and "24h" not in map(config.lst_label, full)
    for bad in ((5, 5), (24, 2), (-1, 3), (3, 25)):
        with pytest.raises(InputError, match="LST range"):
            d.lst_hours_in_range(*bad)


@pytest.mark.parametrize("hour", [0, 9, 14, 23])
def test_lst_interval_is_one_sidereal_hour_at_the_right_lst(hour):
    start, end = d.lst_interval("2025-06-15", hour)
    assert (end - start).total_seconds() == pytest.approx(SIDEREAL_HOUR_S, abs=0.5)
    assert datetime(2025, 6, 15, tzinfo=UTC) <= start < datetime(2025, 6, 15, 23, 57, tzinfo=UTC)
    # astropy, independently: LST is `hour` at the start and hour+1 (mod 24) at the end, within 0.5 s
    assert ((astropy_lst(start) - hour + 12) % 24 - 12) == pytest.approx(0, abs=0.5 / 3600)
    assert ((astropy_lst(end) - (hour + 1) + 12) % 24 - 12) == pytest.approx(0, abs=0.5 / 3600)
    # the simulator places its integrations with the same definition
    assert (start - utc_of(lst_hour_start("2025-06-15", hour))).total_seconds() == pytest.approx(0, abs=1.0)


def test_23h_ends_where_00h_begins_no_rounding_to_24():
    s23, e23 = d.lst_interval("2025-06-15", 23)
    s00, e00 = d.lst_interval("2025-06-15", 0)
    assert abs((e23 - s00).total_seconds()) < 0.01  # 23h runs up to LST 24 = 0 and 00h starts there
    assert ((astropy_lst(e23) + 12) % 24 - 12) == pytest.approx(0, abs=0.5 / 3600)


def test_integrations_either_side_of_lst_midnight_go_to_23h_and_00h(tmp_path):
    site = site_for(tmp_path, node_map={"73MHz": "node-a"})
    boundary = d.lst_interval("2025-06-15", 0)[0]
    before, after = boundary - timedelta(seconds=20), boundary + timedelta(seconds=20)
    make_files(tmp_path / "input", "73MHz", [before, after])
    out = d.discover(d.Options(obs_date="2025-06-15", lst_start=23, lst_end=1, subbands=["73MHz"],
                               run_label="t", sun_max_elevation_deg=90), site)
    lists = {u.lst_label: json.loads(open(u.ms_list_file).read()) for u in out.units}
    assert sorted(lists) == ["00h", "23h"]
    assert [p.split("/")[-1][:15] for p in lists["23h"]] == [f"{before:%Y%m%d_%H%M%S}"]
    assert [p.split("/")[-1][:15] for p in lists["00h"]] == [f"{after:%Y%m%d_%H%M%S}"]


def test_lst_hour_across_utc_midnight_lists_both_date_folders(tmp_path):
    start, end = d.lst_interval("2025-06-15", 9)  # 23:15 UTC on the 15th to 00:15 UTC on the 16th
    assert start.date().isoformat() == "2025-06-15" and end.date().isoformat() == "2025-06-16"
    inside = [start + timedelta(seconds=5), start + timedelta(minutes=40), end - timedelta(seconds=30)]
    outside = [start - timedelta(seconds=30), end + timedelta(seconds=5)]
    make_files(tmp_path / "input", "73MHz", inside + outside)
    files, _ = d.list_input_files(tmp_path / "input", "73MHz", start, end)
    assert [p.name[:15] for p in files] == [f"{t:%Y%m%d_%H%M%S}" for t in inside]
    assert {p.parent.parent.name for p in files} == {"2025-06-15", "2025-06-16"}


def test_tar_is_preferred_and_other_names_are_reported(tmp_path):
    start, end = d.lst_interval("2025-06-15", 15)
    t = start + timedelta(minutes=10)
    (ms,) = make_files(tmp_path / "input", "73MHz", [t])
    (tar,) = make_files(tmp_path / "input", "73MHz", [t], tar=True)
    make_files(tmp_path / "input", "73MHz", [t + timedelta(minutes=1)])
    (ms.parent / "notes.txt").write_text("x")
    (ms.parent / f"{t:%Y%m%d_%H%M%S}_78MHz_averaged.ms").mkdir()  # another subband in the wrong folder
    (ms.parent / f"{t:%Y%m%d_%H%M%S}_73MHz_averaged.ms.tar.gz").write_bytes(b"x")
    (ms.parent / f"{t:%Y-%m-%dT%H:%M:%S}_73MHz.ms").mkdir()
    (ms.parent / ".nfs0001").write_text("")  # hidden: not reported
    files, unrecognised = d.list_input_files(tmp_path / "input", "73MHz", start, end)
    assert files[0] == tar and len(files) == 2 and files[1].suffix == ".ms"
    folder = ms.parent
    assert unrecognised == sorted([
        f"{folder}/notes.txt: name is not YYYYMMDD_HHMMSS_<sb>[_averaged].ms[.tar]",
        f"{folder}/{t:%Y%m%d_%H%M%S}_78MHz_averaged.ms: a 78MHz file in the 73MHz folder",
        f"{folder}/{t:%Y%m%d_%H%M%S}_73MHz_averaged.ms.tar.gz: a compressed tar: inputs are x.ms or an "
        "uncompressed x.ms.tar (untar it, or tar without -z)",
        f"{folder}/{t:%Y-%m-%dT%H:%M:%S}_73MHz.ms: name is not YYYYMMDD_HHMMSS_<sb>[_averaged].ms[.tar]"])


def test_a_night_of_only_misnamed_files_says_so(tmp_path):
    start, _ = d.lst_interval("2025-06-15", 15)
    folder = tmp_path / "input" / "73MHz" / f"{start:%Y-%m-%d}" / f"{start:%H}"
    folder.mkdir(parents=True)
    (folder / f"{start:%Y%m%d_%H%M%S}_73MHz_averaged.ms.tar.gz").write_bytes(b"x")
    out = d.discover(d.Options(obs_date="2025-06-15", lst_start=15, lst_end=16, subbands=["73MHz"],
                               input_root=str(tmp_path / "input"), run_label="t"), site_for(tmp_path))
    assert out.units == [] and "1 files with unrecognised names" in out.skipped[0]["reason"]
    assert len(out.unrecognised) == 1 and "compressed tar" in out.unrecognised[0]
    with pytest.raises(InputError, match=r"x\.ms\.tar\.gz: a compressed tar"):
        d.check_ms_files([str(folder / "x.ms.tar.gz")])


def test_a_tar_that_is_a_folder_is_a_clear_error(tmp_path):
    start, end = d.lst_interval("2025-06-15", 15)
    t = start + timedelta(minutes=10)
    folder = tmp_path / "input" / "73MHz" / f"{t:%Y-%m-%d}" / f"{t:%H}"
    (folder / f"{t:%Y%m%d_%H%M%S}_73MHz_averaged.ms.tar").mkdir(parents=True)
    with pytest.raises(InputError, match="expected a tar file"):
        d.list_input_files(tmp_path / "input", "73MHz", start, end)


# --- Sun cut ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("obs_date, hour, when", [("2025-06-15", 13, "dusk"), ("2025-06-15", 21, "dawn")])
def test_sun_cut_at_dusk_and_dawn(tmp_path, obs_date, hour, when):
    start, end = d.lst_interval(obs_date, hour)
    times = [start + timedelta(seconds=1 + 150 * k) for k in range(int((end - start).total_seconds() // 150))]
    paths = make_files(tmp_path / "input", "73MHz", times)
    kept, dropped = d.sun_cut(paths, -10.0)
    assert kept and dropped, "the hour must straddle the -10 deg crossing"
    index = {p: i for i, p in enumerate(paths)}
    if when == "dusk":  # night falls: the cut keeps the end of the hour
        assert max(index[p] for p in dropped) < min(index[p] for p in kept)
    else:  # day breaks: the cut keeps the start of the hour
        assert max(index[p] for p in kept) < min(index[p] for p in dropped)
    for p in paths:  # casacore's Sun at each integration's mid-time agrees (0.05 deg tolerance)
        el = astropy_sun_elevation_deg(d.file_start_time(p) + timedelta(seconds=config.INTEGRATION_S / 2))
        if abs(el + 10.0) > 0.05:
            assert (p in kept) == (el < -10.0), (p.name, el)


def test_daylight_hours_are_skipped_with_a_reason(tmp_path):
    site = site_for(tmp_path, node_map={"73MHz": "node-a"})
    start, _ = d.lst_interval("2025-06-15", 4)  # ~18:30 UTC: midday at OVRO
    make_files(tmp_path / "input", "73MHz", [start + timedelta(minutes=5)])
    out = d.discover(d.Options(obs_date="2025-06-15", lst_start=4, lst_end=6, subbands=["73MHz"], run_label="t"),
                     site)
    assert out.units == []
    assert [s["reason"] for s in out.skipped] == ["all integrations in daylight", "no input files"]


# --- Units, chains, nodes -------------------------------------------------------------------------------
def test_discover_matches_the_simulated_night(tmp_path):
    from orca_steps.sim import simulate_night

    night = simulate_night(tmp_path / "sim", subbands=["73MHz", "78MHz"], lst_hours=[15, 16], n_integrations=2,
                           n_antennas=6, a_team=False, rfi=False, n_field_sources=1, tar=True)
    site = config.SiteConfig(input_root=str(night.input_root), runs_root=str(tmp_path / "runs"),
                             node_map={"73MHz": "node-a", "78MHz": "node-b"}, dynamic_pool=["node-a", "node-b"])
    out = d.discover(d.Options(obs_date="2025-06-15", lst_start=15, lst_end=17, subbands=["73MHz", "78MHz"],
                               run_label="sim1", dynamic_run_label="q1"), site)
    assert out.n_units == 4 and out.n_ms == 8
    for unit in out.units:
        expected = [str(p) for p in night.ms_paths[(unit.subband, config.parse_lst_label(unit.lst_label))]]
        assert json.loads(open(unit.ms_list_file).read()) == expected
        assert unit.node == site.node_map[unit.subband]
        assert unit.work_dir == config.work_dir(site.nvme_root, unit.lst_label, "2025-06-15", "sim1", unit.subband)
    hours = {c["subband"]: json.loads(open(c["hours_file"]).read()) for c in out.chains}
    assert [(c["subband"], c["node"], [h["lst_label"] for h in hours[c["subband"]]]) for c in out.chains] == [
        ("73MHz", "node-a", ["15h", "16h"]), ("78MHz", "node-b", ["15h", "16h"])]
    by_id = {u.id: u for u in out.units}
    assert all(h["ms_list_file"] == by_id[d.unit_id(sb, h["lst_label"], h["obs_date"])].ms_list_file
               for sb, hs in hours.items() for h in hs)
    # the loop item that names a chain's node stays short (Argo puts every item field into node names)
    assert all(len(json.dumps(c)) < 200 for c in out.chains)
    assert chain_hours.run(chain_hours.Options(hours_file=out.chains[0]["hours_file"])).hours == hours["73MHz"]
    assert out.pool == ["node-a", "node-b"]
    queue = json.loads(open(out.queue_file).read())
    assert [u["state"] for u in queue["units"]] == ["pending"] * 4


def test_queue_override_and_unknown_nodes(tmp_path):
    site = site_for(tmp_path, node_map={"73MHz": "node-a"}, dynamic_pool=["node-b"])
    assert d.resolve_node(site, "73MHz") == "node-a"
    assert d.resolve_node(site, "73MHz", "node-b") == "node-b"
    with pytest.raises(InputError, match="not a known node"):
        d.resolve_node(site, "73MHz", "node-z")
    with pytest.raises(InputError, match="no node"):
        d.resolve_node(site, "78MHz")


def test_labels_dates_and_subbands_are_checked():
    assert check_run_label("Run_2025-06.15", "run_label") == "Run_2025-06.15"
    for bad in ("", "-x", "a/b", "x" * 64, "run label"):
        with pytest.raises(InputError, match="run_label"):
            check_run_label(bad, "run_label")
    now = datetime(2025, 6, 16, 16, 0, tzinfo=UTC)
    assert d.parse_obs_date("previous-night", now) == "2025-06-16"  # the night that ended this morning
    assert d.parse_obs_date("previous-night", now - timedelta(hours=6)) == "2025-06-15"  # night still running
    with pytest.raises(InputError, match="obs_date"):
        d.parse_obs_date("15/06/2025")
    with pytest.raises(InputError, match="obs_date"):
        d.parse_obs_date("20250615")
    assert d.expand_subbands(["all"]) == list(config.PROCESSED_SUBBANDS)
    with pytest.raises(InputError, match="subbands is empty"):
        d.expand_subbands([])
    with pytest.raises(InputError, match="not processed"):
        d.expand_subbands(["13MHz"])


def test_hour_specs_replace_the_range_and_carry_ms_lists(tmp_path):
    site = site_for(tmp_path, node_map={"73MHz": "node-a"})
    start, _ = d.lst_interval("2025-06-15", 15)
    given = make_files(tmp_path / "elsewhere", "73MHz", [start + timedelta(minutes=3)])
    out = d.discover(d.Options(obs_date="2025-06-15", subbands=["73MHz"], run_label="t", hour_specs=[
        {"lst_label": "15h", "obs_date": "2025-06-15", "ms_files": [str(given[0])]}]), site)
    assert [(u.lst_label, u.n_ms) for u in out.units] == [("15h", 1)]
    assert json.loads(open(out.units[0].ms_list_file).read()) == [str(given[0])]
    with pytest.raises(InputError, match="do not exist"):
        d.discover(d.Options(obs_date="2025-06-15", subbands=["73MHz"], run_label="t", hour_specs=[
            {"lst_label": "15h", "obs_date": "2025-06-15", "ms_files": [str(tmp_path / "missing.ms")]}]), site)


def test_plan_unit_discovers_or_takes_the_list(tmp_path):
    site = site_for(tmp_path, node_map={"73MHz": "node-a"}, dynamic_pool=["node-b"])
    start, _ = d.lst_interval("2025-06-15", 15)
    files = make_files(tmp_path / "input", "73MHz", [start + timedelta(minutes=k) for k in (1, 20)])
    plan = plan_unit(PlanOptions(subband="73MHz", lst_label="15h", obs_date="2025-06-15", run_label="r1"), site)
    assert plan.ms_files == [str(p) for p in files] and plan.node == "node-a" and plan.n_ms == 2
    assert json.loads(open(plan.ms_list_file).read()) == plan.ms_files
    taken = plan_unit(PlanOptions(subband="73MHz", lst_label="15h", obs_date="2025-06-15", run_label="r1",
                                  ms_files=[str(files[1])], queue_override="node-b",
                                  nvme_work_dir="/fast/x/y"), site)
    assert taken.ms_files == [str(files[1])] and taken.node == "node-b" and taken.work_dir == "/fast/x/y"
    with pytest.raises(InputError, match="nothing to process"):
        plan_unit(PlanOptions(subband="73MHz", lst_label="16h", obs_date="2025-06-15", run_label="r1"), site)


def test_cli_writes_one_output_file_per_field(tmp_path):
    site = tmp_path / "site.json"
    site.write_text(json.dumps({"input_root": str(tmp_path / "input"), "runs_root": str(tmp_path / "runs"),
                                "node_map": {"73MHz": "node-a"}, "dynamic_pool": ["node-a"]}))
    start, _ = d.lst_interval("2025-06-15", 15)
    make_files(tmp_path / "input", "73MHz", [start + timedelta(minutes=2)])
    out = tmp_path / "outputs"
    proc = subprocess.run([sys.executable, "-m", "orca_steps.cli", "discover", "--obs_date", "2025-06-15",
                           "--lst_start", "15", "--lst_end", "16", "--subbands", "73MHz", "--run_label", "c1",
                           "--hour_specs", "", "--outputs-dir", str(out)],
                          capture_output=True, text=True,  # HOME as the image sets it: casacore reads ~/.casarc
                          env={"ORCA_CONFIG": str(site), "PATH": "/usr/bin", "HOME": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr
    chains = json.loads((out / "chains").read_text())
    assert chains[0]["subband"] == "73MHz" and json.loads(open(chains[0]["hours_file"]).read())[0]["lst_label"] == "15h"
    assert (out / "obs_date").read_text() == "2025-06-15"  # strings are written as they are
    assert json.loads((out / "pool").read_text()) == ["node-a"]
    bad = subprocess.run([sys.executable, "-m", "orca_steps.cli", "discover", "--obs_date", "2025-06-15",
                          "--lst_start", "3", "--lst_end", "3", "--run_label", "c1"],
                         capture_output=True, text=True, env={"ORCA_CONFIG": str(site), "PATH": "/usr/bin"})
    assert bad.returncode != 0 and "LST range 3..3 is empty" in bad.stderr
