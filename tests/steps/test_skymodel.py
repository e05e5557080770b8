"""The TTCal model loaders read every field of the formats orca's users have, and reject bad files.

Expected values are computed here independently: sexagesimal by hand, TTCal's spectrum
(log10 S = log10 S0 + sum_n a_n log10(nu/nu0)^n, Q/U/V scaled with I) by its formula, WGS84 by astropy.
"""
import json
import logging

import numpy as np
import pytest

from orca_steps.errors import InputError
from orca_steps.skymodel import (Component, load_rfi_model, load_sky_model, save_rfi_model, save_sky_model,
                                 stokes_to_linear)

SKY = [
    {"name": "3C123", "ra": "04h37m04.3753s", "dec": "+29d40m13.819s", "I": 200.0, "Q": 2.0, "U": -4.0, "V": 1.0,
     "freq": 74.0e6, "index": [-0.8, -0.05]},
    {"name": "just south", "ra": "12h00m00s", "dec": "-00d30m00s", "I": -5.0, "Q": 0.0, "U": 0.0, "V": 0.5,
     "freq": 60.0e6, "index": [0.3]},
    {"name": "Cyg A", "components": [
        {"ra": "19h59m29.99s", "dec": "+40d43m57.53s", "I": 43170.55, "Q": 0.0, "U": 0.0, "V": 0.0,
         "freq": 1.0e6, "index": [0.085, -0.178], "major-fwhm": 127.9, "minor-fwhm": 22.2, "position-angle": -74.5},
        {"ra": "19h59m24.28s", "dec": "+40d44m50.20s", "I": 6374.46, "Q": 0.0, "U": 0.0, "V": 0.0,
         "freq": 1.0e6, "index": [0.085, -0.178], "major-fwhm": 183.2, "minor-fwhm": 141.5, "position-angle": 43.4},
    ]},
]
RFI = [{"name": "tower NW", "sys": "WGS84", "long": -118.62, "lat": 37.52, "el": 1372.0,
        "rfi-frequencies": [73.0e6, 75.0e6, 77.0e6], "rfi-I": [10.0, 20.0, 30.0], "rfi-V": [1.0, 2.0, 3.0]}]


def hms(h, m, s):
    return np.deg2rad((h + m / 60 + s / 3600) * 15)


def dms(sign, d, m, s):
    return sign * np.deg2rad(d + m / 60 + s / 3600)


def write(tmp_path, name, content):
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def ttcal_spectrum(stokes, freq, index, nu):
    x = np.log10(nu / freq)
    i = np.sign(stokes[0]) * 10 ** (np.log10(abs(stokes[0])) + sum(a * x ** (n + 1) for n, a in enumerate(index)))
    return np.array([i, *(np.array(stokes[1:]) / stokes[0] * i)])


def test_sky_model_reads_every_field(tmp_path):
    sources = load_sky_model(write(tmp_path, "sources.json", SKY))
    assert [s.name for s in sources] == ["3C123", "just south", "Cyg A"]
    point = sources[0].components[0]
    assert point.ra == pytest.approx(hms(4, 37, 4.3753), abs=1e-12)
    assert point.dec == pytest.approx(dms(1, 29, 40, 13.819), abs=1e-12)
    assert point.stokes == (200.0, 2.0, -4.0, 1.0) and point.freq == 74.0e6 and point.index == [-0.8, -0.05]
    assert not point.is_gaussian
    assert sources[1].components[0].dec == pytest.approx(dms(-1, 0, 30, 0), abs=1e-12)  # "-00d..." keeps its sign
    cyg = sources[2].components
    assert len(cyg) == 2 and all(c.is_gaussian for c in cyg)
    assert (cyg[0].major_fwhm, cyg[0].minor_fwhm, cyg[0].position_angle) == (127.9, 22.2, -74.5)
    assert cyg[1].ra == pytest.approx(hms(19, 59, 24.28), abs=1e-12)


