"""The one place that knows the telescope, the cluster and the imaging recipes (``wsclean`` defines them).

Every step, the Argo templates and the local runner read their defaults from here. A site overrides
them with a YAML or JSON file named by ``ORCA_CONFIG`` (same field names); nothing copies these lists.
"""
from __future__ import annotations

import json
import os
import re
from functools import lru_cache
from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field

from .errors import InputError
from .wsclean import Recipes

# --- The telescope -------------------------------------------------------------------------------
TELESCOPE_NAME = "OVRO-LWA"
OVRO_LAT_DEG = 37.23977727
OVRO_LON_DEG = -118.2816667
OVRO_HEIGHT_M = 1222.0
N_ANTENNAS_FULL = 352

INTEGRATION_S = 10.031
COARSE_CHANNEL_HZ = 196e6 / 8192  # 23.926 kHz, the correlator's native channel
CHANNELS_PER_SUBBAND = 192
SUBBAND_WIDTH_HZ = CHANNELS_PER_SUBBAND * COARSE_CHANNEL_HZ  # 4.594 MHz
FIRST_SUBBAND_EDGE_HZ = 560 * COARSE_CHANNEL_HZ  # 13.398 MHz: the lower edge of subband 0
AVERAGED_CHANNELS = 48  # Phase 1 inputs are 4x frequency-averaged
MAX_USABLE_FREQ_HZ = 85e6  # channels above this are flagged before calibration

# Labels are the approximate lowest frequency in MHz; index = position in the correlator's subband list.
SUBBAND_LABELS = ("13MHz", "18MHz", "23MHz", "27MHz", "32MHz", "36MHz", "41MHz", "46MHz",
                  "50MHz", "55MHz", "59MHz", "64MHz", "69MHz", "73MHz", "78MHz", "82MHz")
UNUSABLE_SUBBANDS = ("13MHz",)
PROCESSED_SUBBANDS = tuple(s for s in SUBBAND_LABELS if s not in UNUSABLE_SUBBANDS)

# Declination of the re-centred phase centre (near zenith): +37d12m57.057s
PHASE_CENTRE_DEC_DEG = 37.0 + 12.0 / 60 + 57.057 / 3600

_SUBBAND_RE = re.compile(r"^(\d{2})MHz$")


def check_subband(label: str) -> str:
    """Return ``label`` if it names a real subband, else raise a clear error."""
    if not isinstance(label, str) or not _SUBBAND_RE.match(label) or label not in SUBBAND_LABELS:
        raise InputError(f"subband label {label!r} is malformed: expected one of {', '.join(SUBBAND_LABELS)}")
    return label


def subband_index(label: str) -> int:
    return SUBBAND_LABELS.index(check_subband(label))


def subband_channel_freqs(label: str, nchan: int = AVERAGED_CHANNELS) -> np.ndarray:
    """Centre frequencies (Hz) of ``nchan`` equal channels spanning the subband."""
    if CHANNELS_PER_SUBBAND % nchan:
        raise InputError(f"{nchan} channels do not divide the {CHANNELS_PER_SUBBAND} native channels")
    lo = FIRST_SUBBAND_EDGE_HZ + subband_index(label) * SUBBAND_WIDTH_HZ
    width = SUBBAND_WIDTH_HZ / nchan
    return lo + width * (np.arange(nchan) + 0.5)


def lst_label(hour: int) -> str:
    return f"{int(hour) % 24:02d}h"


def parse_lst_label(label: str) -> int:
    m = re.fullmatch(r"(\d{1,2})h", label or "")
    if not m or not 0 <= int(m.group(1)) < 24:
        raise InputError(f"LST label {label!r} is malformed: expected e.g. '14h' (00h..23h)")
    return int(m.group(1))


# --- Site configuration (overridable) ------------------------------------------------------------
class PixelTier(BaseModel):
    """Image size for subbands whose label frequency is at most ``max_mhz``."""
    max_mhz: int
    size: int
    scale_deg: float


# orca's tiers. Newer orca uses a ~116 degree field: 1507, 2357 and 3122 pixels of 116/size degrees.
ORCA_PIXEL_TIERS = [PixelTier(max_mhz=36, size=1024, scale_deg=0.125),
                    PixelTier(max_mhz=59, size=2048, scale_deg=0.0625),
                    PixelTier(max_mhz=90, size=4096, scale_deg=0.03125)]


