"""Every step the pipeline knows, in one list: CLI name -> (module, one-line summary).

A step module defines ``Options`` (a pydantic model whose fields are the CLI flags) and
``run(options) -> Result`` (a pydantic model naming its outputs). Modules are imported only
when their step runs, so ``orca-step --help`` stays fast.
"""

STEPS: dict[str, tuple[str, str]] = {
    # Test data
    "simulate": ("simulate", "Write a simulated OVRO-LWA night: input MS tree, cal tables, models, truth."),
    # Work discovery
    "discover": ("discover", "List (subband, LST hour) work units and their MS for a night."),
    "plan-unit": ("plan_unit", "Resolve one (subband, LST hour): node, NVMe work dir, MS list."),
    "chain-hours": ("chain_hours", "Static mode: the hours of one subband's chain, from discover's file."),
    # Orchestration bookkeeping (the Argo templates call these)
    "collect-ms": ("collect_ms", "Fan-in after Phase 1: list the MS that survived; enforce min_ms_fraction."),
    "unit-report": ("unit_report", "Exit hook of one hour: report what failed; clean NVMe if asked."),
    "run-report": ("run_report", "Exit handler of a night: report failed nodes and the queue's states."),
    "queue-claim": ("queue_claim", "Dispatch: a node's worker takes its next (subband, hour) unit."),
    "queue-finish": ("queue_finish", "Dispatch: record how a claimed unit ended."),
    # Phase 1, per MS
    "stage-refs": ("stage_refs", "Stage reference files into <work_dir>/refs once, safely under concurrency."),
    "copy": ("copy_ms", "Copy one .ms or .ms.tar from Lustre to the NVMe work dir."),
    "flag-antennas": ("flag_antennas", "Flag bad antennas from a list, a CSV, or autodetection."),
    "apply-calibration": ("apply_calibration", "Apply CASA bandpass (B) and XY-phase (Xf) tables into CORRECTED_DATA."),
    "peel": ("peel", "Peel bright sky sources and ground RFI from CORRECTED_DATA (TTCal models)."),
    "prepare-ms": ("prepare_ms", "Phase 1 for one MS: stage-refs, copy, flag, calibrate, peel."),
    # Phase 2, per subband-hour
    "concat": ("concat", "Concatenate Phase 1 outputs, time-sorted, dropping unreadable MS."),
    "fix-field": ("fix_field", "Set FIELD_ID to 0 in every row; keep one FIELD row."),
    "rephase": ("rephase", "Move the phase centre to the middle of the LST hour (orca's chgcentre)."),
    "aoflagger": ("aoflagger", "Flag RFI with AOFlagger and a Lua strategy."),
    "pilot-snapshots": ("pilot_snapshots", "WSClean dirty image per integration, named by UTC mid-time."),
    "snapshot-qa": ("snapshot_qa", "Per-snapshot rms/peak QA; flag bad integrations by TIME."),
    "hot-baselines": ("hot_baselines", "Find and flag hot baselines and antennas."),
    "science-images": ("science_images", "The 7 WSClean science recipes."),
    "cube": ("cube", "Spectral cube of the deep Stokes I recipe, PB-corrected (and dewarped) per channel."),
    "clean-snapshots": ("clean_snapshots", "CLEANed Stokes-I snapshots, fpacked."),
    "pb-correct": ("pb_correct", "Primary-beam correct images from an H5 beam model."),
    "dewarp": ("dewarp", "Ionospheric dewarping against a reference catalogue."),
    "photometry": ("photometry", "Target and solar-system photometry."),
    "transient-search": ("transient_search", "Stokes I difference and Stokes V blind transient search."),
    "flux-check": ("flux_check", "Flux-scale check on calibrator sources."),
    "qa-summary": ("qa_summary", "One self-contained HTML QA page per unit: every step's plots, tables and status."),
    "movies": ("movies", "Snapshot movies (I raw, I median-filtered, V) with ffmpeg."),
    "compress": ("compress", "fpack-compress snapshot FITS."),
    "provenance": ("provenance", "Write provenance.json: versions, parameters, inputs, node, timings."),
    "archive": ("archive", "Copy products atomically to the Lustre archive, then clean up NVMe."),
    "process-subband": ("process_subband", "Phase 2 for one subband-hour in one process, resumable."),
    # Phase 2 as Argo runs it: one pod per step of pipeline.PHASE2
    "phase2-preflight": ("phase2_preflight", "Phase 2's first pod: check everything, record the unit, give the switches."),
    "phase2-step": ("phase2_step", "One step of Phase 2 (pipeline.PHASE2), resumable, in its own pod."),
    "phase2-partial": ("phase2_partial", "Phase 2's failure hook: orca's best-effort partial archive."),
}
