"""Step ``fix-field``: one FIELD row and FIELD_ID = 0 in every row, as orca does before imaging.

The concat holds one FIELD row per integration (each phased to its own zenith). Imagers and
AOFlagger want one field, so orca keeps the first row and points every row at it. That row's
PHASE_DIR is then wrong for every other integration; before dropping the rows we record each row's
true J2000 phase centre in a column, ORCA_PHASE_DIR (rad), so nothing is lost. Rephase moves every
row to one centre and updates both, after which the single FIELD row is right for all rows.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field

from . import msstate
from .errors import InputError
from .logs import get_logger, log, step_timer
from .msio import check_ms, open_ms, open_table
from .msread import read_chunks

_logger = get_logger("fix-field")
PHASE_DIR_COLUMN = "ORCA_PHASE_DIR"


class Options(BaseModel):
    ms: str = Field(description="concat MS to fix in place")


class Result(BaseModel):
    ms_path: str
    n_fields_before: int
    n_rows: int
    already_done: bool = Field(description="the MS had been fixed already; nothing was written")


def field_phase_dirs(ms: str | Path) -> np.ndarray:
    """PHASE_DIR (ra, dec) in radians of every FIELD row, shape (nfield, 2)."""
    with open_table(Path(ms) / "FIELD") as field:
        if field.nrows() == 0:
            return np.zeros((0, 2))
        return np.asarray(field.getcol("PHASE_DIR"), dtype=float)[:, 0, :]


def _add_phase_dir_column(tab) -> None:
    from casacore import tables

    desc = tables.makearrcoldesc(PHASE_DIR_COLUMN, 0.0, shape=[2], valuetype="double",
                                 comment="J2000 phase centre of this row (what FIELD_ID pointed at before fix-field)",
                                 keywords={"QuantumUnits": ["rad", "rad"],
                                           "MEASINFO": {"type": "direction", "Ref": "J2000"}})
    tab.addcols(tables.maketabdesc(desc), {"TYPE": "StandardStMan", "NAME": f"{PHASE_DIR_COLUMN}_stman", "SPEC": {}})


def fix_field(ms: str | Path) -> Result:
    """Record each row's phase centre in ORCA_PHASE_DIR, set FIELD_ID to 0, keep the first FIELD row."""
    dirs = field_phase_dirs(check_ms(ms))
    with open_ms(ms, readonly=False) as tab:
        n_rows = tab.nrows()
        if msstate.done_in(tab, "fix-field") is not None:
            return Result(ms_path=str(ms), n_fields_before=len(dirs), n_rows=n_rows, already_done=True)
        for chunk in read_chunks(tab, ["FIELD_ID"]):  # check before writing anything
            field_id = chunk["FIELD_ID"]
            if field_id.min() < 0 or field_id.max() >= len(dirs):
                raise InputError(f"{ms}: FIELD_ID {field_id.min()}..{field_id.max()} but the FIELD table has "
                                 f"{len(dirs)} rows")
        with msstate.writing(tab, "fix-field"):
            if PHASE_DIR_COLUMN not in tab.colnames():
                _add_phase_dir_column(tab)
            for chunk in read_chunks(tab, ["FIELD_ID", PHASE_DIR_COLUMN]):
                chunk.put(PHASE_DIR_COLUMN, dirs[chunk["FIELD_ID"]])
                chunk.put("FIELD_ID", np.zeros(chunk.n, dtype=np.int32))
            with open_table(Path(ms) / "FIELD", readonly=False) as field:
                if field.nrows() > 1:
                    field.removerows(list(range(1, field.nrows())))
            msstate.mark_done(tab, "fix-field", {"n_fields_before": len(dirs)})
    log(_logger, "fixed FIELD_ID", ms=str(ms), n_fields_before=len(dirs), n_rows=n_rows)
    return Result(ms_path=str(ms), n_fields_before=len(dirs), n_rows=n_rows, already_done=False)


def run(options: Options) -> Result:
    with step_timer("fix-field", Path(options.ms).parent):
        return fix_field(options.ms)
