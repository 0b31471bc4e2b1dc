"""argparse pieces every xfer command line shares: the `xfer` CLI and the sweep scripts.

A usage error is one line on stderr and exit code 2 (SPEC), so the parser class overrides
argparse's error (which prints the whole usage block), and the value types below reject bad
numbers with a message naming the valid range.
"""

from __future__ import annotations

import argparse
from typing import NoReturn

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2  # SPEC: ok, anything else, bad input


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (argparse prints the usage block too)."""

    def error(self, message: str) -> NoReturn:
        from xfer.errors import one_line  # a value with a newline must not break the line

        self.exit(EXIT_USAGE, f"{self.prog}: error: {one_line(message)}\n")


def _number(text: str, kind: type):
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be {'an integer' if kind is int else 'a number'}, got {text!r}") from None


def positive_int(text: str) -> int:
    value = _number(text, int)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def non_negative_int(text: str) -> int:
    value = _number(text, int)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text}")
    return value


def positive_float(text: str) -> float:
    value = _number(text, float)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def non_negative_float(text: str) -> float:
    value = _number(text, float)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def epoch_list(text: str) -> tuple[int, ...]:
    """``10,20``: whole epochs, comma-separated (their order and range are TrialConfig's to check)."""
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be whole epochs separated by commas, e.g. 10,20, "
                                         f"got {text!r}") from None


def accuracy_level(text: str) -> float:
    value = _number(text, float)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {text}")
    return value


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
    import unicodedata

    return unicodedata.category(char) in ("Cc", "Zl", "Zp")


def check_name(value: str, flag: str) -> str:
    """``value`` as one folder name, else UsageError naming the flag and the reason."""
    from xfer.errors import UsageError

    problem = name_problem(value)
    if problem:
        raise UsageError(f"{flag} {value!r} cannot name a folder: {problem}; use letters, digits, "
                         f"'-', '_' or '.'")
    return value


def check_output_path(path, flag: str, *, folder: bool = False):
    """The path an output will be written to, checked before any work is done: no control
    characters (a newline in a folder name shows in no listing as it is), not a folder when a
    file is wanted, and its nearest existing ancestor a writable folder (so a run is never lost
    at the end to a typo in where it goes). Raises UsageError naming the flag."""
    import os
    from pathlib import Path

    from xfer.errors import UsageError

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
