"""run_tool streams a tool's output while it runs: a run killed mid-way (a pod deleted after hours of CLEAN)
leaves its log, and the pod's log (stderr) has the same lines. Real WSClean, killed for real."""
import os
import signal
import subprocess
import sys
import time

import pytest

from orca_steps.errors import ToolStoppedError
from orca_steps.tools import run_tool
from phase2_data import prepared_concat

IMAGING_STARTED = "== Constructing image =="
FINISHED = "Cleaning up temporary files"  # WSClean's last line


@pytest.fixture(scope="module")
def ms(tmp_path_factory):
    ms, _, _ = prepared_concat(tmp_path_factory.mktemp("tools"), n_antennas=8, n_integrations=2)
    return ms


def test_a_killed_wsclean_leaves_its_log_and_pod_log(ms, tmp_path):
    """A step process runs WSClean through run_tool; as soon as WSClean has started gridding its image, the
    whole process group is killed (SIGKILL, as when a pod is deleted). The log file and stderr already hold
    WSClean's lines up to that point, and not its last line."""
    log, pod_log = tmp_path / "logs" / "wsclean.log", tmp_path / "stderr.log"
    script = ("import sys; from orca_steps.tools import run_tool; "
              "run_tool(sys.argv[1:-1], log_file=sys.argv[-1])")
    args = ["wsclean", "-j", "1", "-size", "1024", "1024", "-scale", "0.1", "-niter", "0", "-name",
            str(tmp_path / "img"), str(ms)]
    with open(pod_log, "w") as err:
        step = subprocess.Popen([sys.executable, "-c", script, *args, str(log)], stdout=subprocess.DEVNULL,
                                stderr=err, start_new_session=True)
    try:
        deadline = time.time() + 120
        while not (log.is_file() and IMAGING_STARTED in log.read_text()):
            assert step.poll() is None, f"the step ended before WSClean started imaging: {pod_log.read_text()}"
            assert time.time() < deadline, "WSClean did not start imaging within 120 s"
            time.sleep(0.05)
        assert step.poll() is None  # still running: the lines were written while WSClean ran
    finally:
        if step.poll() is None:
            os.killpg(step.pid, signal.SIGKILL)  # the step and the WSClean it runs
        step.wait()
    assert step.returncode == -signal.SIGKILL
    text = log.read_text()
    assert text.startswith(f"$ wsclean -j 1 -size 1024 1024") and "WSClean version" in text
    assert IMAGING_STARTED in text and FINISHED not in text
    assert "WSClean version" in pod_log.read_text() and IMAGING_STARTED in pod_log.read_text()
    assert not (tmp_path / "img-image.fits").exists()


def test_a_watch_stops_the_tool_with_its_message(tmp_path):
    """The watch sees each line as it comes; its message stops the tool (terminated, not finished)."""
    log = tmp_path / "count.log"
    count = ["sh", "-c", "for i in $(seq 1 100); do echo line $i; sleep 0.1; done"]
    start = time.time()
    with pytest.raises(ToolStoppedError) as caught:
        run_tool(count, log_file=log, watch=lambda line: "saw line 3" if line.strip() == "line 3" else None)
    assert time.time() - start < 5  # 100 lines take 10 s: it was stopped, not run to the end
    assert str(caught.value) == f"sh stopped: saw line 3 (full output in {log})"
    lines = log.read_text().splitlines()
    assert lines[1:4] == ["line 1", "line 2", "line 3"] and "line 100" not in lines