def test_spectra_follow_ttcal(tmp_path):
    sources = load_sky_model(write(tmp_path, "sources.json", SKY))
    nu = np.array([60e6, 73.3e6, 86.9e6])
    for src, entry in zip(sources[:2], SKY[:2]):
        expected = np.array([ttcal_spectrum([entry[k] for k in "IQUV"], entry["freq"], entry["index"], f) for f in nu])
        np.testing.assert_allclose(src.components[0].stokes_at(nu), expected, rtol=1e-12)
    assert sources[1].components[0].stokes_at(nu)[:, 0].max() < 0  # TTCal keeps the sign of I
    cyg = SKY[2]["components"]
    total = sum(ttcal_spectrum([c["I"], 0, 0, 0], c["freq"], c["index"], 74e6)[0] for c in cyg)
    assert sources[2].flux_at(74e6) == pytest.approx(total, rel=1e-12)


def test_linear_coherency_of_stokes():
    np.testing.assert_allclose(stokes_to_linear(np.array([10.0, 1.0, 2.0, 3.0])), [11, 2 + 3j, 2 - 3j, 9])


def test_rfi_model_reads_every_field(tmp_path):
    from astropy.coordinates import EarthLocation

    (src,) = load_rfi_model(write(tmp_path, "rfi_ovro.json", RFI))
    assert (src.name, src.lon, src.lat, src.el) == ("tower NW", -118.62, 37.52, 1372.0)
    np.testing.assert_array_equal(src.freqs, [73e6, 75e6, 77e6])
    np.testing.assert_array_equal(src.flux_i, [10.0, 20.0, 30.0])
    stokes = src.stokes_at(np.array([72e6, 73e6, 73.9e6, 74e6, 76.5e6, 80e6]))
    # TTCal: the nearest entry (the first of two equally near), no interpolation
    np.testing.assert_allclose(stokes[:, 0], [10.0, 10.0, 10.0, 10.0, 30.0, 30.0])
    np.testing.assert_allclose(stokes[:, 3], stokes[:, 0] / 10)
    np.testing.assert_array_equal(stokes[:, 1:3], 0.0)
    site = EarthLocation.from_geodetic(-118.62, 37.52, 1372.0)
    np.testing.assert_allclose(src.itrf(), [site.x.value, site.y.value, site.z.value], atol=1e-3)


def test_rfi_table_out_of_order_is_kept_in_place_with_a_warning(tmp_path, caplog):
    """orca's rfi_43.2_ver20251101.json has 225862 (Hz) between 22490160 and 22681564: TTCal takes the
    nearest entry and never sorts, so 22.586 MHz gets 22681564's flux, not the stray entry's."""
    entry = {**RFI[0], "rfi-frequencies": [22298756.0, 22490160.0, 225862.0, 22681564.0, 22872968.0],
             "rfi-I": [7100.0, 6900.0, 8889.0, 6591.0, 6400.0], "rfi-V": [0.0, 0.0, 0.0, 0.0, 0.0]}
    path = write(tmp_path, "rfi_43.2.json", [entry])
    with caplog.at_level(logging.WARNING, logger="orca"):
        (src,) = load_rfi_model(path)
    np.testing.assert_array_equal(src.freqs, entry["rfi-frequencies"])  # not sorted
    np.testing.assert_allclose(src.stokes_at(np.array([22.586e6, 22.49e6, 0.2e6]))[:, 0], [6591.0, 6900.0, 8889.0])
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert str(path) in warning and "tower NW" in warning and "entry 2 (225862 Hz)" in warning


def test_rfi_v_is_optional(tmp_path):
    entry = {k: v for k, v in RFI[0].items() if k not in ("rfi-V", "sys")}
    (src,) = load_rfi_model(write(tmp_path, "rfi.json", [entry]))
    np.testing.assert_array_equal(src.flux_v, 0.0)


