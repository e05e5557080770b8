"""Simulate a night of OVRO-LWA subband data with known truth, deterministic from a seed.

Writes the input tree ``<out>/input/<sb>/<YYYY-MM-DD>/<HH>/YYYYMMDD_HHMMSS_<sb>_averaged.ms[.tar]``,
reference files in ``<out>/refs/`` (CASA B and Xf tables that undo the corruption, TTCal sky and RFI
models, a beam H5 file) and ``<out>/truth.json`` with everything injected.
"""
from __future__ import annotations

import json
import shutil
import tarfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, Field, model_validator

from .. import config
from . import beam, corrupt, sky
from .array import ArrayLayout, baselines, make_layout
from .geometry import altaz, antenna_uvw, local_sidereal_hours, zenith_j2000
from .sky import SkySource
from .visibilities import corrupt_by_gains, emitter_visibilities, sky_visibilities
from .mswriter import CORR_ORDERS, create_ms

MJD_UNIX_OFFSET_S = 3506716800.0  # MJD seconds at 1970-01-01
SIDEREAL_RATE = 1.00273790935


class SimConfig(BaseModel):
    """Every knob of the simulation; defaults make a small, quick night for tests."""
    obs_date: str = "2025-06-15"
    lst_hours: list[int] = [14]
    subbands: list[str] = ["73MHz"]
    n_antennas: int = 24
    n_integrations: int = Field(4, description="integrations (MS) per subband-hour, spread over the hour")
    n_channels: int = config.AVERAGED_CHANNELS
    caltable_channels: int = Field(config.CHANNELS_PER_SUBBAND, description="channels of the B/Xf tables")
    seed: int = 1
    noise_jy: float = Field(20.0, description="thermal noise per real/imag part of a cross-correlation")
    auto_power_jy: float = 5.0e4
    n_field_sources: int = 8
    field_flux_jy: tuple[float, float] = (30.0, 120.0)
    a_team: bool = True
    rfi: bool = True
    rfi_flux_jy: float = 400.0
    apply_beam: bool = True
    dead_antennas: int = 2
    noisy_antennas: int = 2
    noisy_factor: float = 8.0
    corr_order: Literal[tuple(CORR_ORDERS)] = Field("XX,XY,YX,YY", description=(
        "order of the correlations on disk (CORR_TYPE); pyuvdata and some correlators write XX,YY,XY,YX"))
    write_model: bool = Field(False, description="also write MODEL_DATA: the uncorrupted, noise-free visibilities")
    tar: bool = False
    dd_gain_sources: list[str] = Field(default_factory=list,
                                       description="sources (sky names or the RFI name) given direction-dependent gains")
    dd_gain_amp_scatter: float = 0.15
    dd_gain_phase_scatter_deg: float = 25.0
    burst_integrations: list[int] = Field(default_factory=list, description=(
        "integrations (index within the hour) hit by a broadband noise-like burst on every cross-correlation"))
    burst_jy: float = Field(400.0, description="burst noise per real/imag part")
    hot_baselines: list[tuple[int, int]] = Field(default_factory=list, description=(
        "correlator index pairs given a constant additive signal in all four correlations (crosstalk)"))
    hot_baseline_jy: float = Field(1000.0, description="amplitude of the hot baselines' added signal")
    calibrators: bool = Field(False, description="add the flux-check calibrators (published spectra, true positions)")
    target_fluxes_jy: list[float] = Field(default_factory=list, description=(
        "one faint flat-spectrum point target per flux, near the zenith, listed in refs/targets.csv; 0 = empty target"))
    target_radius_deg: float = Field(15.0, description="targets and the transient lie this close to the zenith")
    transient_interval: int | None = Field(None, ge=0, le=5, description=(
        "10-min interval (sixth of the LST hour) in which a flat-spectrum transient shines; None = no transient"))
    transient_flux_jy: float = Field(30.0, description="flux of the transient")
    v_burst_target: int | None = Field(None, ge=0, description=(
        "index of the target that turns circularly polarised (Stokes V, I unchanged) for one 10-min interval"))
    v_burst_interval: int = Field(3, ge=0, le=5, description="10-min interval of the Stokes V burst")
    v_burst_jy: float = Field(5.0, description="Stokes V flux of the burst (at most the target's flux)")
    iono_shift_arcmin: float = Field(0.0, ge=0.0, description=(
        "amplitude of a smooth ionospheric position shift of the compact sources (not the A-team); 0 = none"))
    iono_scale_deg: float = Field(60.0, gt=0.0, description="wavelength on the sky of the shift pattern")
    iono_ref_freq_hz: float | None = Field(None, gt=0.0, description=(
        "frequency at which the shift is iono_shift_arcmin's pattern; each channel's shift is then scaled by "
        "(iono_ref_freq_hz / nu)^2, the ionosphere's refraction law; None = the same shift at every frequency"))
    field_radius_deg: float = Field(25.0, gt=0.0, description="field sources lie this close to the zenith")
    field_min_sep_deg: float = Field(0.0, ge=0.0, description="least separation between field sources")
    reference_catalogue: bool = Field(False, description=(
        "write refs/vlssr_catalog.txt: the field sources at their true positions, 74 MHz fluxes, VLSSr text format"))

    @model_validator(mode="after")
    def _v_burst_fits_its_target(self):
        if self.v_burst_target is not None:
            if self.v_burst_target >= len(self.target_fluxes_jy):
                raise ValueError(f"v_burst_target {self.v_burst_target}: only {len(self.target_fluxes_jy)} targets")
            if abs(self.v_burst_jy) > self.target_fluxes_jy[self.v_burst_target]:
                raise ValueError("v_burst_jy exceeds the flux of its target (|V| <= I)")
        return self


