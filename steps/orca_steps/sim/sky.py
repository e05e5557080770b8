"""The simulated sky: the A-team as in orca's model, faint field sources, and a ground RFI emitter.

Sources, their spectra and the TTCal JSON files are the simulator's own (not ``orca_steps.skymodel``):
the steps read what is written here, so their reader and spectra are checked, not shared.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..config import OVRO_HEIGHT_M, OVRO_LAT_DEG, OVRO_LON_DEG
from .geometry import geodetic_to_itrf

REF_FREQ_HZ = 73.8e6
CALIBRATOR_CATALOGUE = Path(__file__).parents[1] / "catalogs" / "calibrators.json"  # published spectra (data)


@dataclass
class Component:
    """A point (zero FWHM) or an elliptical Gaussian (FWHM arcsec, PA deg north through east)."""
    ra: float  # rad, J2000
    dec: float  # rad
    stokes: tuple[float, float, float, float]  # I, Q, U, V (Jy) at ``freq``
    freq: float  # Hz
    index: list[float] = field(default_factory=list)  # TTCal: log10 S = log10 S0 + sum_k index[k] log10(f/f0)^(k+1)
    major_fwhm: float = 0.0
    minor_fwhm: float = 0.0
    position_angle: float = 0.0

    @property
    def is_gaussian(self) -> bool:
        return self.major_fwhm > 0 or self.minor_fwhm > 0

    def stokes_at(self, freqs) -> np.ndarray:
        """(nfreq, 4) I, Q, U, V in Jy: all four scale with I's log-polynomial spectrum."""
        x = np.log10(np.atleast_1d(np.asarray(freqs, dtype=float)) / self.freq)
        exponent = np.polynomial.polynomial.polyval(x, [0.0, *self.index])
        return np.power(10.0, exponent)[:, None] * np.asarray(self.stokes, dtype=float)[None, :]


@dataclass
class SkySource:
    name: str
    components: list[Component]

    def flux_at(self, freq: float) -> float:
        return float(sum(c.stokes_at(freq)[0, 0] for c in self.components))


@dataclass
class GroundEmitter:
    """A terrestrial transmitter (WGS84 position) with a tabulated Stokes I and V spectrum."""
    name: str
    lon: float  # deg
    lat: float  # deg
    el: float  # m
    freqs: np.ndarray  # Hz
    flux_i: np.ndarray  # Jy
    flux_v: np.ndarray  # Jy

    def stokes_at(self, freqs) -> np.ndarray:
        """The table read as TTCal reads an RFI spectrum: each frequency takes its nearest entry (the
        lowest on a tie), so the model file written from this table describes exactly this sky."""
        freqs = np.atleast_1d(np.asarray(freqs, dtype=float))
        zero = np.zeros(freqs.size)
        entry = np.abs(freqs[:, None] - self.freqs[None, :]).argmin(axis=1)
        return np.stack([self.flux_i[entry], zero, zero, self.flux_v[entry]], axis=1)

    def itrf(self) -> np.ndarray:
        return geodetic_to_itrf(self.lon, self.lat, self.el)


def _ttcal_angle(rad: float, hours: bool) -> str:
    """TTCal's sexagesimal text: '19h59m28.3566s' or '+40d44m02.097s'."""
    value = np.rad2deg(rad) % 360.0 / 15.0 if hours else np.rad2deg(rad)
    decimals = 4 if hours else 3
    total = round(abs(value) * 3600.0, decimals)
    whole, rest = divmod(total, 3600.0)
    minutes, seconds = divmod(rest, 60.0)
    sign = "" if hours else ("-" if value < 0 else "+")
    units = "hms" if hours else "dms"
    return (f"{sign}{int(whole):02d}{units[0]}{int(minutes):02d}{units[1]}"
            f"{seconds:0{3 + decimals}.{decimals}f}{units[2]}")


def _component_entry(c: Component) -> dict:
    entry = {"ra": _ttcal_angle(c.ra, True), "dec": _ttcal_angle(c.dec, False), "I": c.stokes[0],
             "Q": c.stokes[1], "U": c.stokes[2], "V": c.stokes[3], "freq": c.freq, "index": list(c.index)}
    if c.is_gaussian:
        entry.update({"major-fwhm": c.major_fwhm, "minor-fwhm": c.minor_fwhm, "position-angle": c.position_angle})
    return entry


def write_sky_model(path: str | Path, sources: list[SkySource]) -> None:
    """TTCal's sky-model JSON: a point as flat fields, anything else as a ``components`` list."""
    out = []
    for s in sources:
        if len(s.components) == 1 and not s.components[0].is_gaussian:
            out.append({"name": s.name, **_component_entry(s.components[0])})
        else:
            out.append({"name": s.name, "components": [_component_entry(c) for c in s.components]})
    Path(path).write_text(json.dumps(out, indent=2) + "\n")


