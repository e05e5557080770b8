"""aoflagger: the real AOFlagger CLI runs the given Lua strategy (or the bundled generic one) on the
chosen column; fractions before/after are counted; a missing strategy or tool is one clear error."""
import shutil

import numpy as np
import pytest
from casacore import tables

from orca_steps import msstate
from orca_steps.aoflagger import default_strategy, flagged_fraction, run_aoflagger
from orca_steps.errors import InputError, MissingToolError, ToolFailedError

from phase2_data import prepared_concat

# A user strategy whose effect is known exactly: flag every visibility AOFlagger is given (by default
# the cross-correlations), never the data.
FLAG_ALL = """
function execute(input)
  input:clear_mask()
  input:set_visibilities(input - input)
  input:flag_zeros()
end
"""


@pytest.fixture(scope="module")
def concat(tmp_path_factory):
    root = tmp_path_factory.mktemp("aoflagger")
    ms, _, _ = prepared_concat(root, n_integrations=6, n_antennas=24)
    return ms


@pytest.fixture
def ms(concat, tmp_path):
    return shutil.copytree(concat, tmp_path / concat.name)


def test_a_user_strategy_is_what_runs(ms, tmp_path):
    strategy = tmp_path / "flag_all.lua"
    strategy.write_text(FLAG_ALL)
    with tables.table(str(ms), ack=False) as tab:
        a1, a2 = tab.getcol("ANTENNA1"), tab.getcol("ANTENNA2")
        data = tab.getcol("CORRECTED_DATA")
    result = run_aoflagger(ms, strategy, threads=1)
    assert result.flagged_before == 0.0
    assert result.flagged_after == pytest.approx(np.mean(a1 != a2), abs=1e-12)
    with tables.table(str(ms), ack=False) as tab:
        flags = tab.getcol("FLAG")
        np.testing.assert_array_equal(tab.getcol("CORRECTED_DATA"), data)
    assert flags[a1 != a2].all() and not flags[a1 == a2].any()
    assert result.seconds > 0 and "Starting strategy" in (ms.parent / "logs" / "aoflagger.log").read_text()
    assert msstate.done_info(ms, "aoflagger") == {"strategy": str(strategy), "column": "CORRECTED_DATA"}

    again = run_aoflagger(ms, strategy, threads=1)  # already done with this strategy: not re-run
    assert again.reused and again.flagged_after == result.flagged_after


def test_the_default_is_aoflaggers_bundled_generic_strategy(ms):
    assert default_strategy().name == "generic-default.lua" and default_strategy().is_file()
    result = run_aoflagger(ms, threads=1)
    assert result.strategy == str(default_strategy()) and result.column == "CORRECTED_DATA"
    assert 0.0 == result.flagged_before < result.flagged_after < 1.0
    assert result.flagged_after == pytest.approx(flagged_fraction(ms))


def test_a_missing_strategy_file_is_one_clear_error(ms, tmp_path):
    with pytest.raises(InputError, match=r"LWA_opt_GH1.lua: AOFlagger strategy file does not exist"):
        run_aoflagger(ms, tmp_path / "LWA_opt_GH1.lua")
    assert flagged_fraction(ms) == 0.0


def test_a_broken_strategy_and_a_missing_column_or_tool_fail_clearly(ms, tmp_path, monkeypatch):
    broken = tmp_path / "broken.lua"
    broken.write_text("function execute(input)\n  input:no_such_method()\nend\n")
    with pytest.raises(ToolFailedError, match=r"^aoflagger failed: [^\n]*no_such_method[^\n]* \(exit code 30; "):
        run_aoflagger(ms, broken, threads=1)
    with pytest.raises(InputError, match="has no MODEL_DATA column"):
        run_aoflagger(ms, column="MODEL_DATA")
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(MissingToolError, match="'aoflagger' is not on PATH"):
        run_aoflagger(ms)


def test_earlier_flags_survive_a_strategy_that_clears_them(ms, tmp_path):
    """The bundled strategy calls clear_mask(); Phase 1's flags (here: one antenna, two channels) stay set."""
    with tables.table(str(ms), readonly=False, ack=False) as tab:
        a1, a2 = tab.getcol("ANTENNA1"), tab.getcol("ANTENNA2")
        prior = tab.getcol("FLAG")
        prior[(a1 == 3) | (a2 == 3)] = True
        prior[:, [10, 11], :] = True
        tab.putcol("FLAG", prior)
    clearing = tmp_path / "clear.lua"
    clearing.write_text("function execute(input)\n  input:clear_mask()\nend\n")
    run_aoflagger(ms, clearing, threads=1)
    with tables.table(str(ms), ack=False) as tab:
        after_clear = tab.getcol("FLAG")
    np.testing.assert_array_equal(after_clear, prior)

    result = run_aoflagger(ms, threads=1)  # the bundled generic strategy also clears, then flags RFI
    with tables.table(str(ms), ack=False) as tab:
        flags = tab.getcol("FLAG")
    assert flags[prior].all()
    assert result.flagged_after >= prior.mean()
