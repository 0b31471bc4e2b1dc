"""argparse pieces every xfer command line shares: the `xfer` CLI and the sweep scripts.

A usage error is one line on stderr and exit code 2 (the contract in ``xfer.errors``), so the
parser class overrides argparse's error (which prints the whole usage block), and the value
types below reject bad numbers with a message naming the valid range. Checks on names and
output paths are in ``xfer.paths``.
"""

from __future__ import annotations

import argparse
from typing import NoReturn

from xfer.errors import EXIT_USAGE, one_line


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (argparse prints the usage block too)."""

    def error(self, message: str) -> NoReturn:
        # one_line: a value with a newline must not break the line
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


def accuracy_gap(text: str) -> float:
    """An accuracy difference as a fraction: 0.01 is one point."""
    value = _number(text, float)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be a fraction in [0, 1) (0.01 is one point), got {text}")
    return value


def at_least_one(text: str) -> float:
    value = _number(text, float)
    if not (value >= 1 and value != float("inf")):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 1, got {text}")
    return value


def size_list(text: str) -> tuple[int, ...]:
    """``400,1000``: dataset sizes, positive whole numbers of images, comma-separated."""
    try:
        sizes = tuple(int(part) for part in text.split(","))
    except ValueError:
        sizes = ()
    if not sizes or min(sizes) <= 0:
        raise argparse.ArgumentTypeError(f"must be positive whole numbers of images separated by commas, "
                                         f"e.g. 400,1000, got {text!r}")
    return sizes
