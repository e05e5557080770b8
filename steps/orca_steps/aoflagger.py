"""Step ``aoflagger``: flag RFI in the concat MS with the AOFlagger command line and a Lua strategy.

orca runs a strategy tuned for the OVRO-LWA (``LWA_opt_GH1.lua``) given by the user; without one we
use AOFlagger's bundled generic strategy from the Debian package. The result reports the flagged
fraction before and after, counted from FLAG in row chunks.

Strategies may clear the flags they are given (the bundled one does, unless edited): the flags of
Phase 1 (dead antennas, flagged solutions, channels above 85 MHz) would be lost. So before the first
run the step keeps a copy of FLAG in ``PRIOR_FLAG_COLUMN`` and ORs it back in after every run.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field

from . import msstate
from .errors import InputError
from .logs import get_logger, log, step_timer
from .msio import ensure_column, open_ms
from .msread import read_chunks
from .products import LOGS_FOLDER
from .tools import require_tool, run_tool

_logger = get_logger("aoflagger")
# Where the Debian package (and a from-source install) put the bundled strategies.
STRATEGY_DIRS = ("/usr/share/aoflagger/strategies", "/usr/local/share/aoflagger/strategies")
DEFAULT_STRATEGY_NAME = "generic-default.lua"
PRIOR_FLAG_COLUMN = "ORCA_FLAG_BEFORE_AOFLAGGER"


class Options(BaseModel):
    ms: str = Field(description="MS to flag in place (the re-centred concat)")
    strategy: str | None = Field(None, description="Lua strategy file (orca: LWA_opt_GH1.lua); "
                                                   "default: AOFlagger's bundled generic-default.lua")
    column: str = Field("CORRECTED_DATA", description="data column AOFlagger reads")
    threads: int | None = Field(None, description="AOFlagger -j (default: one thread per core)")


class Result(BaseModel):
    ms_path: str
    strategy: str
    column: str
    flagged_before: float = Field(description="fraction of FLAG set before")
    flagged_after: float = Field(description="fraction of FLAG set after")
    seconds: float = Field(description="wall time of the aoflagger call")
    log_file: str
    reused: bool = Field(False, description="the MS was already flagged with this strategy; AOFlagger did not run")


def default_strategy() -> Path:
    """AOFlagger's bundled generic strategy, wherever the installed package keeps it."""
    for folder in STRATEGY_DIRS:
        candidate = Path(folder) / DEFAULT_STRATEGY_NAME
        if candidate.is_file():
            return candidate
    raise InputError(f"AOFlagger's bundled strategy {DEFAULT_STRATEGY_NAME} is not in any of "
                     f"{', '.join(STRATEGY_DIRS)}; pass --strategy")


def flagged_fraction(ms: str | Path) -> float:
    """Fraction of FLAG values set, over the whole MS, read in row chunks."""
    flagged = total = 0
    with open_ms(ms) as tab:
        for chunk in read_chunks(tab, ["FLAG"]):
            flagged += int(np.count_nonzero(chunk["FLAG"]))
            total += chunk["FLAG"].size
    return flagged / total if total else 0.0


def keep_prior_flags(ms: str | Path) -> bool:
    """Copy FLAG to PRIOR_FLAG_COLUMN once, before AOFlagger first touches the MS. True if copied now."""
    with open_ms(ms, readonly=False) as tab:
        if PRIOR_FLAG_COLUMN in tab.colnames():
            return False
        with msstate.writing(tab, "aoflagger"):
            ensure_column(tab, PRIOR_FLAG_COLUMN, like="FLAG")
            for chunk in read_chunks(tab, ["FLAG"]):
                chunk.put(PRIOR_FLAG_COLUMN, chunk["FLAG"])
    return True


def restore_prior_flags(ms: str | Path) -> None:
    """FLAG |= PRIOR_FLAG_COLUMN: flags set before AOFlagger survive any strategy."""
    with open_ms(ms, readonly=False) as tab:
        for chunk in read_chunks(tab, ["FLAG", PRIOR_FLAG_COLUMN]):
            chunk.put("FLAG", chunk["FLAG"] | chunk[PRIOR_FLAG_COLUMN])


def run_aoflagger(ms: str | Path, strategy: str | Path | None = None, column: str = "CORRECTED_DATA",
                  threads: int | None = None, log_file: str | Path | None = None) -> Result:
    """Run ``aoflagger -strategy S -column C ms``; returns the flagged fractions and the tool's time."""
    require_tool("aoflagger")
    strategy = Path(strategy) if strategy else default_strategy()
    if not strategy.is_file():
        raise InputError(f"{strategy}: AOFlagger strategy file does not exist")
    with open_ms(ms) as tab:
        if column not in tab.colnames():
            raise InputError(f"{ms}: has no {column} column for AOFlagger to read")
    log_file = Path(log_file) if log_file else Path(ms).parent / LOGS_FOLDER / "aoflagger.log"
    before = flagged_fraction(ms)
    done = msstate.done_info(ms, "aoflagger")
    if done == {"strategy": str(strategy), "column": column}:
        log(_logger, "already flagged with this strategy", ms=str(ms), strategy=str(strategy))
        return Result(ms_path=str(ms), strategy=str(strategy), column=column, flagged_before=before,
                      flagged_after=before, seconds=0.0, log_file=str(log_file), reused=True)
    args = ["aoflagger", "-strategy", str(strategy), "-column", column]
    if threads:
        args += ["-j", str(int(threads))]
    keep_prior_flags(ms)
    # A run killed before the restore is redone in full on resume (it is not marked done yet).
    seconds = run_tool([*args, str(ms)], log_file=log_file)
    restore_prior_flags(ms)
    msstate.record_done(ms, "aoflagger", {"strategy": str(strategy), "column": column})
    after = flagged_fraction(ms)
    log(_logger, "aoflagger finished", ms=str(ms), strategy=str(strategy), flagged_before=round(before, 4),
        flagged_after=round(after, 4))
    return Result(ms_path=str(ms), strategy=str(strategy), column=column, flagged_before=before,
                  flagged_after=after, seconds=seconds, log_file=str(log_file))


def run(options: Options) -> Result:
    with step_timer("aoflagger", Path(options.ms).parent):
        return run_aoflagger(options.ms, options.strategy, options.column, options.threads)