class SiteConfig(BaseModel):
    """Everything that differs between sites; defaults are the OVRO-LWA calim cluster."""
    node_map: dict[str, str] = Field(
        default={"18MHz": "lwacalim00", "23MHz": "lwacalim00", "82MHz": "lwacalim00",
                 "27MHz": "lwacalim01", "32MHz": "lwacalim01",
                 "36MHz": "lwacalim02", "41MHz": "lwacalim02",
                 "46MHz": "lwacalim03", "50MHz": "lwacalim03",
                 "55MHz": "lwacalim04", "59MHz": "lwacalim05", "64MHz": "lwacalim06",
                 "69MHz": "lwacalim07", "73MHz": "lwacalim08", "78MHz": "lwacalim09"},
        description="Subband -> node (kubernetes.io/hostname) for static, per-subband runs.")
    dynamic_pool: list[str] = Field(
        default=["lwacalim00", "lwacalim01", "lwacalim03", "lwacalim04", "lwacalim05",
                 "lwacalim06", "lwacalim07", "lwacalim08", "lwacalim09"],
        description="Nodes that take (subband, hour) units in dynamic mode.")
    input_root: str = "/lustre/pipeline/night-time/averaged"
    nvme_root: str = "/fast/pipeline"
    archive_root: str = "/lustre/pipeline/images"
    runs_root: str = Field(default="/lustre/pipeline/runs",
                           description="Shared folder for run bookkeeping: work-unit MS lists, queues, reports.")
    beam_model: str = Field(
        default="/lustre/gh/calibration/pipeline/reference/beams/OVRO-LWA_MROsoil_updatedheight.h5",
        description="H5 primary-beam model (orca's schema) used by pb-correct.")
    vlssr_catalog: str = Field(
        default="/lustre/gh/calibration/pipeline/reference/catalogs/VLSSr.txt",
        description="VLSSr text catalogue (74 MHz) that dewarp matches sources against.")
    aoflagger_strategy: str = Field(
        default="", description="AOFlagger Lua strategy file for Phase 2 (orca: LWA_opt_GH1.lua); empty: "
                                "AOFlagger's bundled generic strategy. A run's strategy parameter overrides it.")
    transient_catalog: str = Field(
        default="", description="CSV catalogue (name, ra, dec) that labels transient-search candidates; empty: "
                                "none. A run's catalog parameter overrides it.")
    archive_overwrite: bool = Field(
        default=False, description="Replace an existing, different archive of a unit (else the unit is refused "
                                   "before Phase 2 starts). A run's overwrite parameter overrides it.")
    pixel_tiers: list[PixelTier] = Field(
        default=ORCA_PIXEL_TIERS, min_length=1,
        description="Image size and pixel scale by subband: the first tier whose max_mhz is at least the "
                    "subband's label frequency; images that are not reduced use the largest tier.")
    wsclean_recipes: Recipes = Field(
        default_factory=Recipes,
        description="WSClean recipes of pilot snapshots, clean snapshots and science images (orca's by default).")
    wsclean_threads: int = 44
    phase1_parallelism: int = 45

    def node_for(self, subband: str) -> str:
        check_subband(subband)
        if subband not in self.node_map:
            raise InputError(f"subband {subband} has no node in the node map")
        return self.node_map[subband]

    def pixel_tier(self, subband: str) -> PixelTier:
        mhz = int(check_subband(subband)[:2])
        for tier in sorted(self.pixel_tiers, key=lambda t: t.max_mhz):
            if mhz <= tier.max_mhz:
                return tier
        raise InputError(f"no pixel tier covers {subband}: the site's pixel_tiers end at "
                         f"{max(t.max_mhz for t in self.pixel_tiers)} MHz")


@lru_cache(maxsize=None)
def _load_site(path: str | None) -> SiteConfig:
    if not path:
        return SiteConfig()
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: site configuration file (ORCA_CONFIG) does not exist")
    text = p.read_text()
    try:
        if p.suffix in (".yaml", ".yml"):
            import yaml
            data = yaml.safe_load(text) or {}
        else:
            data = json.loads(text)
        return SiteConfig(**data)
    except Exception as exc:  # noqa: BLE001 - any parse error becomes one clear message
        raise InputError(f"{p}: site configuration is invalid: {exc}") from exc


def site() -> SiteConfig:
    """The site configuration in force (defaults, or the file named by ORCA_CONFIG)."""
    return _load_site(os.environ.get("ORCA_CONFIG"))


# --- Paths of one unit of work -------------------------------------------------------------------
def work_dir(nvme_root: str, lst: str, obs_date: str, run_label: str, subband: str) -> str:
    """NVMe work dir of one (subband, hour): <nvme_root>/<lst>/<date>/<run_label>/<sb>/."""
    return str(_unit_path(nvme_root, lst, obs_date, run_label, subband))


def archive_dir(archive_root: str, lst: str, obs_date: str, run_label: str, subband: str) -> str:
    """Lustre archive of one (subband, hour): <archive_root>/<lst>/<date>/<run_label>/<sb>/."""
    return str(_unit_path(archive_root, lst, obs_date, run_label, subband))


def _unit_path(root: str, lst: str, obs_date: str, run_label: str, subband: str) -> Path:
    """A unit's folder under ``root``; every label checked, the result checked to stay under ``root``."""
    from . import labels

    return labels.path_under(root, labels.check_lst_label(lst), labels.check_obs_date(obs_date),
                             labels.check_run_label(run_label), labels.check_subband(subband))