def write_rfi_model(path: str | Path, emitters: list[GroundEmitter]) -> None:
    """TTCal's RFI JSON: WGS84 position and tabulated spectra."""
    out = [{"name": e.name, "sys": "WGS84", "long": e.lon, "lat": e.lat, "el": e.el,
            "rfi-frequencies": [float(f) for f in e.freqs], "rfi-I": [float(f) for f in e.flux_i],
            "rfi-V": [float(f) for f in e.flux_v]} for e in emitters]
    Path(path).write_text(json.dumps(out, indent=2) + "\n")


def _radec(ra: str, dec: str) -> tuple[float, float]:
    from astropy.coordinates import Angle

    return float(Angle(ra, unit="hourangle").rad), float(Angle(dec, unit="deg").rad)


def _offset(ra: float, dec: float, east_arcsec: float, north_arcsec: float) -> tuple[float, float]:
    a = np.pi / 180 / 3600
    return ra + east_arcsec * a / np.cos(dec), dec + north_arcsec * a


def a_team() -> list[SkySource]:
    """Cyg A (2 Gaussians), Cas A (3 Gaussians), Vir A (point), fluxes near 74 MHz."""
    cyg = _radec("19h59m28.36s", "+40d44m02.1s")
    cas = _radec("23h23m24.0s", "+58d48m54s")
    vir = _radec("12h30m49.42s", "+12d23m28.0s")
    def gauss(centre, east, north, flux, index, major, minor, pa):
        ra, dec = _offset(*centre, east, north)
        return Component(ra, dec, (flux, 0.0, 0.0, 0.0), REF_FREQ_HZ, index, major, minor, pa)
    return [
        SkySource("Cyg A", [gauss(cyg, -50, 20, 9000.0, [-0.58, -0.1], 40, 25, 110),
                            gauss(cyg, 55, -18, 8500.0, [-0.58, -0.1], 35, 20, 110)]),
        SkySource("Cas A", [gauss(cas, 0, 0, 9000.0, [-0.77], 120, 110, 30),
                            gauss(cas, 60, 40, 4000.0, [-0.77], 60, 50, 0),
                            gauss(cas, -40, -60, 3500.0, [-0.77], 70, 40, 60)]),
        SkySource("Vir A", [Component(*vir, (2100.0, 0.0, 0.0, 0.0), REF_FREQ_HZ, [-0.86])]),
    ]


def field_sources(rng: np.random.Generator, count: int, ra_centre: float, dec_centre: float,
                  radius_deg: float = 25.0, flux_range=(30.0, 120.0), min_sep_deg: float = 0.0) -> list[SkySource]:
    """Point sources scattered around (ra_centre, dec_centre), ``min_sep_deg`` apart, spectral index -0.7."""
    sources, placed = [], []
    for _ in range(100 * count + 100):
        if len(sources) == count:
            break
        r = np.deg2rad(radius_deg) * np.sqrt(rng.uniform(0.05, 1.0))
        phi = rng.uniform(0, 2 * np.pi)
        dec = dec_centre + r * np.cos(phi)
        ra = (ra_centre + r * np.sin(phi) / np.cos(dec)) % (2 * np.pi)
        if placed and np.rad2deg(_separation(ra, dec, *np.array(placed).T)).min() < min_sep_deg:
            continue
        placed.append((ra, dec))
        point = Component(ra, dec, (float(rng.uniform(*flux_range)), 0, 0, 0), REF_FREQ_HZ, [-0.7])
        sources.append(SkySource(f"field{len(sources):02d}", [point]))
    if len(sources) < count:
        raise ValueError(f"cannot place {count} field sources {min_sep_deg} deg apart within {radius_deg} deg")
    return sources


def ground_emitter(freqs: np.ndarray, flux_jy: float = 400.0) -> GroundEmitter:
    """A terrestrial emitter about 45 km north-west of the array, with a ripply tabulated spectrum."""
    dist, az = 45e3, np.deg2rad(315.0)
    lat = OVRO_LAT_DEG + np.rad2deg(dist * np.cos(az) / 6371e3)
    lon = OVRO_LON_DEG + np.rad2deg(dist * np.sin(az) / (6371e3 * np.cos(np.deg2rad(OVRO_LAT_DEG))))
    table = np.linspace(freqs.min() - 1e5, freqs.max() + 1e5, 16)
    flux_i = flux_jy * (1.0 + 0.3 * np.sin(np.linspace(0, 3 * np.pi, table.size)))
    return GroundEmitter("OVRO-NW-emitter", lon, lat, OVRO_HEIGHT_M + 150.0, table, flux_i, 0.05 * flux_i)


def calibrators() -> list[SkySource]:
    """The flux-check calibrators at their true positions with their published spectra (points), read from
    the catalogue file itself (data, not the flux-check step's reader)."""
    entries = json.loads(CALIBRATOR_CATALOGUE.read_text())["calibrators"]
    return [SkySource(c["name"], [Component(*_radec(c["ra"], c["dec"]), (c["S0"], 0, 0, 0), c["freq"],
                                            list(c["index"]))]) for c in entries]


