"""Step ``rephase`` (orca's ``chgcentre``): move the phase centre to the middle of the LST hour.

New centre: RA = the LST hour's middle (LST 14h -> 14h30m00s), Dec = config.PHASE_CENTRE_DEC_DEG.
orca passes that string to chgcentre, which reads it as J2000; we do the same, so images are centred
where orca's are. (The apparent-of-date meridian at mid-hour differs by about 0.3 degrees of
precession; both are near zenith, which is all the choice is for.)

Per row: UVW is recomputed for the new centre from the antenna positions at the row's TIME with
casacore measures, and every data column present (DATA, CORRECTED_DATA, MODEL_DATA) is multiplied by
exp(-2 pi i (w_new - w_old) / lambda), with w_old the row's stored W. This is exact for rows phased to
any centre, as long as the stored UVW belongs to the data, which is why the concat's rows, each phased
to its own zenith, are moved correctly although fix-field left one FIELD row. (chgcentre does the
same; DP3 phaseshift instead rotates UVW from the FIELD centre, right only for single-field data.)
Each row's centre is read from ORCA_PHASE_DIR (fix-field) or else its FIELD row, and updated, so a
second run to the same centre moves nothing.

A wrong LST label would move the centre far from the sky the data saw (71 degrees for a label 5 h
off). The right centre is within about 6 degrees of the zenith at every time of its hour (7.5 degrees
of hour angle at Dec +37), one hour off is about 14 degrees away at one end. So the step refuses,
before writing, a centre more than ``MAX_ZENITH_DISTANCE_DEG`` from the zenith at the first, middle
or last TIME of the data.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field

from . import msstate
from .concat import DATA_COLUMNS
from .config import PHASE_CENTRE_DEC_DEG, parse_lst_label
from .constants import C_M_S
from .coords import antenna_uvw, zenith_j2000
from .errors import InputError
from .fix_field import PHASE_DIR_COLUMN, field_phase_dirs
from .labels import LstLabel
from .logs import get_logger, log, step_timer
from .msio import antenna_positions, check_ms, ddid_to_spw, open_ms, open_table, spectral_windows
from .msread import read_chunks

_logger = get_logger("rephase")
SAME_CENTRE_RAD = 1e-10  # rows closer than this to the target are already there
MAX_ZENITH_DISTANCE_DEG = 10.0  # a new centre further than this from the zenith of the data is refused


class Options(BaseModel):
    ms: str = Field(description="MS to re-centre in place (the fixed concat)")
    lst_label: LstLabel = Field(description="LST hour of the unit, e.g. 14h; the centre is its middle")


class Result(BaseModel):
    ms_path: str
    phase_centre: str = Field(description="new J2000 centre as orca's chgcentre string, e.g. 14h30m00s +37d12m57.057s")
    ra_deg: float
    dec_deg: float
    columns: list[str] = Field(description="data columns rotated")
    n_rows: int
    rows_moved: int
    max_shift_deg: float = Field(description="largest angle any row's centre moved")


def lst_phase_centre(lst_label: str) -> tuple[float, float]:
    """J2000 (ra, dec) in radians for a unit's LST hour: RA = hour + 30 min, Dec = config."""
    hour = parse_lst_label(lst_label)
    return np.deg2rad((hour + 0.5) * 15.0), np.deg2rad(PHASE_CENTRE_DEC_DEG)


def centre_text(ra: float, dec: float) -> str:
    """chgcentre-style text, e.g. '14h30m00s +37d12m57.057s'."""
    from astropy.coordinates import Angle

    ra_s = Angle(ra, "rad").to_string(unit="hourangle", sep="hms", precision=0, pad=True)
    dec_s = Angle(dec, "rad").to_string(unit="deg", sep="dms", precision=3, alwayssign=True, pad=True)
    return f"{ra_s} {dec_s}"


def _separation(a: np.ndarray, ra: float, dec: float) -> np.ndarray:
    """Angle (rad) between rows of (ra, dec) in ``a`` and one direction."""
    hav = np.sin((a[:, 1] - dec) / 2) ** 2 + np.cos(a[:, 1]) * np.cos(dec) * np.sin((a[:, 0] - ra) / 2) ** 2
    return 2 * np.arcsin(np.sqrt(np.clip(hav, 0.0, 1.0)))  # haversine: exact near zero, unlike arccos


class _UVWCache:
    """Antenna UVW towards the new centre, computed once per distinct TIME."""

    def __init__(self, itrf: np.ndarray, ra: float, dec: float):
        self.itrf, self.ra, self.dec = itrf, ra, dec
        self.cache: dict[float, np.ndarray] = {}

    def baseline_uvw(self, time: np.ndarray, a1: np.ndarray, a2: np.ndarray) -> np.ndarray:
        out = np.empty((time.size, 3))
        for t in np.unique(time):
            if t not in self.cache:
                if len(self.cache) > 64:
                    self.cache.clear()
                self.cache[t] = antenna_uvw(self.itrf, float(t), self.ra, self.dec)
            rows = time == t
            ant = self.cache[t]
            out[rows] = ant[a2[rows]] - ant[a1[rows]]
        return out