@dataclass
class SimNight:
    out_dir: Path
    input_root: Path
    refs_dir: Path
    ms_paths: dict[tuple[str, int], list[Path]]
    truth: dict = field(default_factory=dict)


@dataclass
class Scene:
    """What stays fixed through the night: array, sky, instrument."""
    cfg: SimConfig
    layout: ArrayLayout
    sky_sources: list[SkySource]  # the A-team: what the peeling model knows
    field_sources: list[SkySource]
    dead: list[int]
    noisy: list[int]
    dd_gains: dict[str, np.ndarray]  # source name -> (n_ant, 2) complex
    targets: list[SkySource] = field(default_factory=list)  # steady, listed in refs/targets.csv
    timed: list[tuple[int, SkySource]] = field(default_factory=list)  # (10-min interval, source shining only then)
    true_positions: dict[str, tuple[float, float]] = field(default_factory=dict)  # (ra, dec) rad before the shift
    iono_phases: list[float] = field(default_factory=list)
    iono_offsets: dict[str, tuple[float, float]] = field(default_factory=dict)  # name -> (east, north) arcmin


def mjd_seconds(dt: datetime) -> float:
    return dt.replace(tzinfo=timezone.utc).timestamp() + MJD_UNIX_OFFSET_S


def utc_of(time_s: float) -> datetime:
    return datetime.fromtimestamp(time_s - MJD_UNIX_OFFSET_S, tz=timezone.utc)


def lst_hour_start(obs_date: str, lst_hour: int) -> float:
    """First MJD-second on ``obs_date`` (UTC) at which the local sidereal time is ``lst_hour``."""
    t0 = mjd_seconds(datetime.fromisoformat(obs_date))
    wait_h = ((lst_hour - local_sidereal_hours(t0)) % 24.0) / SIDEREAL_RATE
    t = t0 + wait_h * 3600.0
    t += (((lst_hour - local_sidereal_hours(t) + 12) % 24) - 12) / SIDEREAL_RATE * 3600.0  # refine
    return t