def _separation(ra1, dec1, ra2, dec2) -> np.ndarray:
    """Great-circle separation (rad), haversine form."""
    h = np.sin((dec2 - dec1) / 2) ** 2 + np.cos(dec1) * np.cos(dec2) * np.sin((ra2 - ra1) / 2) ** 2
    return 2 * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0)))


def scatter_points(rng: np.random.Generator, count: int, ra_centre: float, dec_centre: float, radius_deg: float,
                   avoid: list[tuple[float, float]], min_sep_deg: float = 3.0) -> list[tuple[float, float]]:
    """``count`` random (ra, dec) in rad within ``radius_deg`` of the centre, ``min_sep_deg`` from all others."""
    placed: list[tuple[float, float]] = []
    for _ in range(100 * count + 100):
        if len(placed) == count:
            break
        r = np.deg2rad(radius_deg) * np.sqrt(rng.uniform(0.0, 1.0))
        phi = rng.uniform(0, 2 * np.pi)
        dec = dec_centre + r * np.cos(phi)
        ra = (ra_centre + r * np.sin(phi) / np.cos(dec)) % (2 * np.pi)
        others = avoid + placed
        if not others or np.rad2deg(_separation(ra, dec, *np.array(others).T)).min() >= min_sep_deg:
            placed.append((float(ra), float(dec)))
    if len(placed) < count:
        raise ValueError(f"cannot place {count} points {min_sep_deg} deg apart within {radius_deg} deg")
    return placed


def flat_point(name: str, ra: float, dec: float, flux_i: float, flux_v: float = 0.0) -> SkySource:
    """A point source with a flat spectrum: the same known flux (Jy) at every frequency."""
    return SkySource(name, [Component(ra, dec, (flux_i, 0.0, 0.0, flux_v), REF_FREQ_HZ, [0.0])])


def ionospheric_offsets(ra, dec, ra_centre: float, dec_centre: float, amplitude_arcmin: float, scale_deg: float,
                        phases) -> tuple[np.ndarray, np.ndarray]:
    """(east, north) position offsets in arcmin: a smooth field of waves ``scale_deg`` long, |offset| <= amplitude.

    x, y are the offsets (deg) from the centre along east and north; ``phases`` (4 numbers) fix the pattern.
    """
    ra, dec = np.asarray(ra, dtype=float), np.asarray(dec, dtype=float)
    x = np.rad2deg(((ra - ra_centre + np.pi) % (2 * np.pi) - np.pi) * np.cos(dec))
    y = np.rad2deg(dec - dec_centre)
    k = 2 * np.pi / scale_deg
    p = phases
    east = amplitude_arcmin * (0.6 * np.sin(k * x + p[0]) + 0.4 * np.cos(k * y + p[1])) / np.sqrt(2)
    north = amplitude_arcmin * (0.6 * np.cos(k * y + p[2]) + 0.4 * np.sin(k * x + p[3])) / np.sqrt(2)
    return east, north


def shifted(src: SkySource, east_arcmin: float, north_arcmin: float) -> SkySource:
    """The source with every component moved by (east, north) arcmin on the sky."""
    from dataclasses import replace

    moved = []
    for c in src.components:
        ra, dec = _offset(c.ra, c.dec, east_arcmin * 60, north_arcmin * 60)
        moved.append(replace(c, ra=ra % (2 * np.pi), dec=dec))
    return SkySource(src.name, moved)


def _sexagesimal(value_deg: float, hours: bool) -> str:
    """'hh mm ss.ss' (RA) or '+dd mm ss.s' (Dec), rounded once so that 60 never shows."""
    decimals = 2 if hours else 1
    total = round(abs(value_deg) / (15 if hours else 1) * 3600, decimals)
    d, rest = divmod(total, 3600)
    m, s = divmod(rest, 60)
    sign = "" if hours else ("-" if value_deg < 0 else "+")
    return f"{sign}{int(d):02d} {int(m):02d} {s:0{3 + decimals}.{decimals}f}"


def write_vlssr(path: str | Path, entries: list[tuple[float, float, float]], comment: str = "") -> None:
    """Write (ra_deg, dec_deg, flux_jy at 74 MHz) rows in the VLSSr text format (unresolved: sizes 0).

    Columns as in the VLSSr catalogue text: RA (h m s), Dec (d m s), Dist("), Flux (Jy), Major ("),
    Minor ("), PA (deg).
    """
    lines = [f"# {comment}" if comment else "# VLSSr-format catalogue",
             "  RA(2000)    Dec(2000)   Dist(\")   Flux   Major Minor    PA",
             " h  m    s    d  m   s     Ori      Jy      \"     \"    deg"]
    lines += [f"{_sexagesimal(ra, True)} {_sexagesimal(dec, False)} {0.0:7.1f} {flux:8.2f} {0.0:5.1f} {0.0:5.1f}"
              f" {0.0:5.1f}" for ra, dec, flux in entries]
    Path(path).write_text("\n".join(lines) + "\n")
