"""Phase 2's shape, written once: its parameters, its steps in order, the switch that enables each, and
how each step's options are filled. ``process-subband`` runs this list; nothing else copies it.

A step's options are filled by name: from the unit's parameters (``UnitParameters``: the seed's
``process_subband_task`` arguments plus ours), then from ``inputs``, which maps an option to either a
parameter name or ``"<step>.<result field>"`` of an earlier step. Options a step has and neither source
fills keep the step's own defaults.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import BaseModel, Field, field_validator, model_validator

from .labels import LstLabel, ObsDate, RunLabel, Subband, WriteRoot


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
    catalog: str | None = Field(None, description="catalogue for transient-search labels")
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
    archive_root: WriteRoot | None = Field(None, description="archive root (default: the site's archive_root)")
    overwrite: bool = Field(False, description="replace an existing, different archive of this unit")
    strategy: str | None = Field(None, description="AOFlagger Lua strategy (default: AOFlagger's generic one)")
    beam: str | None = Field(None, description="H5 beam model for pb-correct (default: the site's beam_model)")
    vlssr_catalog: str | None = Field(None, description="VLSSr text catalogue for dewarp (default: the site's)")
    image_size: int | None = Field(None, description="override every image's size in pixels (tests)")
    image_scale_deg: float | None = Field(None, description="override every image's pixel size in degrees (tests)")
    wsclean_threads: int | None = Field(None, description="WSClean -j (default: site wsclean_threads)")

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

    @property
    def science_imaging(self) -> bool:
        return science_imaging(self)

    @field_validator("catalog", "bp_table", "xy_table", "archive_root", "strategy", "beam", "vlssr_catalog",
                     mode="before")
    @classmethod
    def _empty_is_none(cls, value):
        """Argo passes an unset optional path as an empty string."""
        return None if value == "" else value


def science_imaging(params) -> bool:
    """The 7 science recipes and their PB correction run unless a mode asks for snapshots or a cube only."""
    return not (getattr(params, "snapshot_only", False) or getattr(params, "cube_only", False))


DERIVED_SWITCHES = {"science_imaging": science_imaging}  # switches computed from the parameters


def _switch(params, name: str) -> bool:
    return bool(DERIVED_SWITCHES[name](params) if name in DERIVED_SWITCHES else getattr(params, name))


@dataclass(frozen=True)
class Phase2Step:
    """One step of Phase 2: its registry name, the switch that enables it, where its inputs come from."""
    name: str
    switch: str | None = None  # a bool of UnitParameters that must be true for the step to run
    unless: str | None = None  # a bool of UnitParameters that must be false for the step to run
    inputs: dict[str, str] = field(default_factory=dict)

    def enabled(self, params: UnitParameters) -> bool:
        on = _switch(params, self.switch) if self.switch else True
        off = _switch(params, self.unless) if self.unless else False
        return on and not off


CONCAT_MS = "concat.concat_ms"

PHASE2: tuple[Phase2Step, ...] = (
    Phase2Step("concat"),
    Phase2Step("fix-field", inputs={"ms": CONCAT_MS}),
    Phase2Step("rephase", inputs={"ms": CONCAT_MS}),
    Phase2Step("aoflagger", inputs={"ms": CONCAT_MS}),
    Phase2Step("pilot-snapshots", inputs={"ms": CONCAT_MS}),
    Phase2Step("snapshot-qa", inputs={"ms": CONCAT_MS, "snapshots": "pilot-snapshots.images"}),
    Phase2Step("hot-baselines", switch="hot_baselines", inputs={"ms": CONCAT_MS}),
    Phase2Step("science-images", switch="science_imaging", inputs={"ms": CONCAT_MS}),
    Phase2Step("pb-correct", switch="science_imaging"),
    # science, in orca's order; dewarp hands on the images to use (dewarped, else the PB-corrected ones)
    Phase2Step("dewarp", unless="skip_science", inputs={
        "deep_image": "pb-correct.deep_image", "deep_images": "pb-correct.deep_images",
        "interval_images": "pb-correct.interval_images", "catalogue": "vlssr_catalog"}),
    Phase2Step("photometry", unless="skip_science", inputs={
        "target_lists": "targets", "deep_images": "dewarp.deep_images", "interval_images": "dewarp.interval_images"}),
    Phase2Step("transient-search", unless="skip_science", inputs={
        "catalogue": "catalog", "deep_images": "dewarp.deep_images", "interval_images": "dewarp.interval_images"}),
    Phase2Step("flux-check", unless="skip_science", inputs={
        "deep_image": "dewarp.deep_image", "noise_images": "dewarp.deep_images"}),
    Phase2Step("cube", switch="cube", inputs={"ms": CONCAT_MS, "catalogue": "vlssr_catalog"}),
    Phase2Step("clean-snapshots", switch="clean_snapshots", inputs={"ms": CONCAT_MS}),
    Phase2Step("movies"),  # from whatever snapshots exist; none from fewer than 10
    Phase2Step("compress", switch="compress_snapshots"),
    Phase2Step("provenance"),
    Phase2Step("qa-summary"),  # always: the page says what ran, failed or was switched off
    Phase2Step("archive", inputs={"ms": CONCAT_MS}),
)
