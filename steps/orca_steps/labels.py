"""The one validator of labels and dates that become path parts, and the check that a path stays under its root.

Run labels, observation dates, LST labels and subband labels are joined into the NVMe work dir, the
archive path and the run folders, so a label like ``../../x`` or ``a/b`` would write outside them. Every
step and template parameter that takes one goes through these checks (the ``RunLabel``, ``ObsDate``,
``LstLabel`` and ``Subband`` option types), folders given as parameters to write into are absolute with no
'..' (``WriteRoot``), and ``path_under`` refuses a joined path that leaves its root whatever the labels were.
"""
from __future__ import annotations

import re
from datetime import date
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, WithJsonSchema

from . import config
from .errors import InputError

_LABEL_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$")
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def check_run_label(value: str, what: str = "run_label") -> str:
    """Run labels become Kubernetes label values and path parts: 1-63 of [A-Za-z0-9._-], no '..'."""
    if not isinstance(value, str) or not _LABEL_RE.match(value) or ".." in value:
        raise InputError(f"{what} {value!r} is malformed: 1-63 characters [A-Za-z0-9._-], "
                         "starting and ending with a letter or digit, no '..'")
    return value


def check_obs_date(value: str) -> str:
    """A real calendar date written YYYY-MM-DD (``date.fromisoformat`` alone also takes 20250615, 2025-W24)."""
    try:
        if not isinstance(value, str) or not _DATE_RE.match(value):
            raise ValueError
        return date.fromisoformat(value).isoformat()
    except ValueError:
        raise InputError(f"obs_date {value!r} is malformed: expected a date YYYY-MM-DD") from None


def check_lst_label(value: str) -> str:
    """An LST hour label as the pipeline writes it: 00h..23h."""
    hour = config.parse_lst_label(value if isinstance(value, str) else "")
    if value != config.lst_label(hour):
        raise InputError(f"LST label {value!r} is malformed: expected {config.lst_label(hour)!r} (00h..23h)")
    return value


def check_subband(value: str) -> str:
    return config.check_subband(value)


def check_write_root(value: str, what: str = "work dir") -> str:
    """A folder the project writes into, given as a parameter: an absolute path with no '..' part."""
    if not isinstance(value, str) or not value.startswith("/") or ".." in Path(value).parts:
        raise InputError(f"{what} {value!r} is malformed: expected an absolute path without '..'")
    return value


def path_under(root: str | Path, *parts: str) -> Path:
    """``root / parts...``, refused unless it stays strictly inside ``root`` (after resolving '..' and links)."""
    path = Path(root).joinpath(*parts)
    resolved, root_path = path.resolve(), Path(root).resolve()
    if resolved == root_path or not resolved.is_relative_to(root_path):
        raise InputError(f"{path}: path leaves its root {root}")
    return path


RunLabel = Annotated[str, AfterValidator(check_run_label)]
ObsDate = Annotated[str, AfterValidator(check_obs_date)]
# Their JSON schema lists the allowed labels: the Argo templates' enums are read from it.
LstLabel = Annotated[str, AfterValidator(check_lst_label),
                     WithJsonSchema({"type": "string", "enum": [config.lst_label(h) for h in range(24)]})]
Subband = Annotated[str, AfterValidator(check_subband),
                    WithJsonSchema({"type": "string", "enum": list(config.PROCESSED_SUBBANDS)})]
WriteRoot = Annotated[str, AfterValidator(check_write_root)]
