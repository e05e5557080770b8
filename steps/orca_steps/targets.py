"""Target lists (CSV, as orca's users write them) and solar-system bodies as targets.

Columns (header names case-insensitive): ``name`` (or ``source``), ``ra`` and ``dec`` (degrees or
sexagesimal, e.g. ``14h11m20s`` / ``+52d12m10s``), optional ``stokes`` (which Stokes to search:
``I``, ``V`` or ``IV``; default ``IV``) and optional ``confusers`` (nearby sources to mask, ``;``
separated, each ``ra dec``).
"""
from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

from .errors import InputError

SOLAR_SYSTEM_BODIES = ("moon", "mercury", "venus", "mars", "jupiter", "saturn", "uranus", "neptune")
_ALIASES = {"name": ("name", "source", "target"), "ra": ("ra", "ra_deg", "raj2000"),
            "dec": ("dec", "dec_deg", "dej2000", "decj2000"), "stokes": ("stokes", "detection_stokes"),
            "confusers": ("confusers", "confusing_sources", "confusing")}


@dataclass
class Target:
    name: str
    ra_deg: float
    dec_deg: float
    stokes: str = "IV"
    confusers: list[tuple[float, float]] = field(default_factory=list)
    kind: str = "target"  # or "solar-system"


def parse_angle(text: str, kind: str) -> float:
    """Degrees from a number (degrees) or a sexagesimal string (RA in hours when it has h/: form)."""
    from astropy.coordinates import Angle

    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    unit = "hourangle" if kind == "ra" and ("h" in text or ":" in text) else "deg"
    return float(Angle(text, unit=unit).deg)


def load_targets(path: str | Path) -> list[Target]:
    """Targets from one CSV; InputError naming the file and line on any malformed entry."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: target list does not exist")
    with open(p, newline="") as fh:
        reader = csv.DictReader(fh)
        header = {h.strip().lower(): h for h in (reader.fieldnames or [])}
        cols = {key: next((header[a] for a in names if a in header), None) for key, names in _ALIASES.items()}
        missing = [k for k in ("name", "ra", "dec") if cols[k] is None]
        if missing:
            raise InputError(f"{p}: target list lacks column(s) {missing}; header is {reader.fieldnames}")
        targets = []
        for line, row in enumerate(reader, start=2):
            try:
                stokes = (row.get(cols["stokes"]) or "IV").strip().upper() if cols["stokes"] else "IV"
                if not stokes or set(stokes) - set("IV"):
                    raise ValueError(f"stokes {stokes!r} is not I, V or IV")
                confusers = []
                for item in (row.get(cols["confusers"]) or "").split(";") if cols["confusers"] else []:
                    if item.strip():
                        ra_c, dec_c = item.split()
                        confusers.append((parse_angle(ra_c, "ra"), parse_angle(dec_c, "dec")))
                name = (row[cols["name"]] or "").strip()
                if not name:
                    raise ValueError("empty name")
                targets.append(Target(name, parse_angle(row[cols["ra"]] or "", "ra"),
                                      parse_angle(row[cols["dec"]] or "", "dec"), stokes, confusers))
            except (ValueError, TypeError, AttributeError) as exc:
                raise InputError(f"{p}, line {line}: malformed target entry {dict(row)}: {exc}") from exc
    return targets


def solar_system_targets(time_s: float) -> list[Target]:
    """The Moon and planets at ``time_s`` (MJD s), GCRS positions seen from OVRO (astropy built-in ephemeris)."""
    from astropy.coordinates import EarthLocation, get_body
    from astropy.time import Time
    from astropy.utils import iers

    from .config import OVRO_HEIGHT_M, OVRO_LAT_DEG, OVRO_LON_DEG

    iers.conf.auto_download = False
    iers.conf.auto_max_age = None
    iers.conf.iers_degraded_accuracy = "warn"
    t = Time(time_s / 86400.0, format="mjd", scale="utc")
    site = EarthLocation.from_geodetic(OVRO_LON_DEG, OVRO_LAT_DEG, OVRO_HEIGHT_M)
    out = []
    for body in SOLAR_SYSTEM_BODIES:
        c = get_body(body, t, site)
        out.append(Target(body.capitalize(), float(c.ra.deg), float(c.dec.deg), "IV", [], "solar-system"))
    return out