def integration_times(obs_date: str, lst_hour: int, n: int) -> np.ndarray:
    """Start times (MJD s) of ``n`` integrations spread evenly over the LST hour, on the 10.031 s grid."""
    start = lst_hour_start(obs_date, lst_hour)
    slots = int(3590.0 // config.INTEGRATION_S)
    picks = np.unique(np.linspace(0, slots - 1, n).round().astype(int)) if n > 1 else np.array([0])
    return start + 1.0 + picks * config.INTEGRATION_S


def make_scene(cfg: SimConfig) -> Scene:
    rng = np.random.default_rng(cfg.seed)
    layout = make_layout(cfg.n_antennas, cfg.seed)
    mid = integration_times(cfg.obs_date, cfg.lst_hours[0], 1)[0] + 1800.0
    ra_z, dec_z = zenith_j2000(mid)
    sky_sources = sky.a_team() if cfg.a_team else []
    fields = sky.field_sources(rng, cfg.n_field_sources, ra_z, dec_z, cfg.field_radius_deg, cfg.field_flux_jy,
                               cfg.field_min_sep_deg)
    if cfg.calibrators:
        fields += sky.calibrators()
    targets, timed, true_positions, phases = science_features(cfg, fields, ra_z, dec_z)
    if cfg.iono_shift_arcmin > 0:
        fields = [_iono_shift(cfg, s, ra_z, dec_z, phases, true_positions) for s in fields]
    bad = rng.choice(cfg.n_antennas, cfg.dead_antennas + cfg.noisy_antennas, replace=False)
    dd = {}
    for name in cfg.dd_gain_sources:
        amp = 1 + rng.normal(0, cfg.dd_gain_amp_scatter, (cfg.n_antennas, 2))
        phase = np.deg2rad(rng.normal(0, cfg.dd_gain_phase_scatter_deg, (cfg.n_antennas, 2)))
        dd[name] = amp * np.exp(1j * phase)
    scene = Scene(cfg, layout, sky_sources, fields, sorted(map(int, bad[: cfg.dead_antennas])),
                  sorted(map(int, bad[cfg.dead_antennas:])), dd, targets, timed, true_positions, phases)
    scene.iono_offsets = {name: _offset_arcmin(_find(scene, name), ra, dec)
                          for name, (ra, dec) in true_positions.items()}
    return scene


def _find(scene: Scene, name: str) -> SkySource:
    return next(s for s in scene.field_sources + scene.targets + [s for _, s in scene.timed] if s.name == name)


def _offset_arcmin(src: SkySource, ra: float, dec: float) -> tuple[float, float]:
    """(east, north) arcmin of ``src``'s first component from (ra, dec) rad."""
    c = src.components[0]
    return (float(np.rad2deg((c.ra - ra + np.pi) % (2 * np.pi) - np.pi) * np.cos(dec) * 60),
            float(np.rad2deg(c.dec - dec) * 60))


def _iono_shift(cfg: SimConfig, src: SkySource, ra_z: float, dec_z: float, phases, true_positions) -> SkySource:
    """``src`` moved by the ionospheric offset at its (first component's) position; remembers where it was."""
    c = src.components[0]
    east, north = sky.ionospheric_offsets(c.ra, c.dec, ra_z, dec_z, cfg.iono_shift_arcmin, cfg.iono_scale_deg, phases)
    true_positions[src.name] = (c.ra, c.dec)
    return sky.shifted(src, float(east), float(north))


def science_features(cfg: SimConfig, fields: list[SkySource], ra_z: float, dec_z: float):
    """Targets, the transient and the V burst (own random stream, so other features stay as they were)."""
    rng = np.random.default_rng([cfg.seed, 17])
    phases = rng.uniform(0, 2 * np.pi, 4).tolist() if cfg.iono_shift_arcmin > 0 else []
    true_positions: dict[str, tuple[float, float]] = {}
    if not cfg.target_fluxes_jy and cfg.transient_interval is None:
        return [], [], true_positions, phases
    avoid = [(c.ra, c.dec) for s in fields for c in s.components]
    spots = sky.scatter_points(rng, len(cfg.target_fluxes_jy) + 1, ra_z, dec_z, cfg.target_radius_deg, avoid)
    targets = [sky.flat_point(f"target{k:02d}", *spots[k], flux) for k, flux in enumerate(cfg.target_fluxes_jy)]
    timed = []
    if cfg.transient_interval is not None:
        timed.append((cfg.transient_interval, sky.flat_point("transient", *spots[-1], cfg.transient_flux_jy)))
    if cfg.v_burst_target is not None:
        t = targets[cfg.v_burst_target]
        c = t.components[0]
        timed.append((cfg.v_burst_interval, sky.flat_point(t.name, c.ra, c.dec, c.stokes[0], cfg.v_burst_jy)))
    if cfg.iono_shift_arcmin > 0:
        targets = [_iono_shift(cfg, s, ra_z, dec_z, phases, true_positions) for s in targets]
        timed = [(k, _iono_shift(cfg, s, ra_z, dec_z, phases, true_positions)) for k, s in timed]
    return targets, timed, true_positions, phases


def interval_of(obs_date: str, lst_hour: int, time_s: float) -> int:
    """Which sixth of the LST hour (0-5, WSClean's -intervals-out 6) ``time_s`` falls in."""
    sixth = 3600.0 / SIDEREAL_RATE / 6
    return int(np.clip((time_s - lst_hour_start(obs_date, lst_hour)) // sixth, 0, 5))


@dataclass
class Instrument:
    """Per-subband corruption: native-resolution tables and their MS-channel equivalents."""
    native_freqs: np.ndarray
    freqs: np.ndarray
    native_gains: np.ndarray  # (n_ant, n_native, 2)
    native_xy: np.ndarray  # (n_native,)
    gains: np.ndarray  # (n_ant, nchan, 2), block means of the native gains; 0 for dead antennas
    xy: np.ndarray  # (nchan,) complex exp(i phase), block mean of the native phasors


def make_instrument(scene: Scene, subband: str) -> Instrument:
    cfg = scene.cfg
    rng = np.random.default_rng([cfg.seed, config.subband_index(subband), 7])
    native = config.subband_channel_freqs(subband, cfg.caltable_channels)
    freqs = config.subband_channel_freqs(subband, cfg.n_channels)
    native_gains = corrupt.bandpass_gains(rng, cfg.n_antennas, native)
    native_xy = corrupt.xy_phase(rng, native)
    factor = cfg.caltable_channels // cfg.n_channels
    gains = corrupt.block_mean(native_gains, factor, axis=1)
    gains[scene.dead] = 0.0
    xy = corrupt.block_mean(np.exp(1j * native_xy), factor, axis=0)
    return Instrument(native, freqs, native_gains, native_xy, gains, xy)


def _source_vis(scene: Scene, uvw, freqs, ra0, dec0, time_s, a1, a2, interval: int = -1) -> tuple[np.ndarray, dict]:
    """Apparent sky + RFI visibilities (nrow, nchan, 4) and the elevations used.

    Sources of ``scene.timed`` shine only in their ``interval``, replacing a steady source of the same name.
    """
    cfg = scene.cfg
    vis = np.zeros((uvw.shape[0], freqs.size, 4), dtype=np.complex128)
    elevations = {}
    now = [s for k, s in scene.timed if k == interval]
    replaced = {s.name for s in now}
    steady = [s for s in scene.sky_sources + scene.field_sources + scene.targets if s.name not in replaced]
    sources = steady + now
    centres = np.array([[np.mean([c.ra for c in s.components]), np.mean([c.dec for c in s.components])]
                        for s in sources]).reshape(-1, 2)
    source_el = altaz(centres[:, 0], centres[:, 1], time_s)[1] if sources else []
    for src, el in zip(sources, source_el):
        elevations[src.name] = float(np.rad2deg(el))
        if el <= 0:
            continue
        if cfg.iono_ref_freq_hz and src.name in scene.iono_offsets:
            part = _refracted_visibilities(scene, src, uvw, freqs, ra0, dec0)
        else:
            part = sky_visibilities(uvw, freqs, src.components, ra0, dec0)
        if cfg.apply_beam:
            part *= beam.stokes_i_response(el)
        if src.name in scene.dd_gains:
            part = corrupt_by_gains(part, a1, a2, scene.dd_gains[src.name][:, None, :])
        vis += part
    if cfg.rfi:
        rfi = sky.ground_emitter(freqs, cfg.rfi_flux_jy)
        part = emitter_visibilities(a1, a2, scene.layout.itrf, uvw, freqs, rfi)
        if rfi.name in scene.dd_gains:
            part = corrupt_by_gains(part, a1, a2, scene.dd_gains[rfi.name][:, None, :])
        vis += part
    return vis, elevations


def _refracted_visibilities(scene: Scene, src: SkySource, uvw, freqs, ra0, dec0) -> np.ndarray:
    """Channel by channel: ``src`` (shifted for iono_ref_freq_hz) moved on to its shift x (ref / nu)^2."""
    east, north = scene.iono_offsets[src.name]
    out = np.empty((uvw.shape[0], freqs.size, 4), dtype=np.complex128)
    for k, nu in enumerate(freqs):
        extra = (scene.cfg.iono_ref_freq_hz / nu) ** 2 - 1.0
        moved = sky.shifted(src, extra * east, extra * north)
        out[:, k:k + 1] = sky_visibilities(uvw, freqs[k:k + 1], moved.components, ra0, dec0)
    return out


def write_ms(path: Path, scene: Scene, inst: Instrument, subband: str, time_s: float, index: int) -> dict:
    """Write one integration of one subband; returns its truth entry."""
    cfg, layout = scene.cfg, scene.layout
    mid = time_s + config.INTEGRATION_S / 2
    ra0, dec0 = zenith_j2000(mid)
    a1, a2 = baselines(layout.n)
    ant_uvw = antenna_uvw(layout.itrf, mid, ra0, dec0)
    uvw = ant_uvw[a2] - ant_uvw[a1]
    freqs = inst.freqs
    interval = interval_of(cfg.obs_date, index // 1000, mid)
    true, elevations = _source_vis(scene, uvw, freqs, ra0, dec0, mid, a1, a2, interval)
    auto = a1 == a2
    true[auto] = 0.0
    total_flux = cfg.auto_power_jy
    true[auto, :, 0] = total_flux
    true[auto, :, 3] = total_flux

    obs = corrupt_by_gains(true, a1, a2, inst.gains)
    obs[..., 1] *= inst.xy[None, :]
    obs[..., 2] *= np.conj(inst.xy)[None, :]
    rng = np.random.default_rng([cfg.seed, config.subband_index(subband), index, 11])
    sigma = np.full(a1.size, cfg.noise_jy)
    noisy_rows = np.isin(a1, scene.noisy) | np.isin(a2, scene.noisy)
    sigma[noisy_rows] *= cfg.noisy_factor
    noise = corrupt.complex_noise(rng, obs.shape, 1.0) * sigma[:, None, None]
    noise[auto] = noise[auto].real  # autocorrelations stay real
    obs = obs + noise
    noisy_auto = auto & np.isin(a1, scene.noisy)
    obs[noisy_auto] *= cfg.noisy_factor**2
    burst = index % 1000 in cfg.burst_integrations  # callers pass index = lst_hour * 1000 + integration
    if burst:
        obs[~auto] += corrupt.complex_noise(rng, obs[~auto].shape, cfg.burst_jy)
    hot_rng = np.random.default_rng([cfg.seed, 13])
    for p, q in cfg.hot_baselines:
        rows = (a1 == min(p, q)) & (a2 == max(p, q))
        obs[rows] += cfg.hot_baseline_jy * np.exp(2j * np.pi * hot_rng.uniform(size=4))

    extra = ("MODEL_DATA",) if cfg.write_model else ("",)
    path.parent.mkdir(parents=True, exist_ok=True)
    create_ms(path, layout.names, layout.itrf, freqs, f"{subband}", (ra0, dec0), mid, a1.size, extra, cfg.corr_order)
    on_disk = [[9, 10, 11, 12].index(c) for c in CORR_ORDERS[cfg.corr_order]]  # computed as XX, XY, YX, YY
    from casacore import tables as ct

    with ct.table(str(path), readonly=False, ack=False) as ms:
        n = a1.size
        ms.putcol("ANTENNA1", a1)
        ms.putcol("ANTENNA2", a2)
        ms.putcol("UVW", uvw)
        for col, value in (("TIME", mid), ("TIME_CENTROID", mid), ("INTERVAL", config.INTEGRATION_S),
                           ("EXPOSURE", config.INTEGRATION_S)):
            ms.putcol(col, np.full(n, value))
        for col in ("DATA_DESC_ID", "FIELD_ID", "ARRAY_ID", "OBSERVATION_ID", "PROCESSOR_ID", "FEED1", "FEED2"):
            ms.putcol(col, np.zeros(n, dtype=np.int32))
        ms.putcol("SCAN_NUMBER", np.ones(n, dtype=np.int32))
        ms.putcol("STATE_ID", np.full(n, -1, dtype=np.int32))
        ms.putcol("WEIGHT", np.ones((n, 4), dtype=np.float32))
        ms.putcol("SIGMA", np.ones((n, 4), dtype=np.float32))
        ms.putcol("FLAG_ROW", np.zeros(n, dtype=bool))
        ms.putcol("DATA", obs[..., on_disk].astype(np.complex64))
        ms.putcol("FLAG", np.zeros(obs.shape, dtype=bool))
        if cfg.write_model:
            model = true[..., on_disk].astype(np.complex64)
            model[auto] = 0.0
            ms.putcol("MODEL_DATA", model)
    return {"path": str(path), "time_mjd_s": mid, "utc": utc_of(mid).isoformat(),
            "phase_centre_deg": [float(np.rad2deg(ra0)), float(np.rad2deg(dec0))],
            "elevations_deg": elevations, "burst": bool(burst), "interval": interval,
            "timed_sources": sorted({s.name for k, s in scene.timed if k == interval})}


def ms_name(start_s: float, subband: str) -> str:
    return f"{utc_of(start_s):%Y%m%d_%H%M%S}_{subband}_averaged.ms"


def tar_ms(ms_path: Path) -> Path:
    """Replace ``x.ms`` by ``x.ms.tar`` holding it (as orca's Lustre does, to save inodes)."""
    tar_path = ms_path.with_name(ms_path.name + ".tar")
    with tarfile.open(tar_path, "w") as tar:
        tar.add(ms_path, arcname=ms_path.name)
    shutil.rmtree(ms_path)
    return tar_path


def write_refs(scene: Scene, instruments: dict[str, Instrument], refs: Path, time_s: float) -> dict:
    from ..caltables import write_bandpass_table, write_xyphase_table

    refs.mkdir(parents=True, exist_ok=True)
    written = {}
    for subband, inst in instruments.items():
        flags = np.zeros(inst.native_gains.shape, dtype=bool)
        flags[scene.dead] = True
        bp = refs / f"{subband}.bandpass.B.flagged"
        xy = refs / f"{subband}.xyphase.Xf"
        write_bandpass_table(bp, inst.native_gains, inst.native_freqs, scene.layout.names, flags=flags,
                             time_s=time_s, overwrite=True)
        write_xyphase_table(xy, inst.native_xy, inst.native_freqs, scene.layout.names, time_s=time_s, overwrite=True)
        written[subband] = {"bp_table": str(bp), "xy_table": str(xy)}
    sky.write_sky_model(refs / "sources.json", scene.sky_sources)
    all_freqs = np.concatenate([i.freqs for i in instruments.values()])
    sky.write_rfi_model(refs / "rfi_ovro.json", [sky.ground_emitter(all_freqs, scene.cfg.rfi_flux_jy)])
    beam.write_beam_h5(refs / "beam.h5", np.unique(np.round(all_freqs, -5)))
    if scene.targets:
        write_target_list(refs / "targets.csv", scene)
    if scene.cfg.reference_catalogue:
        entries = []
        for src in scene.field_sources:
            ra, dec = scene.true_positions.get(src.name, (src.components[0].ra, src.components[0].dec))
            entries.append((float(np.rad2deg(ra)), float(np.rad2deg(dec)), src.flux_at(74e6)))
        sky.write_vlssr(refs / "vlssr_catalog.txt", entries, "simulated field sources: true positions, 74 MHz fluxes")
    return written


def write_target_list(path: Path, scene: Scene) -> None:
    """The targets at their true positions as a photometry target CSV (name, ra, dec in deg, stokes)."""
    lines = ["name,ra,dec,stokes"]
    for t in scene.targets:
        ra, dec = scene.true_positions.get(t.name, (t.components[0].ra, t.components[0].dec))
        lines.append(f"{t.name},{np.rad2deg(ra):.6f},{np.rad2deg(dec):.6f},IV")
    path.write_text("\n".join(lines) + "\n")


def science_truth(scene: Scene, refs: Path) -> dict:
    """truth.json entries of the science features: targets, transient, V burst, ionospheric shifts."""
    def where(src: SkySource) -> dict:
        c = src.components[0]
        ra, dec = scene.true_positions.get(src.name, (c.ra, c.dec))
        return {"name": src.name, "ra_deg": float(np.rad2deg(ra)), "dec_deg": float(np.rad2deg(dec)),
                "apparent_ra_deg": float(np.rad2deg(c.ra)), "apparent_dec_deg": float(np.rad2deg(c.dec)),
                "flux_jy": float(c.stokes[0]), "v_jy": float(c.stokes[3])}
    cfg = scene.cfg
    timed = [{"interval": k, **where(s)} for k, s in scene.timed]
    shifts = {name: {"east_arcmin": e, "north_arcmin": n} for name, (e, n) in scene.iono_offsets.items()}
    return {
        "targets": [where(t) for t in scene.targets],
        "target_list": str(refs / "targets.csv") if scene.targets else None,
        "transient": next((t for t in timed if t["name"] == "transient"), None),
        "v_burst": next((t for t in timed if t["name"] != "transient"), None),
        "ionosphere": {"amplitude_arcmin": cfg.iono_shift_arcmin, "scale_deg": cfg.iono_scale_deg,
                       "ref_freq_hz": cfg.iono_ref_freq_hz, "phases": scene.iono_phases,
                       "shifts": shifts} if cfg.iono_shift_arcmin > 0 else None,
        "reference_catalogue": str(refs / "vlssr_catalog.txt") if cfg.reference_catalogue else None,
    }


def _component_truth(src: SkySource) -> dict:
    return {"name": src.name, "components": [
        {"ra_deg": float(np.rad2deg(c.ra)), "dec_deg": float(np.rad2deg(c.dec)), "stokes": list(c.stokes),
         "freq_hz": c.freq, "index": c.index, "major_fwhm": c.major_fwhm, "minor_fwhm": c.minor_fwhm}
        for c in src.components]}


def simulate_night(out_dir: str | Path, config_: SimConfig | None = None, **overrides) -> SimNight:
    """Simulate ``subbands`` x ``lst_hours`` of ``obs_date`` into ``out_dir``; see SimConfig for knobs."""
    cfg = (config_ or SimConfig()).model_copy(update=overrides)
    cfg = SimConfig(**cfg.model_dump())  # validate overrides
    for sb in cfg.subbands:
        config.check_subband(sb)
    out = Path(out_dir)
    input_root, refs = out / "input", out / "refs"
    scene = make_scene(cfg)
    instruments = {sb: make_instrument(scene, sb) for sb in cfg.subbands}
    ms_paths: dict[tuple[str, int], list[Path]] = {}
    units = []
    first_time = None
    for sb in cfg.subbands:
        for hour in cfg.lst_hours:
            entries = []
            for k, start in enumerate(integration_times(cfg.obs_date, hour, cfg.n_integrations)):
                first_time = start if first_time is None else min(first_time, start)
                utc = utc_of(start)
                folder = input_root / sb / f"{utc:%Y-%m-%d}" / f"{utc:%H}"
                folder.mkdir(parents=True, exist_ok=True)
                path = folder / ms_name(start, sb)
                if path.exists():
                    shutil.rmtree(path)
                entry = write_ms(path, scene, instruments[sb], sb, start, hour * 1000 + k)
                if cfg.tar:
                    path = tar_ms(path)
                    entry["path"] = str(path)
                entries.append(entry)
                ms_paths.setdefault((sb, hour), []).append(path)
            units.append({"subband": sb, "lst_hour": hour, "lst_label": config.lst_label(hour), "ms": entries})
    tables = write_refs(scene, instruments, refs, first_time)
    truth = {
        "config": cfg.model_dump(),
        "antenna_names": scene.layout.names,
        "antenna_enu_m": scene.layout.enu.round(4).tolist(),
        "dead_antennas": scene.dead, "noisy_antennas": scene.noisy,
        "sky_sources": [_component_truth(s) for s in scene.sky_sources],
        "field_sources": [_component_truth(s) for s in scene.field_sources],
        "rfi": {"name": sky.ground_emitter(np.array([70e6, 80e6])).name} if cfg.rfi else None,
        "dd_gains": {k: {"real": v.real.round(6).tolist(), "imag": v.imag.round(6).tolist()}
                     for k, v in scene.dd_gains.items()},
        "subbands": {sb: {"freqs_hz": inst.freqs.tolist(), **tables[sb]} for sb, inst in instruments.items()},
        "units": units,
        "burst_integrations": sorted(cfg.burst_integrations),
        "hot_baselines": sorted([min(p, q), max(p, q)] for p, q in cfg.hot_baselines),
        "refs": {"sky_model": str(refs / "sources.json"), "rfi_model": str(refs / "rfi_ovro.json"),
                 "beam": str(refs / "beam.h5")},
        **science_truth(scene, refs),
    }
    (out / "truth.json").write_text(json.dumps(truth, indent=1) + "\n")
    return SimNight(out, input_root, refs, ms_paths, truth)


def simulate_ms(path: str | Path, subband: str = "73MHz", lst_hour: int = 14, index: int = 0,
                refs_dir: str | Path | None = None, **overrides) -> tuple[dict, Scene, Instrument]:
    """Write one MS at ``path`` (integration ``index`` of the hour); refs too if ``refs_dir`` is given."""
    cfg = SimConfig(**{**SimConfig().model_dump(), "subbands": [subband], "lst_hours": [lst_hour], **overrides})
    config.check_subband(subband)
    scene = make_scene(cfg)
    inst = make_instrument(scene, subband)
    start = integration_times(cfg.obs_date, lst_hour, max(cfg.n_integrations, index + 1))[index]
    path = Path(path)
    if path.exists():
        shutil.rmtree(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    entry = write_ms(path, scene, inst, subband, start, lst_hour * 1000 + index)
    if refs_dir is not None:
        entry.update(write_refs(scene, {subband: inst}, Path(refs_dir), start)[subband])
    entry.update({"dead_antennas": scene.dead, "noisy_antennas": scene.noisy, "antenna_names": scene.layout.names})
    return entry, scene, inst

