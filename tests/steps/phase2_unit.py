"""One simulated subband-hour taken through Phase 1 and process-subband, built once per test session.

The sky is the simulator's (Cyg A, Cas A, Vir A, field sources, ground RFI, beam), with field sources
raised to 400-800 Jy so that confusion from the A-team's sidelobes (a few Jy to tens of Jy in a
48-antenna image) stays well under the 10 % flux tolerance. Phase 1 flags the dead and noisy antennas
and the outriggers: the remaining core (< 150 m) has a ~1 degree beam that a 512-pixel all-sky image
(0.25 deg pixels) samples with 3-4 pixels, as orca's 4096-pixel images sample the full array's beam.

AOFlagger gets a user strategy (as orca's LWA_opt_GH1.lua is): flag non-finite samples only. AOFlagger's
bundled generic strategy, given 6 integrations spread over an hour (a real hour has 358 contiguous ones),
flags the A-team's fringes as RFI, up to 30 % of an integration, and Cas A then moves by 4 pixels.
"""
from __future__ import annotations

import atexit
import json
import shutil
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from orca_steps.prepare_ms import prepare_ms
from orca_steps.process_subband import Options, process_subband
from orca_steps.sim import simulate_night

from phase1_data import tree_hash

SUBBAND, LST, DATE, RUN = "73MHz", "14h", "2025-06-15", "test-run"
IMAGE_SIZE, IMAGE_SCALE_DEG = 512, 0.25
KEEP_FLAGS_STRATEGY = """aoflagger.require_min_version("3.0")
-- Flag non-finite samples only; the flags already set (Phase 1's bad antennas) stay.
function execute(input)
  input:flag_nans()
end
"""


@dataclass
class Unit:
    root: Path
    truth: dict
    input_root: Path
    input_hash_before: str
    work_dir: Path
    ms_paths: list[str]
    options: Options
    result: object  # process_subband.Result of the first run
    archive: Path


def phase1(root: Path, n_antennas: int = 48, n_integrations: int = 6) -> tuple[dict, Path, Path, list[str]]:
    """Simulate an hour under root/lustre and run Phase 1 (flag + calibrate, no peeling) into NVMe."""
    night = simulate_night(root / "lustre", n_antennas=n_antennas, n_integrations=n_integrations,
                           field_flux_jy=(400.0, 800.0), reference_catalogue=True)
    work = root / "fast" / LST / DATE / RUN / SUBBAND
    enu = np.array(night.truth["antenna_enu_m"])
    outriggers = np.flatnonzero(np.hypot(enu[:, 0], enu[:, 1]) > 150.0).tolist()
    bad = sorted(set(night.truth["dead_antennas"] + night.truth["noisy_antennas"] + outriggers))
    tables = night.truth["subbands"][SUBBAND]
    outs = [prepare_ms(str(p), str(work), tables["bp_table"], tables["xy_table"], bad_antennas=bad,
                       subband=SUBBAND).ms_path for p in night.ms_paths[(SUBBAND, 14)]]
    return night.truth, night.input_root, work, outs


def unit_options(root: Path, work: Path, ms_paths: list[str], **overrides) -> Options:
    strategy = root / "keep-flags.lua"
    strategy.write_text(KEEP_FLAGS_STRATEGY)
    values = dict(ms_paths=ms_paths, work_dir=str(work), subband=SUBBAND, lst_label=LST, obs_date=DATE,
                  run_label=RUN, archive_root=str(root / "lustre" / "images"), strategy=str(strategy),
                  beam=str(root / "lustre" / "refs" / "beam.h5"),
                  vlssr_catalog=str(root / "lustre" / "refs" / "vlssr_catalog.txt"), image_size=IMAGE_SIZE,
                  image_scale_deg=IMAGE_SCALE_DEG, wsclean_threads=2, hot_baselines=True, clean_snapshots=True,
                  compress_snapshots=True)
    return Options(**{**values, **overrides})


@lru_cache(maxsize=None)
def processed_unit() -> Unit:
    """The shared unit: built on first use in a session, removed when the session's process exits."""
    root = Path(tempfile.mkdtemp(prefix="orca-phase2-unit-"))
    atexit.register(shutil.rmtree, root, True)
    truth, input_root, work, outs = phase1(root)
    before = tree_hash(input_root)
    options = unit_options(root, work, outs)
    result = process_subband(options)
    return Unit(root, truth, input_root, before, work, outs, options, result, Path(result.archive_path))


def source_centre(source: dict) -> tuple[float, float]:
    """Flux-weighted centre (deg) of a truth source's components."""
    comps = source["components"]
    w = np.array([c["stokes"][0] for c in comps])
    ra = np.array([c["ra_deg"] for c in comps])
    dec = np.array([c["dec_deg"] for c in comps])
    return float(np.sum(w * ra) / w.sum()), float(np.sum(w * dec) / w.sum())


def truth_of(unit: Unit, name: str) -> dict:
    return next(s for s in unit.truth["sky_sources"] + unit.truth["field_sources"] if s["name"] == name)


def load_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())
