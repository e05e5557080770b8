"""Simulator features for the science steps: faint targets, a transient, a Stokes V burst, an ionospheric
shift and a VLSSr-format reference catalogue, checked against the visibilities themselves.

The night has no noise, no A-team and no RFI, so a least-squares fit of every compact source at its
true (apparent) position recovers each flux exactly, integration by integration and channel by channel.
"""
import json

import numpy as np
import pytest
from casacore import tables as ct
from pydantic import ValidationError

from orca_steps import config, dewarp
from orca_steps.coords import altaz, direction_cosines, local_sidereal_hours
from orca_steps.sim import SimConfig, simulate_ms, simulate_night
from orca_steps.sim.beam import stokes_i_response
from orca_steps.targets import load_targets

C = 299792458.0
CHANNELS = (0, 23, 47)
FEATURES = dict(target_fluxes_jy=[8.0, 4.0, 0.0], transient_interval=2, transient_flux_jy=20.0, v_burst_target=0,
                v_burst_interval=4, v_burst_jy=3.0, iono_shift_arcmin=4.0, reference_catalogue=True)


@pytest.fixture(scope="module")
def night(tmp_path_factory):
    return simulate_night(tmp_path_factory.mktemp("science"), n_antennas=16, n_integrations=12, a_team=False,
                          rfi=False, n_field_sources=6, noise_jy=0.0, write_model=True, dead_antennas=0,
                          noisy_antennas=0, **FEATURES)


def compact_sources(truth) -> list[tuple[str, float, float]]:
    """(name, ra, dec) in deg where each compact source really is in the data (after the shift)."""
    out = [(s["name"], s["components"][0]["ra_deg"], s["components"][0]["dec_deg"]) for s in truth["field_sources"]]
    out += [(t["name"], t["apparent_ra_deg"], t["apparent_dec_deg"]) for t in truth["targets"]]
    t = truth["transient"]
    return out + [(t["name"], t["apparent_ra_deg"], t["apparent_dec_deg"])]


def fit(entry, sources, stokes="I"):
    """Least-squares fluxes (n_sources, len(CHANNELS)) of point sources at ``sources`` in MODEL_DATA, and the
    relative residual. The design matrix is the measurement equation with the simulated beam. ``sources``
    may be a function of the frequency (positions that move with it)."""
    with ct.table(entry["path"], ack=False) as tab:
        uvw, a1, a2, model = (tab.getcol(c) for c in ("UVW", "ANTENNA1", "ANTENNA2", "MODEL_DATA"))
    cross = a1 != a2
    vis = 0.5 * (model[cross, :, 0] + model[cross, :, 3]) if stokes == "I" else \
        (model[cross, :, 1] - model[cross, :, 2]) / 2j
    ra0, dec0 = np.deg2rad(entry["phase_centre_deg"])
    freqs = config.subband_channel_freqs("73MHz")
    fluxes, resid = [], []
    for ch in CHANNELS:
        at = sources(freqs[ch]) if callable(sources) else sources
        ra, dec = np.deg2rad([s[1] for s in at]), np.deg2rad([s[2] for s in at])
        l, m, n = direction_cosines(ra, dec, ra0, dec0)
        beam = stokes_i_response(altaz(ra, dec, entry["time_mjd_s"])[1])
        delay = uvw[cross] @ np.array([l, m, n - 1]) / C
        a = np.exp(2j * np.pi * delay * freqs[ch]) * beam[None, :]
        x, *_ = np.linalg.lstsq(a, vis[:, ch], rcond=None)
        fluxes.append(x)
        resid.append(np.linalg.norm(a @ x - vis[:, ch]) / np.linalg.norm(vis[:, ch]))
    return np.array(fluxes).T, max(resid)


def entries(night):
    return night.truth["units"][0]["ms"]


def test_intervals_are_sixths_of_the_lst_hour(night):
    got = [e["interval"] for e in entries(night)]
    expected = [int((local_sidereal_hours(e["time_mjd_s"]) - 14) * 6) for e in entries(night)]
    assert got == expected == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5]