def check_near_zenith(ms: Path, ra: float, dec: float, max_deg: float = MAX_ZENITH_DISTANCE_DEG) -> None:
    """InputError if (ra, dec) is more than ``max_deg`` from the zenith at the first, middle or last TIME."""
    with open_ms(ms) as tab:
        times = np.sort(np.unique(tab.getcol("TIME"))) if tab.nrows() else np.zeros(0)
    if times.size == 0:
        return
    picks = times[[0, times.size // 2, -1]]
    zeniths = np.array([zenith_j2000(float(t)) for t in picks])
    far = np.rad2deg(_separation(zeniths, ra, dec)).max()
    if far > max_deg:
        raise InputError(f"{ms}: new phase centre {centre_text(ra, dec)} is {far:.1f} deg from the zenith of the "
                         f"data (more than {max_deg:g}): is the LST label right for these times?")


def rephase_ms(ms: str | Path, ra: float, dec: float,
               max_zenith_distance_deg: float = MAX_ZENITH_DISTANCE_DEG) -> Result:
    """Move every row of ``ms`` to the J2000 centre (ra, dec) (radians), in place, in row chunks."""
    ms = check_ms(ms)
    check_near_zenith(ms, ra, dec, max_zenith_distance_deg)
    _, itrf = antenna_positions(ms)
    spw_freqs = spectral_windows(ms)
    spw_of_ddid = ddid_to_spw(ms)
    fields = field_phase_dirs(ms)
    target = np.array([ra, dec])
    moved, max_shift = 0, 0.0
    with open_ms(ms, readonly=False) as tab:
        n_rows = tab.nrows()
        columns = [c for c in DATA_COLUMNS if c in tab.colnames()]
        per_row_dirs = PHASE_DIR_COLUMN in tab.colnames()
        if not per_row_dirs and len(fields) == 0:
            raise InputError(f"{ms}: FIELD table is empty and there is no {PHASE_DIR_COLUMN} column")
        uvw_new = _UVWCache(itrf, ra, dec)
        inv_lambda = np.stack([spw_freqs[spw] / C_M_S for spw in spw_of_ddid])  # (nddid, nchan)
        centre_column = PHASE_DIR_COLUMN if per_row_dirs else "FIELD_ID"
        with msstate.writing(tab, "rephase"):
            for chunk in read_chunks(tab, [centre_column, "TIME", "ANTENNA1", "ANTENNA2", "UVW", "DATA_DESC_ID",
                                           *columns]):
                centre = chunk[PHASE_DIR_COLUMN] if per_row_dirs else fields[chunk["FIELD_ID"]]
                shift = _separation(centre, ra, dec)
                rows = np.flatnonzero(shift > SAME_CENTRE_RAD)
                if rows.size == 0:
                    continue
                lo, hi = int(rows[0]), int(rows[-1]) + 1  # write the span of rows that move
                span = chunk.span(lo, hi)
                sel = shift[lo:hi] > SAME_CENTRE_RAD
                uvw = span["UVW"]
                new = uvw_new.baseline_uvw(span["TIME"], span["ANTENNA1"], span["ANTENNA2"])
                new[~sel] = uvw[~sel]
                phasor = np.exp(-2j * np.pi * (new[:, 2] - uvw[:, 2])[:, None] * inv_lambda[span["DATA_DESC_ID"]])
                phasor = phasor.astype(np.complex64)[:, :, None]
                for column in columns:
                    data = span[column]
                    data *= phasor
                    span.put(column, data)
                span.put("UVW", new)
                if per_row_dirs:
                    centre[lo:hi][sel] = target
                    span.put(PHASE_DIR_COLUMN, centre[lo:hi])
                moved += int(sel.sum())
                max_shift = max(max_shift, float(shift.max()))
            with open_table(ms / "FIELD", readonly=False) as field:
                for col in ("PHASE_DIR", "DELAY_DIR", "REFERENCE_DIR"):
                    if col in field.colnames() and field.nrows():
                        field.putcol(col, np.tile(target, (field.nrows(), 1, 1)))
            msstate.mark_done(tab, "rephase", {"ra_deg": float(np.rad2deg(ra)), "dec_deg": float(np.rad2deg(dec))})
    text = centre_text(ra, dec)
    log(_logger, "rephased", ms=str(ms), centre=text, rows_moved=moved, max_shift_deg=round(np.rad2deg(max_shift), 4))
    return Result(ms_path=str(ms), phase_centre=text, ra_deg=float(np.rad2deg(ra)), dec_deg=float(np.rad2deg(dec)),
                  columns=columns, n_rows=n_rows, rows_moved=moved, max_shift_deg=float(np.rad2deg(max_shift)))


def run(options: Options) -> Result:
    ra, dec = lst_phase_centre(options.lst_label)
    with step_timer("rephase", Path(options.ms).parent, lst_label=options.lst_label):
        return rephase_ms(options.ms, ra, dec)
