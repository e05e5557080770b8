"""A pod as a local process: same command and arguments, container paths mapped to local folders.

Every volume mount of the pod becomes a (container path, local folder) pair; container paths inside the
command, arguments, environment, working directory, script source and output paths are rewritten to the
local folder, and local folders in output values are written back as container paths, so what flows
between pods is what would flow on a cluster. ``/tmp`` is private to each pod, as in a container.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .errors import LocalRunError

GRACE_SECONDS = 5.0


@dataclass
class Mount:
    container_path: str
    local_path: Path
    read_only: bool = False


def _prefix_re(prefixes: list[str]) -> re.Pattern:
    """One pass over the text for all prefixes (longest first), each only at a path boundary."""
    alternatives = "|".join(re.escape(p) for p in sorted(prefixes, key=len, reverse=True))
    return re.compile(r"(?<![\w.\-/~])(" + alternatives + r")(?=/|$|[^\w.\-])")


@dataclass
class PathMap:
    """Rewrites container paths to local paths (and back) by mount-path prefix, in one pass."""
    mounts: list[Mount]
    _fwd: dict = field(default_factory=dict, init=False)
    _back: dict = field(default_factory=dict, init=False)

    def __post_init__(self):
        for m in self.mounts:
            container = m.container_path.rstrip("/")
            if container == "":
                raise LocalRunError("a volume mounted at '/' cannot be mapped to a local folder")
            self._fwd[container] = str(m.local_path).rstrip("/")
            self._back[str(m.local_path).rstrip("/")] = container
        self._fwd_re = _prefix_re(list(self._fwd))
        self._back_re = _prefix_re(list(self._back))

    def to_local(self, text: str) -> str:
        return self._fwd_re.sub(lambda m: self._fwd[m.group(1)], text)

    def to_container(self, text: str) -> str:
        return self._back_re.sub(lambda m: self._back[m.group(1)], text)


@dataclass
class ProcessResult:
    exit_code: int | None
    reason: str          # "exit", "deadline", "cancelled", "start-error"
    message: str = ""
    pid: int | None = None


def base_environment(extra_names: tuple[str, ...] = ()) -> dict[str, str]:
    """A clean pod environment: PATH (with this Python's bin first), locale, HOME, and every ORCA_* variable."""
    env = {}
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join([bin_dir, os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin")])
    for name in ("HOME", "LANG", "LC_ALL", "TZ", "USER", "LOGNAME", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                 *extra_names):
        if name in os.environ:
            env[name] = os.environ[name]
    env.update({k: v for k, v in os.environ.items() if k.startswith("ORCA_")})
    return env


_SETPRIV = shutil.which("setpriv")
# The pod's first process: when the runner dies (even by SIGKILL) it receives SIGTERM (parent-death
# signal) and kills its whole process group, so tools the step started (wsclean, aoflagger) die with
# it, as every process of a container dies with its node.
_GUARD = ["sh", "-c", 'trap "kill -KILL 0" TERM; "$@" & wait $!; exit $?', "orca-pod"]


def run_process(argv: list[str], env: dict[str, str], cwd: Path, stdout: Path, stderr: Path,
                deadline_s: float | None, cancelled: Callable[[], bool],
                on_start: Callable[[int], None] = lambda pid: None) -> ProcessResult:
    """Run one pod's main process to the end, its deadline, or cancellation (then kill its process group)."""
    prefix = [_SETPRIV, "--pdeathsig", "TERM", "--", *_GUARD] if _SETPRIV else []
    if shutil.which(argv[0], path=env.get("PATH")) is None and not Path(argv[0]).is_file():
        return ProcessResult(None, "start-error", f"exec: {argv[0]!r}: executable file not found in $PATH")
    with open(stdout, "wb") as out, open(stderr, "wb") as err:
        try:
            proc = subprocess.Popen(prefix + argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                    env=env, cwd=cwd, process_group=0)
        except OSError as exc:
            return ProcessResult(None, "start-error", f"cannot start {argv[0]!r}: {exc}")
        on_start(proc.pid)
        start = time.monotonic()
        reason = "exit"
        while True:
            try:
                code = proc.wait(timeout=0.2)
                break
            except subprocess.TimeoutExpired:
                pass
            if deadline_s is not None and time.monotonic() - start > deadline_s:
                reason = "deadline"
            elif cancelled():
                reason = "cancelled"
            else:
                continue
            code = _kill_group(proc)
            break
    return ProcessResult(code, reason, pid=proc.pid)


def _kill_group(proc: subprocess.Popen) -> int:
    for sig, wait in ((signal.SIGTERM, GRACE_SECONDS), (signal.SIGKILL, None)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            return proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
    return proc.wait()