def test_target_list_in_refs_matches_truth(night):
    truth = night.truth
    assert truth["target_list"] == str(night.refs_dir / "targets.csv")
    listed = load_targets(night.refs_dir / "targets.csv")
    assert [t.name for t in listed] == ["target00", "target01", "target02"]
    for t, true in zip(listed, truth["targets"]):
        assert t.ra_deg == pytest.approx(true["ra_deg"], abs=1e-5) and t.dec_deg == pytest.approx(true["dec_deg"], abs=1e-5)
        assert t.stokes == "IV"
    assert [t["flux_jy"] for t in truth["targets"]] == [8.0, 4.0, 0.0]
    for t in truth["targets"]:  # near the zenith: above 30 deg elevation all hour
        for e in entries(night):
            assert np.rad2deg(altaz(np.deg2rad(t["ra_deg"]), np.deg2rad(t["dec_deg"]), e["time_mjd_s"])[1][0]) > 60


def test_targets_steady_and_transient_only_in_its_interval(night):
    sources = compact_sources(night.truth)
    names = [s[0] for s in sources]
    field = {s["name"]: s["components"][0] for s in night.truth["field_sources"]}
    freqs = config.subband_channel_freqs("73MHz")[list(CHANNELS)]
    for e in entries(night):
        fluxes, resid = fit(e, sources)
        assert resid < 1e-5, e["interval"]  # the model explains the data completely
        np.testing.assert_allclose(fluxes.imag, 0, atol=1e-4)
        got = dict(zip(names, fluxes.real))
        for name, flux in zip(("target00", "target01", "target02"), (8.0, 4.0, 0.0)):
            np.testing.assert_allclose(got[name], flux, atol=1e-4 * 8)
        np.testing.assert_allclose(got["transient"], 20.0 if e["interval"] == 2 else 0.0, atol=1e-3)
        for name, c in field.items():
            np.testing.assert_allclose(got[name], c["stokes"][0] * (freqs / c["freq_hz"]) ** c["index"][0], rtol=1e-4)
        assert e["timed_sources"] == (["transient"] if e["interval"] == 2 else ["target00"] if e["interval"] == 4 else [])


def test_v_burst_at_its_target_only_in_its_interval(night):
    t0 = night.truth["targets"][0]
    assert night.truth["v_burst"]["name"] == "target00" and night.truth["v_burst"]["interval"] == 4
    at_target = [("target00", t0["apparent_ra_deg"], t0["apparent_dec_deg"])]
    for e in entries(night):
        if e["interval"] == 4:
            fluxes, resid = fit(e, at_target, stokes="V")
            assert resid < 1e-5
            np.testing.assert_allclose(fluxes.real, 3.0, rtol=1e-4)
        else:
            with ct.table(e["path"], ack=False) as tab:
                model = tab.getcol("MODEL_DATA")
            assert np.abs(model[:, :, 1] - model[:, :, 2]).max() < 1e-4  # no Stokes V anywhere in the sky


def test_ionospheric_shift_is_smooth_and_in_the_data(night):
    iono = night.truth["ionosphere"]
    shifts = iono["shifts"]
    sources = compact_sources(night.truth)
    assert set(shifts) == {s[0] for s in sources}
    vec = np.array([[shifts[s[0]]["east_arcmin"], shifts[s[0]]["north_arcmin"]] for s in sources])
    size = np.hypot(*vec.T)
    assert size.max() <= 4.0 and np.sqrt(np.mean(size**2)) > 1.0
    # smooth: neighbours move alike; the pattern's gradient is at most amplitude * 2 pi / scale per degree
    pos = np.array([[s[1], s[2]] for s in sources])
    for i in range(len(sources)):
        for j in range(i):
            sep = np.hypot((pos[i, 0] - pos[j, 0]) * np.cos(np.deg2rad(pos[i, 1])), pos[i, 1] - pos[j, 1])
            assert np.hypot(*(vec[i] - vec[j])) <= 4.0 * 2 * np.pi / iono["scale_deg"] * sep + 0.05
    # the data hold the shifted sources: at the unshifted positions the same fit no longer explains them
    true = {t["name"]: (t["ra_deg"], t["dec_deg"]) for t in night.truth["targets"] + [night.truth["transient"]]}
    cat = dewarp.load_vlssr(night.refs_dir / "vlssr_catalog.txt")
    true.update({s[0]: tuple(cat[k, :2]) for k, s in enumerate(sources[:6])})
    e = entries(night)[4]
    _, resid_shifted = fit(e, sources)
    _, resid_true = fit(e, [(name, *true[name]) for name, _, _ in sources])
    assert resid_shifted < 1e-5 and resid_true > 1e-2


