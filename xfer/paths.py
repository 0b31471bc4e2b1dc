"""Checks on names and paths a user gives, made before any work starts.

A name that becomes one folder (the experiment: ``<storage>/<experiment>/<sweep id>``) must stay
one path segment, and an output path must be writable, so that a mistake in either is one line
and exit 2 at the start (``xfer.errors.UsageError``), never a run lost at its end.
"""

from __future__ import annotations

import os
import unicodedata
from pathlib import Path

from xfer.errors import UsageError

MAX_NAME_BYTES = 100  # a folder name: the sweep id adds ~21 bytes, filesystems allow 255


def name_problem(value: str) -> str | None:
    """Why ``value`` cannot be one folder name, or None. Names a user gives that become a path
    segment (the experiment: ``<storage>/<experiment>/<sweep id>``; a sweep id read back from
    storage) must stay one segment: a separator or ``..`` would write outside --storage
    (``--experiment ../../escape`` wrote Ray state at the filesystem root), and a control
    character (a newline) makes a folder no shell line or log line shows as it is."""
    if not value.strip():
        return "it is empty"
    if value in (".", ".."):
        return f"{value!r} is not a folder of its own"
    separators = sorted({c for c in value if c in "/\\"})
    if separators:
        return f"it contains the path separator {separators[0]!r}"
    control = next((c for c in value if _is_control(c)), None)
    if control is not None:
        return f"it contains the control character {control!r}"
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:  # undecodable bytes from argv (surrogate escapes)
        return "it is not valid UTF-8"
    if size > MAX_NAME_BYTES:
        return f"it is {size} bytes long in UTF-8, at most {MAX_NAME_BYTES}"
    return None


def _is_control(char: str) -> bool:
    """C0/C1 controls, DEL, and the Unicode line and paragraph separators."""
    return unicodedata.category(char) in ("Cc", "Zl", "Zp")


def check_name(value: str, flag: str) -> str:
    """``value`` as one folder name, else UsageError naming the flag and the reason."""
    problem = name_problem(value)
    if problem:
        raise UsageError(f"{flag} {value!r} cannot name a folder: {problem}; use letters, digits, "
                         f"'-', '_' or '.'")
    return value


def check_output_path(path, flag: str, *, folder: bool = False) -> Path:
    """The path an output will be written to, checked before any work is done: no control
    characters (a newline in a folder name shows in no listing as it is), not a folder when a
    file is wanted, and its nearest existing ancestor a writable folder (so a run is never lost
    at the end to a typo in where it goes). Raises UsageError naming the flag."""
    control = next((c for c in str(path) if _is_control(c)), None)
    if control is not None:
        raise UsageError(f"{flag} {str(path)!r} contains the control character {control!r}")
    path = Path(path).expanduser()
    if not folder and path.is_dir():
        raise UsageError(f"{flag} {path} is a folder; name the file to write")
    for parent in ([path] if folder else []) + list(path.parents):
        if parent.exists():
            if not parent.is_dir() or not os.access(parent, os.W_OK):
                raise UsageError(f"{flag} {path}: {parent} is not a writable folder")
            break
    return path
