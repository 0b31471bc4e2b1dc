"""Stall points: test hooks that hold a sweep at a named point, so that a signal sent by a test
lands there every time rather than when the timing happens to allow it.

``XFER_INJECT_STALL="<point>[@<seconds>],..."`` makes the process that reaches ``<point>`` touch
``$XFER_INJECT_STALL_DIR/stalled-<point>`` (the test waits for that file) and then sleep
``<seconds>`` (default 60). The points:

- ``ray_start``: the driver, while it starts its local Ray (a signal there is held until Ray is
  up, then handled: ``interrupts.deferred``), so keep its seconds short;
- ``epoch``: a trial, after each epoch it reported and checkpointed, its run still open;
- ``report``: the driver, when every trial has ended and the report begins.

Unset, a stall point costs one environment lookup. The trial-failure hook, ``XFER_INJECT_FAULT``,
lives beside the trial that raises it (``xfer.sweep.trial``).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

STALL_ENV = "XFER_INJECT_STALL"
STALL_DIR_ENV = "XFER_INJECT_STALL_DIR"
POINTS = ("ray_start", "epoch", "report")
DEFAULT_STALL_S = 60.0


def stall_point(point: str) -> None:
    """Hold here if ``XFER_INJECT_STALL`` names ``point`` (module docstring)."""
    assert point in POINTS, point
    for item in filter(None, os.environ.get(STALL_ENV, "").split(",")):
        name, _, seconds = item.partition("@")
        if name.strip() != point:
            continue
        folder = os.environ.get(STALL_DIR_ENV)
        if folder:
            Path(folder).mkdir(parents=True, exist_ok=True)
            (Path(folder) / f"stalled-{point}").touch()
        time.sleep(float(seconds) if seconds else DEFAULT_STALL_S)
        return
