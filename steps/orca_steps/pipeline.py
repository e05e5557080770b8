"""The pipeline's shape, written once: Phase 1's sub-steps (``PHASE1``, run by ``prepare-ms``) and Phase 2's
parameters and steps in order (``PHASE2``), the switch that enables each, and how each step's options are
filled. ``process-subband`` (one process) and the Argo template ``subband-process`` (one pod per step, its
switches rendered as ``when``) are both made from this list; nothing else copies it.

A step's options are filled by name: from the unit's parameters (``UnitParameters``: the seed's
``process_subband_task`` arguments plus ours), then from ``inputs``, which maps an option to either a
parameter name or ``"<step>.<result field>"`` of an earlier step. Options a step has and neither source
fills keep the step's own defaults.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import BaseModel, Field, field_validator, model_validator

from . import config
from .labels import LstLabel, ObsDate, RunLabel, Subband, WriteRoot


MODES = ("snapshot_only", "cube_only")  # newer orca's modes: each implies switches (UnitParameters._modes)


class UnitParameters(BaseModel):
    """Everything Phase 2 of one subband-hour is told (orca's ``process_subband_task`` arguments first)."""
    ms_paths: list[str] = Field(description="Phase 1 outputs (MS on NVMe) of the subband-hour")
    work_dir: WriteRoot = Field(description="NVMe work dir of the subband-hour (same as Phase 1)")
    subband: Subband = Field(description="subband label, e.g. 73MHz")
    lst_label: LstLabel = Field(description="LST hour, e.g. 14h")
    obs_date: ObsDate = Field(description="observation date YYYY-MM-DD")
    run_label: RunLabel = Field(description="pipeline run label")
    hot_baselines: bool = Field(False, description="run hot-baseline diagnostics and flag what they find")
    skip_cleanup: bool = Field(False, description="keep the concat MS (and the Phase 1 MS) on NVMe")
    cleanup_nvme: bool = Field(False, description="remove the whole work dir after archiving")
    targets: list[str] | None = Field(None, description="target-list files for photometry")
    catalog: str | None = Field(None, description="Catalogue (CSV: name, ra, dec) that labels transient-search "
                                "candidates. The seed calls it a 'BDSF catalog for transient search masking'; orca's "
                                "search, like ours, masks with its own masks and only labels with it. Empty: the "
                                "site's transient_catalog")
    clean_snapshots: bool = Field(False, description="also make CLEANed Stokes I snapshots (fpacked)")
    clean_reduced_pixels: bool = Field(False, description="clean snapshots use the subband's pixel tier")
    reduced_pixels: bool = Field(False, description="images use the subband's pixel tier")
    skip_science: bool = Field(False, description="skip the science steps after primary-beam correction")
    compress_snapshots: bool = Field(False, description="fpack the pilot snapshots")
    bp_table: str | None = Field(None, description="bandpass table used in Phase 1 (recorded in provenance)")
    xy_table: str | None = Field(None, description="XY-phase table used in Phase 1 (recorded in provenance)")
    # newer orca
    snapshot_only: bool = Field(False, description="only snapshots: clean_snapshots on, no science, no cube")
    archive_concat_ms: bool = Field(False, description="archive the concatenated MS as well")
    cube: bool = Field(False, description="also make a spectral cube of the deep I-Deep-Taper-Robust-0 image")
    cube_only: bool = Field(False, description="only the cube: no clean snapshots, no science; archives the concat MS")
    cube_dewarp: bool = Field(False, description="dewarp each cube channel with the MFS screen x (nu_MFS/nu)^2")
    # ours
    archive_root: WriteRoot | None = Field(None, description="archive root; empty: the site's archive_root")
    overwrite: bool | None = Field(None, description="replace an existing, different archive of this unit; "
                                   "empty: the site's archive_overwrite")
    strategy: str | None = Field(None, description="AOFlagger Lua strategy file; empty: the site's aoflagger_strategy "
                                "(when that is empty too, AOFlagger's generic strategy)")
    beam: str | None = Field(None, description="H5 beam model for pb-correct; empty: the site's beam_model")
    vlssr_catalog: str | None = Field(None, description="VLSSr text catalogue for dewarp; empty: the site's "
                                     "vlssr_catalog")
    image_size: int | None = Field(None, description="override every image's size in pixels (tests); empty: "
                                 "the subband's pixel tier")
    image_scale_deg: float | None = Field(None, description="override every image's pixel size in degrees "
                                          "(tests); empty: the subband's pixel tier")
    wsclean_threads: int | None = Field(None, description="WSClean -j; empty: the site's wsclean_threads")

    @model_validator(mode="after")
    def _modes(self):
        """The modes' implications, here and nowhere else (orca's process_subband_task and its CLI)."""
        if self.snapshot_only and self.cube_only:
            raise ValueError("snapshot_only and cube_only exclude each other")
        if self.snapshot_only:
            self.clean_snapshots, self.skip_science, self.cube = True, True, False
        if self.cube_only:
            self.cube, self.clean_snapshots, self.skip_science, self.archive_concat_ms = True, False, True, True
        return self

    @model_validator(mode="after")
    def _site_defaults(self):
        """Site data (``config.SiteConfig``) fills what a run leaves empty, so the unit records what it used."""
        site = config.site()
        if self.strategy is None:
            self.strategy = site.aoflagger_strategy or None
        if self.overwrite is None:
            self.overwrite = site.archive_overwrite
        if self.catalog is None:
            self.catalog = site.transient_catalog or None
        if self.beam is None:
            self.beam = site.beam_model
        if self.vlssr_catalog is None:
            self.vlssr_catalog = site.vlssr_catalog
        return self

    @property
    def science_imaging(self) -> bool:
        return science_imaging(self)

    @field_validator("catalog", "bp_table", "xy_table", "archive_root", "strategy", "beam", "vlssr_catalog",
                     "overwrite", "image_size", "image_scale_deg", "wsclean_threads", mode="before")
    @classmethod
    def _empty_is_none(cls, value):
        """Argo passes an unset optional path as an empty string."""
        return None if value == "" else value


def science_imaging(params) -> bool:
    """The 7 science recipes and their PB correction run unless a mode asks for snapshots or a cube only."""
    return not (getattr(params, "snapshot_only", False) or getattr(params, "cube_only", False))


def peel(params) -> bool:
    """Phase 1 peels when either kind of source is to be peeled."""
    return bool(params.peel_sky or params.peel_rfi)


DERIVED_SWITCHES = {"science_imaging": science_imaging, "peel": peel}  # switches computed from the parameters


def _switch(params, name: str) -> bool:
    return bool(DERIVED_SWITCHES[name](params) if name in DERIVED_SWITCHES else getattr(params, name))


def switch_names(steps) -> list[str]:
    """Every switch the steps use, in the order they first appear."""
    names = [n for s in steps for n in (s.switch, s.unless) if n]
    return list(dict.fromkeys(names))


def switch_values(params, steps) -> dict[str, bool]:
    """The value of every switch of ``steps`` for these (validated) parameters: the modes already applied.

    Argo's ``when`` expressions test these values (preflight's outputs), so the implications of the modes
    (``UnitParameters._modes``) are computed here, once, and never re-written as expressions."""
    return {name: _switch(params, name) for name in switch_names(steps)}


@dataclass(frozen=True)
class PipelineStep:
    """One step of the pipeline: its registry name, the switch that enables it, where its inputs come from."""
    name: str
    switch: str | None = None  # a bool of the parameters (or DERIVED_SWITCHES) that must be true to run
    unless: str | None = None  # a bool of the parameters (or DERIVED_SWITCHES) that must be false to run
    inputs: dict[str, str] = field(default_factory=dict)

    def enabled(self, params) -> bool:
        on = _switch(params, self.switch) if self.switch else True
        off = _switch(params, self.unless) if self.unless else False
        return on and not off

    @property
    def producers(self) -> list[str]:
        """The earlier steps whose results this step's inputs name."""
        return list(dict.fromkeys(src.split(".", 1)[0] for src in self.inputs.values() if "." in src))


# Phase 1 of one MS (``prepare-ms``): its sub-steps in order. Each reads the MS the one before left on NVMe.
PHASE1: tuple[PipelineStep, ...] = (
    PipelineStep("stage-refs"),
    PipelineStep("copy"),
    PipelineStep("flag-antennas"),
    PipelineStep("apply-calibration"),
    PipelineStep("peel", switch="peel"),
)


CONCAT_MS = "concat.concat_ms"

PHASE2: tuple[PipelineStep, ...] = (
    PipelineStep("concat"),
    PipelineStep("fix-field", inputs={"ms": CONCAT_MS}),
    PipelineStep("rephase", inputs={"ms": CONCAT_MS}),
    PipelineStep("aoflagger", inputs={"ms": CONCAT_MS}),
    PipelineStep("pilot-snapshots", inputs={"ms": CONCAT_MS}),
    PipelineStep("snapshot-qa", inputs={"ms": CONCAT_MS, "snapshots": "pilot-snapshots.images"}),
    PipelineStep("hot-baselines", switch="hot_baselines", inputs={"ms": CONCAT_MS}),
    PipelineStep("science-images", switch="science_imaging", inputs={"ms": CONCAT_MS}),
    PipelineStep("pb-correct", switch="science_imaging"),
    # science, in orca's order; dewarp hands on the images to use (dewarped, else the PB-corrected ones)
    PipelineStep("dewarp", unless="skip_science", inputs={
        "deep_image": "pb-correct.deep_image", "deep_images": "pb-correct.deep_images",
        "interval_images": "pb-correct.interval_images", "catalogue": "vlssr_catalog"}),
    PipelineStep("photometry", unless="skip_science", inputs={
        "target_lists": "targets", "deep_images": "dewarp.deep_images", "interval_images": "dewarp.interval_images"}),
    PipelineStep("transient-search", unless="skip_science", inputs={
        "catalogue": "catalog", "deep_images": "dewarp.deep_images", "interval_images": "dewarp.interval_images"}),
    PipelineStep("flux-check", unless="skip_science", inputs={
        "deep_image": "dewarp.deep_image", "noise_images": "dewarp.deep_images"}),
    PipelineStep("cube", switch="cube", inputs={"ms": CONCAT_MS, "catalogue": "vlssr_catalog"}),
    PipelineStep("clean-snapshots", switch="clean_snapshots", inputs={"ms": CONCAT_MS}),
    PipelineStep("movies"),  # from whatever snapshots exist; none from fewer than 10
    PipelineStep("compress", switch="compress_snapshots"),
    PipelineStep("provenance"),
    PipelineStep("qa-summary"),  # always: the page says what ran, failed or was switched off
    PipelineStep("archive", inputs={"ms": CONCAT_MS}),
)
