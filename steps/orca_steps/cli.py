"""``orca-step <step> --option value ...``: run one step, print its result as one JSON line.

Flags are the fields of the step's ``Options`` model, under their seed names (``--peel_sky``), with a
dashed alias (``--peel-sky``). Booleans take a value (``true``/``false``) so Argo can pass parameters
through unchanged; lists take a JSON list, a comma-separated string, or ``@file`` holding a JSON list.
Logs go to stderr; ``--result-file`` also writes the result where Argo reads output parameters.
"""
from __future__ import annotations

import argparse
import importlib
import json
import sys
import traceback
import types
import typing
from pathlib import Path

from pydantic import BaseModel, ValidationError

from .errors import InputError, OrcaError, as_orca_error
from .logs import get_logger, log, setup_logging
from .registry import STEPS


def load_step(name: str) -> types.ModuleType:
    if name not in STEPS:
        raise InputError(f"unknown step {name!r}; known steps: {', '.join(STEPS)}")
    return importlib.import_module(f"orca_steps.{STEPS[name][0]}")


def _is_list(annotation) -> bool:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_is_list(a) for a in typing.get_args(annotation) if a is not type(None))
    return origin in (list, tuple) or annotation in (list, tuple)


def parse_list(text: str) -> list:
    """A JSON list, ``@file`` holding one, or a comma-separated string (empty string -> [])."""
    text = text.strip()
    if text.startswith("@"):
        path = Path(text[1:])
        if not path.is_file():
            raise InputError(f"{path}: list file does not exist")
        text = path.read_text().strip()
    if text.startswith("["):
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"not a valid JSON list: {text[:80]!r}: {exc}") from exc
        return value
    return [item.strip() for item in text.split(",") if item.strip()]


def build_parser(name: str, options_model: type[BaseModel], summary: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"orca-step {name}", description=summary)
    for field_name, field in options_model.model_fields.items():
        flags = [f"--{field_name}"]
        if "_" in field_name:
            flags.append(f"--{field_name.replace('_', '-')}")
        default = None if field.is_required() else field.get_default(call_default_factory=True)
        help_text = (field.description or "") + ("" if field.is_required() else f" (default: {default})")
        parser.add_argument(*flags, dest=field_name, required=field.is_required(), help=help_text,
                            metavar="LIST" if _is_list(field.annotation) else None)
    parser.add_argument("--result-file", help="also write the JSON result to this file")
    parser.add_argument("--outputs-dir", help="also write each result field to <dir>/<field> (Argo output "
                        "parameters read these files: strings as they are, other values as JSON)")
    return parser


def parse_options(options_model: type[BaseModel], raw: dict) -> BaseModel:
    values = {}
    for key, text in raw.items():
        if text is None:
            continue
        annotation = options_model.model_fields[key].annotation
        values[key] = parse_list(text) if _is_list(annotation) else text
    try:
        return options_model(**values)
    except ValidationError as exc:
        problems = "; ".join(f"--{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise InputError(f"invalid options: {problems}") from None


def run_step(name: str, argv: list[str]) -> BaseModel:
    module = load_step(name)
    parser = build_parser(name, module.Options, STEPS[name][1])
    args = vars(parser.parse_args(argv))
    result_file = args.pop("result_file")
    outputs_dir = args.pop("outputs_dir")
    options = parse_options(module.Options, args)
    try:
        result = module.run(options)
    except OrcaError:
        raise
    except Exception as exc:  # one line naming the step's input, never a traceback that gets retried
        log(get_logger("cli"), "unexpected error", level=40, step=name, traceback=traceback.format_exc())
        raise as_orca_error(exc, _subject(options)) from exc
    text = result.model_dump_json()
    if result_file:
        Path(result_file).parent.mkdir(parents=True, exist_ok=True)
        Path(result_file).write_text(text + "\n")
    if outputs_dir:
        write_outputs(result, Path(outputs_dir))
    return result


# Options naming what a step works on, in the order an error message prefers them.
SUBJECT_FIELDS = ("ms", "src_ms", "work_dir", "nvme_work_dir", "queue_file", "out_dir")


def _subject(options: BaseModel) -> str | None:
    """The file or folder a step works on, to name in an error that did not name one itself."""
    return next((str(getattr(options, f)) for f in SUBJECT_FIELDS if getattr(options, f, None)), None)


def write_outputs(result: BaseModel, folder: Path) -> None:
    """One file per result field, the form Argo's ``valueFrom.path`` output parameters read."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, value in result.model_dump(mode="json").items():
        (folder / name).write_text(value if isinstance(value, str) else json.dumps(value))


def _usage() -> str:
    width = max(map(len, STEPS))
    lines = ["usage: orca-step <step> [--option value ...]", "", "steps:"]
    lines += [f"  {name.ljust(width)}  {summary}" for name, (_, summary) in STEPS.items()]
    lines += ["", "Run 'orca-step <step> --help' for a step's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    setup_logging()
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    try:
        result = run_step(name, rest)
    except OrcaError as exc:
        log(get_logger("cli"), str(exc), level=40, step=name, error=type(exc).__name__)
        one_line = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())
        print(f"orca-step {name}: error: {one_line}", file=sys.stderr)
        return exc.exit_code
    print(result.model_dump_json())
    return 0


if __name__ == "__main__":
    sys.exit(main())
