"""Run CASA tasks for the reference tests, in the CASA venv's Python (``make casa``), never under pytest.

    .venv-casa/bin/python tests/reference/casa_tasks.py '[["bandpass", {...}], ["applycal", {...}]]'

Each pair is a casatasks task and its keyword arguments, run in order; a task that fails, or returns
False, exits non-zero. Only casatasks is imported here: importing dp3 (or orca_steps) into a CASA
process first can crash casatasks.
"""
import json
import sys

import casatasks


def main(argv: list[str]) -> int:
    for name, kwargs in json.loads(argv[1]):
        outcome = getattr(casatasks, name)(**kwargs)
        if outcome is False:
            print(f"casatasks.{name} returned False", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
