"""Every Argo object of the pipeline, by the file it renders to (one file per template).

The shapes live in ``templates_units`` (per MS / per hour) and ``templates_night`` (per night);
``templates_common`` holds what they share. ``orca-argo render`` writes these to the chart.
"""
from __future__ import annotations

from .templates_common import with_pending_timeout
from .templates_night import nightly, subband_dispatch, subband_hours
from .templates_units import subband_pipeline, subband_prepare_ms, subband_process

BUILDERS = {
    "subband-prepare-ms": subband_prepare_ms,
    "subband-process": subband_process,
    "subband-pipeline": subband_pipeline,
    "subband-hours": subband_hours,
    "subband-dispatch": subband_dispatch,
    "orca-nightly": nightly,
}


def manifests() -> dict[str, dict]:
    """file stem -> Argo object (a plain dict, as Hera renders it)."""
    return {name: with_pending_timeout(build().to_dict()) for name, build in BUILDERS.items()}