def test_refracted_shift_scales_as_frequency_squared(tmp_path):
    """iono_ref_freq_hz: in each channel a source sits at its true position + shift x (ref / nu)^2, and the
    field sources keep field_min_sep_deg apart."""
    ref = 75.4e6
    entry, scene, _ = simulate_ms(tmp_path / "one.ms", n_antennas=16, a_team=False, rfi=False, n_field_sources=8,
                                  noise_jy=0.0, write_model=True, dead_antennas=0, noisy_antennas=0,
                                  field_radius_deg=10.0, field_min_sep_deg=3.0, iono_shift_arcmin=4.0,
                                  iono_ref_freq_hz=ref)
    names = [s.name for s in scene.field_sources]
    true = np.rad2deg([scene.true_positions[n] for n in names])
    shift = np.array([scene.iono_offsets[n] for n in names]) / 60  # deg east, north at ref
    assert np.sqrt(np.mean(np.sum(shift ** 2, axis=1))) * 60 > 1.0

    def at(scale):
        return lambda nu: [(n, ra + scale(nu) * e / np.cos(np.deg2rad(dec)), dec + scale(nu) * no)
                           for n, (ra, dec), (e, no) in zip(names, true, shift)]
    _, refracted = fit(entry, at(lambda nu: (ref / nu) ** 2))
    _, achromatic = fit(entry, at(lambda nu: 1.0))
    assert refracted < 1e-5 and achromatic > 1e-3
    pos = np.deg2rad(true)
    for i in range(len(pos)):
        sep = np.rad2deg(np.arccos(np.clip(np.sin(pos[i, 1]) * np.sin(pos[:, 1]) + np.cos(pos[i, 1])
                                           * np.cos(pos[:, 1]) * np.cos(pos[i, 0] - pos[:, 0]), -1, 1)))
        assert np.delete(sep, i).min() >= 3.0 - 1e-9


def test_reference_catalogue_has_true_positions_and_74mhz_fluxes(night):
    cat = dewarp.load_vlssr(night.truth["reference_catalogue"])
    field = night.truth["field_sources"]
    assert len(cat) == len(field) == 6
    for row, src in zip(cat, field):
        c = src["components"][0]
        shift = night.truth["ionosphere"]["shifts"][src["name"]]
        true_ra = c["ra_deg"] - shift["east_arcmin"] / 60 / np.cos(np.deg2rad(row[1]))
        true_dec = c["dec_deg"] - shift["north_arcmin"] / 60
        assert abs(row[0] - true_ra) * np.cos(np.deg2rad(row[1])) * 3600 < 0.3  # arcsec (RA written to 0.01 s)
        assert abs(row[1] - true_dec) * 3600 < 0.1
        assert row[2] == pytest.approx(c["stokes"][0] * (74e6 / c["freq_hz"]) ** c["index"][0], abs=0.006)


def test_features_are_off_by_default(tmp_path):
    entry, scene, _ = simulate_ms(tmp_path / "one.ms", n_antennas=8, refs_dir=tmp_path / "refs")
    assert scene.targets == [] and scene.timed == [] and scene.true_positions == {}
    assert not (tmp_path / "refs" / "targets.csv").exists()
    assert not (tmp_path / "refs" / "vlssr_catalog.txt").exists()
    assert entry["timed_sources"] == []
    truth = json.loads((simulate_night(tmp_path / "n", n_antennas=8, n_integrations=1).out_dir / "truth.json")
                       .read_text())
    assert truth["targets"] == [] and truth["transient"] is None and truth["ionosphere"] is None


def test_impossible_burst_is_refused():
    with pytest.raises(ValidationError, match="exceeds the flux of its target"):
        SimConfig(target_fluxes_jy=[1.0], v_burst_target=0, v_burst_jy=2.0)
    with pytest.raises(ValidationError, match="only 1 targets"):
        SimConfig(target_fluxes_jy=[1.0], v_burst_target=1)
    with pytest.raises(ValidationError):
        SimConfig(transient_interval=6)
