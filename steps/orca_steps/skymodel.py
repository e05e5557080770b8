"""Sky and RFI models in TTCal's JSON formats, as orca's users have them.

Sky (``sources.json``): a list of sources, each with ``name`` and either flux fields directly (a point)
or a ``components`` list; a flux entry has ``ra``/``dec`` (sexagesimal strings), ``I``, ``Q``, ``U``,
``V``, ``freq`` (Hz) and ``index`` (log-polynomial coefficients); a Gaussian component adds
``major-fwhm``, ``minor-fwhm`` (arcsec) and ``position-angle`` (deg).
RFI (``rfi_*.json``): ``name``, ``sys: "WGS84"``, ``long``, ``lat`` (deg), ``el`` (m) and tabulated
``rfi-frequencies`` (Hz), ``rfi-I``, ``rfi-V`` (Jy); as in TTCal, a frequency takes the nearest entry's
values and the table is not sorted (a warning names an entry that is out of order).

Spectra follow TTCal: log10 S = log10 S0 + sum_n a_n log10(nu/nu0)^n; Q, U, V scale with I.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import InputError
from .logs import get_logger, log

_logger = get_logger("skymodel")

ARCSEC = np.pi / 180 / 3600


@dataclass
class Component:
    """A point (zero FWHM) or elliptical Gaussian with a TTCal power-law spectrum."""
    ra: float  # rad, J2000
    dec: float  # rad, J2000
    stokes: tuple[float, float, float, float]  # I, Q, U, V in Jy at ``freq``
    freq: float  # Hz
    index: list[float] = field(default_factory=list)
    major_fwhm: float = 0.0  # arcsec
    minor_fwhm: float = 0.0  # arcsec
    position_angle: float = 0.0  # deg, north through east

    def stokes_at(self, freqs: np.ndarray) -> np.ndarray:
        """(nfreq, 4) Stokes I, Q, U, V in Jy at ``freqs`` (Hz)."""
        freqs = np.atleast_1d(np.asarray(freqs, dtype=float))
        i0 = self.stokes[0]
        if i0 == 0:
            return np.zeros((freqs.size, 4))
        log_nu = np.log10(freqs / self.freq)
        log_i = np.full(freqs.size, np.log10(abs(i0)))
        for n, a in enumerate(self.index):
            log_i += a * log_nu ** (n + 1)
        flux_i = np.sign(i0) * 10.0 ** log_i
        return flux_i[:, None] * (np.asarray(self.stokes) / i0)[None, :]

    @property
    def is_gaussian(self) -> bool:
        return self.major_fwhm > 0 or self.minor_fwhm > 0


@dataclass
class SkySource:
    name: str
    components: list[Component]

    def flux_at(self, freq: float) -> float:
        return float(sum(c.stokes_at(np.array([freq]))[0, 0] for c in self.components))


@dataclass
class RFISource:
    """A terrestrial emitter fixed to the ground: a near-field source with a tabulated spectrum."""
    name: str
    lon: float  # deg, WGS84
    lat: float  # deg
    el: float  # m
    freqs: np.ndarray  # Hz
    flux_i: np.ndarray  # Jy
    flux_v: np.ndarray  # Jy

    def stokes_at(self, freqs: np.ndarray) -> np.ndarray:
        """(nfreq, 4) Stokes of the table entry nearest each frequency, the first on a tie.

        As TTCal's RFISpectrum (``indmin(abs2(channel - nu))``): no interpolation, no sorting, so a
        malformed frequency in the table only ever serves the frequencies nearest to it.
        """
        freqs = np.atleast_1d(np.asarray(freqs, dtype=float))
        nearest = np.argmin(np.abs(freqs[:, None] - self.freqs[None, :]), axis=1)
        out = np.zeros((freqs.size, 4))
        out[:, 0] = self.flux_i[nearest]
        out[:, 3] = self.flux_v[nearest]
        return out

    def itrf(self) -> np.ndarray:
        from .coords import geodetic_to_itrf

        return geodetic_to_itrf(self.lon, self.lat, self.el)


def stokes_to_linear(stokes: np.ndarray) -> np.ndarray:
    """Stokes (..., 4) -> linear-feed coherency (..., 4) as XX, XY, YX, YY (complex)."""
    i, q, u, v = (stokes[..., k] for k in range(4))
    return np.stack([i + q, u + 1j * v, u - 1j * v, i - q], axis=-1)


# --- Reading and writing -------------------------------------------------------------------------
def _parse_angle(text, kind: str, where: str) -> float:
    from astropy.coordinates import Angle

    try:
        unit = "hourangle" if kind == "ra" else "deg"
        if isinstance(text, (int, float)):
            return float(np.deg2rad(text))
        return float(Angle(str(text), unit=unit).rad)
    except Exception as exc:  # noqa: BLE001 - astropy raises several types for bad strings
        raise InputError(f"{where}: cannot parse {kind} {text!r}: {exc}") from exc


def _number(value, key: str, where: str) -> float:
    """A finite number from a model field, else InputError naming the field."""
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{where}: field {key!r} is not a number: {value!r}") from None
    if not np.isfinite(out):
        raise InputError(f"{where}: field {key!r} is not finite: {value!r}")
    return out


def _numbers(values, key: str, where: str) -> np.ndarray:
    """A 1-D list of finite numbers from a model field."""
    if not isinstance(values, list):
        raise InputError(f"{where}: field {key!r} must be a list of numbers, not {values!r:.60}")
    return np.array([_number(v, key, where) for v in values], dtype=float)


def _component(entry: dict, where: str) -> Component:
    if not isinstance(entry, dict):
        raise InputError(f"{where}: a component must be a JSON object, not {entry!r:.60}")
    for key in ("ra", "dec", "I", "freq"):
        if key not in entry:
            raise InputError(f"{where}: missing field {key!r}")
    index = entry.get("index", [])
    if not isinstance(index, list):
        index = [index]
    freq = _number(entry["freq"], "freq", where)
    if freq <= 0:
        raise InputError(f"{where}: field 'freq' must be a positive frequency in Hz, not {freq}")
    return Component(
        ra=_parse_angle(entry["ra"], "ra", where), dec=_parse_angle(entry["dec"], "dec", where),
        stokes=tuple(_number(entry.get(k, 0), k, where) for k in ("I", "Q", "U", "V")),
        freq=freq, index=_numbers(index, "index", where).tolist(),
        major_fwhm=_number(entry.get("major-fwhm", 0), "major-fwhm", where),
        minor_fwhm=_number(entry.get("minor-fwhm", 0), "minor-fwhm", where),
        position_angle=_number(entry.get("position-angle", 0), "position-angle", where))


def _read_list(path: str | Path, what: str) -> list:
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: {what} file does not exist")
    try:
        data = json.loads(p.read_text())
    except UnicodeDecodeError as exc:
        raise InputError(f"{p}: {what} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{p}: {what} is not valid JSON: {exc}") from exc
    if not isinstance(data, list):
        raise InputError(f"{p}: {what} must be a JSON list of sources")
    if not data:
        raise InputError(f"{p}: {what} is empty (no sources)")
    return data


def load_sky_model(path: str | Path) -> list[SkySource]:
    sources = []
    for k, entry in enumerate(_read_list(path, "sky model")):
        name = entry.get("name") if isinstance(entry, dict) else None
        where = f"{path}: source {k} ({name or 'unnamed'})"
        if not name:
            raise InputError(f"{where}: missing field 'name'")
        parts = entry.get("components", [entry])
        if not isinstance(parts, list) or not parts:
            raise InputError(f"{where}: 'components' must be a non-empty list")
        sources.append(SkySource(name=name, components=[_component(c, where) for c in parts]))
    return sources


def load_rfi_model(path: str | Path) -> list[RFISource]:
    sources = []
    for k, entry in enumerate(_read_list(path, "RFI model")):
        where = f"{path}: RFI source {k} ({entry.get('name', 'unnamed') if isinstance(entry, dict) else '?'})"
        if not isinstance(entry, dict):
            raise InputError(f"{where}: a source must be a JSON object, not {entry!r:.60}")
        missing = [key for key in ("name", "long", "lat", "el", "rfi-frequencies", "rfi-I") if key not in entry]
        if missing:
            raise InputError(f"{where}: missing field(s) {', '.join(missing)}")
        if entry.get("sys", "WGS84") != "WGS84":
            raise InputError(f"{where}: coordinate system {entry['sys']!r} is not supported (only WGS84)")
        freqs = _numbers(entry["rfi-frequencies"], "rfi-frequencies", where)
        flux_i = _numbers(entry["rfi-I"], "rfi-I", where)
        flux_v = _numbers(entry["rfi-V"], "rfi-V", where) if "rfi-V" in entry else np.zeros_like(flux_i)
        if np.any(freqs <= 0):
            raise InputError(f"{where}: rfi-frequencies must be positive frequencies in Hz")
        if not (freqs.size == flux_i.size == flux_v.size) or freqs.size == 0:
            raise InputError(f"{where}: rfi-frequencies, rfi-I and rfi-V must be non-empty and of equal length")
        backwards = np.flatnonzero(np.diff(freqs) <= 0)
        if backwards.size:
            k = int(backwards[0]) + 1
            log(_logger, f"{where}: rfi-frequencies are not increasing: entry {k} ({freqs[k]:.0f} Hz) follows "
                         f"{freqs[k - 1]:.0f} Hz; kept in place, as TTCal does (nearest entry, no sorting)",
                logging.WARNING, entries_out_of_order=int(backwards.size))
        lon, lat, el = (_number(entry[key], key, where) for key in ("long", "lat", "el"))
        sources.append(RFISource(str(entry["name"]), lon, lat, el, freqs, flux_i, flux_v))
    return sources


def _sexagesimal(rad: float, kind: str) -> str:
    from astropy.coordinates import Angle

    if kind == "ra":
        return Angle(rad, unit="rad").to_string(unit="hourangle", sep="hms", precision=4)
    return Angle(rad, unit="rad").to_string(unit="deg", sep="dms", precision=3, alwayssign=True)


def component_to_json(c: Component) -> dict:
    entry = {"ra": _sexagesimal(c.ra, "ra"), "dec": _sexagesimal(c.dec, "dec"),
             "I": c.stokes[0], "Q": c.stokes[1], "U": c.stokes[2], "V": c.stokes[3],
             "freq": c.freq, "index": list(c.index)}
    if c.is_gaussian:
        entry.update({"major-fwhm": c.major_fwhm, "minor-fwhm": c.minor_fwhm, "position-angle": c.position_angle})
    return entry


def save_sky_model(path: str | Path, sources: list[SkySource]) -> None:
    out = []
    for s in sources:
        if len(s.components) == 1 and not s.components[0].is_gaussian:
            out.append({"name": s.name, **component_to_json(s.components[0])})
        else:
            out.append({"name": s.name, "components": [component_to_json(c) for c in s.components]})
    Path(path).write_text(json.dumps(out, indent=2) + "\n")


def save_rfi_model(path: str | Path, sources: list[RFISource]) -> None:
    out = [{"name": s.name, "sys": "WGS84", "long": s.lon, "lat": s.lat, "el": s.el,
            "rfi-frequencies": list(map(float, s.freqs)), "rfi-I": list(map(float, s.flux_i)),
            "rfi-V": list(map(float, s.flux_v))} for s in sources]
    Path(path).write_text(json.dumps(out, indent=2) + "\n")