def test_models_survive_a_round_trip(tmp_path):
    sources = load_sky_model(write(tmp_path, "a.json", SKY))
    save_sky_model(tmp_path / "b.json", sources)
    again = load_sky_model(tmp_path / "b.json")
    for s, t in zip(sources, again):
        assert s.name == t.name and len(s.components) == len(t.components)
        for c, d in zip(s.components, t.components):
            assert (c.ra, c.dec) == pytest.approx((d.ra, d.dec), abs=1e-8)
            assert (c.stokes, c.freq, c.index, c.major_fwhm, c.minor_fwhm, c.position_angle) == (
                d.stokes, d.freq, d.index, d.major_fwhm, d.minor_fwhm, d.position_angle)
    rfi = load_rfi_model(write(tmp_path, "r.json", RFI))
    save_rfi_model(tmp_path / "r2.json", rfi)
    (back,) = load_rfi_model(tmp_path / "r2.json")
    np.testing.assert_array_equal(back.freqs, rfi[0].freqs)
    np.testing.assert_array_equal(back.flux_v, rfi[0].flux_v)


POINT = {"name": "a", "ra": "19h59m28s", "dec": "+40d44m02s", "I": 1.0, "freq": 74e6}
BAD_SKY = [
    ("", "not valid JSON"), ("{oops", "not valid JSON"), ("[]", "empty"), ({"name": "a"}, "JSON list"),
    ([{"ra": "1h", "dec": "1d", "I": 1, "freq": 1e6}], "missing field 'name'"),
    ([5], "missing field 'name'"),
    ([{k: v for k, v in POINT.items() if k != "dec"}], "missing field 'dec'"),
    ([{k: v for k, v in POINT.items() if k != "freq"}], "missing field 'freq'"),
    ([{**POINT, "ra": "25 o'clock"}], "cannot parse ra"),
    ([{**POINT, "I": "bright"}], "field 'I' is not a number"),
    ([{**POINT, "V": None}], "field 'V' is not a number"),
    ([{**POINT, "freq": -74e6}], "positive frequency"),
    ([{**POINT, "index": ["steep"]}], "field 'index' is not a number"),
    ([{**POINT, "major-fwhm": "big"}], "field 'major-fwhm' is not a number"),
    ([{"name": "a", "components": []}], "non-empty list"),
    ([{"name": "a", "components": [7]}], "must be a JSON object"),
]
GOOD_RFI = RFI[0]
BAD_RFI = [
    ("[]", "empty"), ("not json", "not valid JSON"), ([5], "must be a JSON object"),
    ([{"name": "x"}], "missing field"),
    ([{**GOOD_RFI, "sys": "ITRF"}], "not supported"),
    ([{**GOOD_RFI, "long": "west"}], "field 'long' is not a number"),
    ([{**GOOD_RFI, "rfi-I": [1.0, 2.0]}], "equal length"),
    ([{**GOOD_RFI, "rfi-frequencies": "75e6"}], "must be a list of numbers"),
    ([{**GOOD_RFI, "rfi-I": [[1.0], [2.0], [3.0]]}], "not a number"),
    ([{**GOOD_RFI, "rfi-frequencies": [0.0, 1e6, 2e6]}], "positive"),
]


@pytest.mark.parametrize("content, problem", BAD_SKY)
def test_bad_sky_model_is_an_input_error_naming_the_file(tmp_path, content, problem):
    path = write(tmp_path, "sources.json", content)
    with pytest.raises(InputError, match=problem) as err:
        load_sky_model(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("content, problem", BAD_RFI)
def test_bad_rfi_model_is_an_input_error_naming_the_file(tmp_path, content, problem):
    path = write(tmp_path, "rfi.json", content)
    with pytest.raises(InputError, match=problem) as err:
        load_rfi_model(path)
    assert str(path) in str(err.value)


def test_missing_model_file_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_sky_model(tmp_path / "nope.json")
    with pytest.raises(InputError, match="does not exist"):
        load_rfi_model(tmp_path / "nope.json")


def test_flat_spectrum_without_index():
    """A source with no spectral index (``index: []``) has the same flux at every frequency."""
    comp = Component(ra=0.0, dec=0.5, stokes=(10.0, 1.0, 0.0, -2.0), freq=74e6, index=[])
    stokes = comp.stokes_at(np.array([60e6, 74e6, 85e6]))
    np.testing.assert_allclose(stokes, np.tile([10.0, 1.0, 0.0, -2.0], (3, 1)))
