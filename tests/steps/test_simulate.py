"""The simulator writes real, self-consistent MS whose numbers match independently computed truth."""
import json
import subprocess
import sys

import numpy as np
import pytest
from casacore import tables as ct

from orca_steps import config
from orca_steps.coords import direction_cosines, local_sidereal_hours
from orca_steps.sim import simulate_ms, simulate_night
from orca_steps.sim.beam import stokes_i_response

C = 299792458.0


@pytest.fixture(scope="module")
def night(tmp_path_factory):
    return simulate_night(tmp_path_factory.mktemp("night"), subbands=["73MHz", "82MHz"], lst_hours=[14, 15],
                          n_integrations=2, n_antennas=12, tar=False)


def test_input_tree_follows_the_real_layout(night):
    assert sorted(night.ms_paths) == [("73MHz", 14), ("73MHz", 15), ("82MHz", 14), ("82MHz", 15)]
    for (sb, _), paths in night.ms_paths.items():
        assert len(paths) == 2
        for p in paths:
            date, hour = p.parent.parent.name, p.parent.name
            assert p.parent.parent.parent.name == sb
            assert p.name.startswith(date.replace("-", "") + "_" + hour) and p.name.endswith(f"_{sb}_averaged.ms")


def test_integrations_fall_in_their_lst_hour(night):
    for unit in night.truth["units"]:
        for entry in unit["ms"]:
            lst = local_sidereal_hours(entry["time_mjd_s"])
            assert unit["lst_hour"] <= lst < unit["lst_hour"] + 1


def test_metadata_is_ovro_lwa(night):
    ms = night.ms_paths[("73MHz", 14)][0]
    with ct.table(str(ms / "OBSERVATION"), ack=False) as obs:
        assert obs.getcol("TELESCOPE_NAME") == ["OVRO-LWA"]
    with ct.table(str(ms / "POLARIZATION"), ack=False) as pol:
        assert list(pol.getcell("CORR_TYPE", 0)) == [9, 10, 11, 12]
    with ct.table(str(ms / "SPECTRAL_WINDOW"), ack=False) as spw:
        np.testing.assert_allclose(spw.getcell("CHAN_FREQ", 0), config.subband_channel_freqs("73MHz"))
    with ct.table(str(ms / "ANTENNA"), ack=False) as ant:
        names = ant.getcol("NAME")
    assert len(names) == 12 and names[0] != "LWA001" and sorted(names) == [f"LWA{k:03d}" for k in range(1, 13)]
    with ct.table(str(ms), ack=False) as tab:
        assert tab.nrows() == 12 * 13 // 2
        assert np.all(tab.getcol("ANTENNA1") <= tab.getcol("ANTENNA2"))
        assert tab.getcell("DATA", 0).shape == (48, 4)


def test_uvw_points_at_zenith(night):
    """Phased to zenith, w is the height difference and |uv| the horizontal length (independent of casacore)."""
    enu = np.array(night.truth["antenna_enu_m"])
    ms = night.ms_paths[("73MHz", 14)][0]
    with ct.table(str(ms), ack=False) as tab:
        uvw, a1, a2 = tab.getcol("UVW"), tab.getcol("ANTENNA1"), tab.getcol("ANTENNA2")
    d = enu[a2] - enu[a1]
    np.testing.assert_allclose(uvw[:, 2], d[:, 2], atol=0.25)  # aberration/nutation: < 1e-4 rad x 1.5 km
    np.testing.assert_allclose(np.hypot(uvw[:, 0], uvw[:, 1]), np.hypot(d[:, 0], d[:, 1]), atol=0.25)


