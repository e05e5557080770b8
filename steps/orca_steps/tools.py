"""Running external programs (wsclean, aoflagger, fpack): find them, run them, explain failures."""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import Callable

from .errors import MissingToolError, ToolFailedError, ToolStoppedError
from .logs import get_logger, log

_logger = get_logger("tools")


def _tool_packages() -> dict[str, str]:
    """Debian package of each tool the steps call, from system_tools.tsv (set-up reads the same table)."""
    table = Path(__file__).with_name("system_tools.tsv").read_text().splitlines()
    rows = [line.split("\t") for line in table if line.strip() and not line.startswith("#")]
    return {row[0]: row[1] for row in rows if row[2] == "step"}


# Debian package that provides each tool, so the error says how to get it.
TOOL_PACKAGES = _tool_packages()


def require_tool(name: str) -> str:
    """Return the full path of ``name``, or raise MissingToolError naming the package to install."""
    found = shutil.which(name)
    if not found:
        pkg = TOOL_PACKAGES.get(name, name)
        raise MissingToolError(f"required tool '{name}' is not on PATH (Debian package: {pkg})")
    return found


def casacore_measures_dir() -> str | None:
    """The measures data shipped in the python-casacore wheel, if installed."""
    try:
        import casacore
    except ImportError:
        return None
    data = Path(casacore.__file__).parent / "data"
    return str(data) if data.is_dir() else None


def tool_env() -> dict[str, str]:
    """Environment for Debian-built casacore tools: point them at the wheel's measures data."""
    env = dict(os.environ)
    if "CASARCFILES" not in env:
        measures = casacore_measures_dir()
        if measures:
            rc = Path(os.environ.get("TMPDIR", "/tmp")) / "orca-casarc"
            if not rc.is_file() or measures not in rc.read_text():
                rc.write_text(f"measures.directory: {measures}\n")
            env["CASARCFILES"] = str(rc)
    env.setdefault("OPENBLAS_NUM_THREADS", "1")
    return env


_CAUSE_RE = re.compile(r"error|exception|abort|fail|cannot|can't|could not|unable|not found|invalid|terminat|"
                       r"no such|denied|segmentation|killed|attempt to|unknown|exceeds|missing", re.IGNORECASE)
_BOILERPLATE_RE = re.compile(r"if you think this is a bug|contact |please report", re.IGNORECASE)
CAUSE_WINDOW = 15  # the cause is looked for in this many last meaningful lines of the output


def failure_cause(output: str) -> str:
    """Why a tool failed, in one line: the first line of its output's tail that reads like an error (joined
    with the next when it ends in ':'), since later lines are consequences; else the last line."""
    lines = [re.sub(r"^[\s+>]+", "", line).strip() for line in output.splitlines()]
    lines = [line for line in lines if re.search(r"\w", line) and not _BOILERPLATE_RE.search(line)][-CAUSE_WINDOW:]
    for k, line in enumerate(lines):
        if _CAUSE_RE.search(line) and not line.lower().startswith("warning"):
            return f"{line} {lines[k + 1]}" if line.endswith(":") and k + 1 < len(lines) else line
    return lines[-1] if lines else "no output"


def run_tool(args: list[str], log_file: str | Path | None = None, cwd: str | Path | None = None,
             watch: Callable[[str], str | None] | None = None) -> float:
    """Run a tool to completion; returns wall seconds.

    Its output streams, line by line as the tool writes it, to stderr (the pod's log) and to ``log_file``,
    so a run killed after hours leaves its log. ``watch`` sees every line; a message it returns stops the
    tool (SIGTERM, SIGKILL after ``STOP_GRACE_S``) and raises ToolStoppedError with that message.
    A non-zero exit raises ToolFailedError: one line that starts with the cause (``failure_cause``) and
    names the log holding the whole output.
    """
    exe = require_tool(args[0])
    # Tools write to a pipe in 4 KiB blocks; stdbuf makes their C and C++ streams flush each line.
    argv = [require_tool("stdbuf"), "-oL", "-eL", exe, *map(str, args[1:])]
    command = " ".join(map(str, args))
    start = time.time()
    log(_logger, "running tool", tool=args[0], args=" ".join(map(str, args[1:])))
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    stopped = None
    with contextlib.ExitStack() as stack:
        sinks = [sys.stderr]
        if log_file:
            Path(log_file).parent.mkdir(parents=True, exist_ok=True)
            sinks.append(stack.enter_context(open(log_file, "a")))
            sinks[-1].write(f"$ {command}\n")
        proc = stack.enter_context(subprocess.Popen(
            argv, cwd=cwd, env=tool_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            errors="replace", bufsize=1))
        try:
            for line in proc.stdout:
                for sink in sinks:
                    sink.write(line)
                    sink.flush()
                tail.append(line)
                if watch and stopped is None:
                    stopped = watch(line)
                    if stopped:
                        _stop(proc)
        except BaseException:
            _stop(proc)  # never leave a tool running behind a step that stopped
            raise
        returncode = proc.wait()
    seconds = time.time() - start
    where = f"full output in {log_file}" if log_file else "no log file"
    if stopped:
        log(_logger, "tool stopped", level=40, tool=args[0], reason=stopped)
        raise ToolStoppedError(f"{args[0]} stopped: {stopped} ({where})")
    if returncode != 0:
        output = "".join(tail)
        log(_logger, "tool failed", level=40, tool=args[0], exit_code=returncode,
            tail="\n".join(output.strip().splitlines()[-15:]))
        raise ToolFailedError(f"{args[0]} failed: {failure_cause(output)} (exit code {returncode}; {where})")
    log(_logger, "tool finished", tool=args[0], seconds=round(seconds, 3))
    return seconds


TAIL_LINES = 200  # kept in memory for failure_cause; the log file has everything
STOP_GRACE_S = 10.0  # a stopped tool gets this long to exit on SIGTERM before SIGKILL


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM now, SIGKILL if it is still running after STOP_GRACE_S (the output pipe is read meanwhile)."""
    if proc.poll() is None:
        proc.terminate()
        kill = threading.Timer(STOP_GRACE_S, proc.kill)  # kill() does nothing once it has exited
        kill.daemon = True
        kill.start()