def test_point_source_flux_by_direct_fourier_sum(tmp_path):
    """One point source: a DFT of MODEL_DATA at its position returns its spectrum times the beam."""
    entry, scene, _ = simulate_ms(tmp_path / "one.ms", n_antennas=10, noise_jy=0.0, rfi=False, a_team=False,
                                  n_field_sources=1, write_model=True, dead_antennas=0, noisy_antennas=0)
    src = scene.field_sources[0].components[0]
    with ct.table(str(tmp_path / "one.ms"), ack=False) as tab:
        uvw, a1, a2 = tab.getcol("UVW"), tab.getcol("ANTENNA1"), tab.getcol("ANTENNA2")
        model = tab.getcol("MODEL_DATA")
    ra0, dec0 = np.deg2rad(entry["phase_centre_deg"])
    freqs = config.subband_channel_freqs("73MHz")
    l, m, n = direction_cosines(src.ra, src.dec, ra0, dec0)
    cross = a1 != a2
    phase = np.exp(-2j * np.pi * (uvw[cross] @ np.array([l, m, n - 1]))[:, None] * freqs[None, :] / C)
    stokes_i = (0.5 * (model[cross, :, 0] + model[cross, :, 3]) * phase).mean(axis=0)
    beam = stokes_i_response(np.deg2rad(entry["elevations_deg"]["field00"]))
    expected = src.stokes[0] * (freqs / src.freq) ** -0.7 * beam
    np.testing.assert_allclose(stokes_i.real, expected, rtol=1e-5)
    np.testing.assert_allclose(stokes_i.imag, 0, atol=1e-5 * expected.max())
    assert 0.1 < beam < 1.0


def test_dead_and_noisy_antennas_show_in_autocorrelations(night):
    ms = night.ms_paths[("73MHz", 14)][0]
    with ct.table(str(ms), ack=False) as tab:
        a1, a2, data = tab.getcol("ANTENNA1"), tab.getcol("ANTENNA2"), tab.getcol("DATA")
    auto = a1 == a2
    power = np.abs(data[auto][:, :, [0, 3]]).mean(axis=(1, 2))
    ants = a1[auto]
    dead, noisy = night.truth["dead_antennas"], night.truth["noisy_antennas"]
    good = [a for a in ants if a not in dead + noisy]
    assert set(dead).isdisjoint(noisy) and len(dead) == len(noisy) == 2
    assert power[np.isin(ants, dead)].max() < 0.01 * np.median(power[np.isin(ants, good)])
    assert power[np.isin(ants, noisy)].min() > 10 * np.median(power[np.isin(ants, good)])


def test_deterministic_from_seed(tmp_path):
    a, _, _ = simulate_ms(tmp_path / "a.ms", n_antennas=8, seed=5)
    b, _, _ = simulate_ms(tmp_path / "b.ms", n_antennas=8, seed=5)
    c, _, _ = simulate_ms(tmp_path / "c.ms", n_antennas=8, seed=6)
    read = lambda p: ct.table(str(p), ack=False).getcol("DATA")  # noqa: E731
    np.testing.assert_array_equal(read(tmp_path / "a.ms"), read(tmp_path / "b.ms"))
    assert not np.allclose(read(tmp_path / "a.ms"), read(tmp_path / "c.ms"))


def test_refs_and_truth_are_written(night):
    refs = night.refs_dir
    for name in ("sources.json", "rfi_ovro.json", "beam.h5", "73MHz.bandpass.B.flagged", "73MHz.xyphase.Xf"):
        assert (refs / name).exists(), name
    sky = json.loads((refs / "sources.json").read_text())
    assert [s["name"] for s in sky] == ["Cyg A", "Cas A", "Vir A"]
    assert len(sky[0]["components"]) == 2 and len(sky[1]["components"]) == 3 and "components" not in sky[2]
    truth = json.loads((night.out_dir / "truth.json").read_text())
    assert truth["dead_antennas"] == night.truth["dead_antennas"]


def test_tarred_input_and_cli(tmp_path):
    out = subprocess.run([sys.executable, "-m", "orca_steps.cli", "simulate", "--out_dir", str(tmp_path),
                          "--n_antennas", "8", "--n_integrations", "2", "--tar", "true"],
                         capture_output=True, text=True, check=True)
    result = json.loads(out.stdout)
    assert result["n_ms"] == 2
    tars = sorted(tmp_path.glob("input/73MHz/*/*/*.ms.tar"))
    assert len(tars) == 2 and not list(tmp_path.glob("input/73MHz/*/*/*.ms"))


def test_malformed_subband_is_refused(tmp_path):
    out = subprocess.run([sys.executable, "-m", "orca_steps.cli", "simulate", "--out_dir", str(tmp_path),
                          "--subbands", "73MHZ"], capture_output=True, text=True)
    assert out.returncode == 2 and "73MHZ" in out.stderr and "malformed" in out.stderr
