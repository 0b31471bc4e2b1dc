"""Ctrl-C (SIGINT) and SIGTERM in a sweep's driver: stop, keep what ``--resume`` needs, say how.

Kubernetes and the cluster launcher send SIGTERM on preemption; a user presses Ctrl-C. Both
go the same way (``docs/reliability.md``, "Interrupts and preemption"):

- outside Tune's loop (start-up, the report) the first signal raises ``Interrupted`` in the
  main thread. It is a BaseException, like KeyboardInterrupt, so no ``except Exception`` on the
  way swallows it; ``launch`` ends the parent run KILLED, marks the sweep interrupted, stops
  its Ray, and ``driver.main`` prints one line and exits 128 + the signal (130, 143);
- inside ``Tuner.fit`` raising would cut Tune's own shutdown short (no last experiment
  snapshot, trial actors not stopped), so the first signal asks Tune to stop the way its own
  Ctrl-C handler does: Tune installs that handler for SIGUSR1 on every ``tune.run`` and for
  SIGINT unless ``TUNE_DISABLE_SIGINT_HANDLER`` is set; we set it and call the SIGUSR1 one, for
  SIGINT and SIGTERM alike. Tune finishes its step, snapshots, stops the trials (their epoch
  checkpoints kept), ends its callbacks (the MLflow logger closes the open child runs KILLED)
  and returns; ``launch`` then raises ``Interrupted`` itself;
- a second signal exits at once: the driver's child processes (the local Ray it started) are
  killed, the hooks registered with ``on_hard_exit`` (the parent run KILLED) get at most
  ``HARD_EXIT_HOOK_S`` seconds in all, one line is printed, and the process ends with
  ``os._exit``. Nothing marks the sweep finished on that path, so ``--resume`` finds it.

Signals are process-wide, so this module's state is too: one sweep per process.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
from typing import Callable

SIGNALS = (signal.SIGINT, signal.SIGTERM)
HARD_EXIT_HOOK_S = 3.0  # the second signal's budget for closing the parent run (a server may be slow)
REAP_WAIT_S = 10.0  # after ray.shutdown: how long Ray's last processes get before SIGKILL


class Interrupted(BaseException):
    """The first SIGINT or SIGTERM, raised in the driver's main thread (module docstring)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        return exit_code(self.signum)


def exit_code(signum: int) -> int:
    """The shell's convention: 128 + the signal (SIGINT 130, SIGTERM 143)."""
    return 128 + int(signum)


class _State:
    def __init__(self):
        self.active = False
        self.received: int | None = None  # the first signal
        self.deferring = 0  # > 0: record the signal, raise when the deferred block ends
        self.in_tune = False
        self.tune_handler_before = None  # SIGUSR1's handler before Tuner.fit (not Tune's)
        self.previous: dict[int, object] = {}
        self.hard_exit_hooks: list[Callable[[], None]] = []
        self.hard_exit_line: Callable[[str], str] = lambda name: f"second {name}: stopped at once"
        self.resumable = False  # the sweep's record exists and is not finished: --resume finds it


_state = _State()


def set_resumable(value: bool) -> None:
    """Said by ``launch``: True once the sweep's record (``xfer_sweep.json``) exists, False once
    it says finished. The driver's line names ``--resume`` only when it would find something."""
    _state.resumable = value


def resumable() -> bool:
    return _state.resumable


def received() -> str | None:
    """The name of the first signal this driver got ("SIGINT", "SIGTERM"), else None."""
    return signal.Signals(_state.received).name if _state.received is not None else None


@contextlib.contextmanager
def catching(hard_exit_line: Callable[[str], str] | None = None):
    """Handle SIGINT and SIGTERM for the block (the driver's ``main``); the previous handlers
    come back after it. ``hard_exit_line(signal name)``: the one line a second signal prints."""
    if threading.current_thread() is not threading.main_thread():  # signal.signal would fail
        yield
        return
    # Tune would otherwise replace our SIGINT handler for the length of Tuner.fit
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
    _state.__init__()
    _state.active = True
    if hard_exit_line is not None:
        _state.hard_exit_line = hard_exit_line
    _state.previous = {signum: signal.getsignal(signum) for signum in SIGNALS}
    reinstall()
    try:
        yield
    finally:
        for signum, handler in _state.previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        _state.active = False


def reinstall() -> None:
    """Our handlers again: ``ray.init`` sets its own for SIGTERM (exit 1 or 15, no line)."""
    if _state.active and threading.current_thread() is threading.main_thread():
        for signum in SIGNALS:
            signal.signal(signum, _handle)


@contextlib.contextmanager
def deferred():
    """A block a signal must not cut in two (starting Ray; creating the parent run and writing
    the sweep's record): the signal is recorded and raised when the block ends. Ray's own
    SIGTERM handlers, which ray.init installs, raise SystemExit inside it; that counts as SIGTERM."""
    _state.deferring += 1
    try:
        yield
    except SystemExit:
        if not _state.active:
            raise
        _state.received = _state.received or signal.SIGTERM
    finally:
        _state.deferring -= 1
        reinstall()
    if _state.active and _state.received is not None and not _state.deferring:
        raise Interrupted(_state.received)


@contextlib.contextmanager
def tune_loop():
    """The block around ``Tuner.fit``: a first signal stops Tune the way its Ctrl-C does (module
    docstring) instead of raising inside it. Raises ``Interrupted`` after the block if one came."""
    if _state.received is not None and _state.active:
        raise Interrupted(_state.received)
    _state.tune_handler_before = signal.getsignal(signal.SIGUSR1) if hasattr(signal, "SIGUSR1") else None
    _state.in_tune = True
    try:
        yield
    finally:
        _state.in_tune = False
    if _state.active and _state.received is not None:
        raise Interrupted(_state.received)


def on_hard_exit(hook: Callable[[], None]) -> Callable[[], None]:
    """Run ``hook`` (bounded, best effort) if a second signal ends the driver; returns a remover."""
    _state.hard_exit_hooks.append(hook)

    def remove():
        with contextlib.suppress(ValueError):
            _state.hard_exit_hooks.remove(hook)
    return remove


def _handle(signum, frame):
    if _state.received is not None:
        _hard_exit(signum)
    _state.received = signum
    if _state.deferring:
        return
    if _state.in_tune:
        stop_tune = signal.getsignal(signal.SIGUSR1) if hasattr(signal, "SIGUSR1") else None
        if callable(stop_tune) and stop_tune is not _state.tune_handler_before:
            # Tune's handler logs "Stop signal received ... Press CTRL+C to skip", and tune.run
            # then "Trials did not complete" and a Tuner.restore hint: not the command that resumes
            # a sweep. The driver prints its own line.
            logging.getLogger("ray.tune.tune").setLevel(logging.CRITICAL)
            stop_tune(signum, frame)
            return
        # Tuner.fit has not reached its loop yet: raising here is before any trial ran
    raise Interrupted(signum)


def _hard_exit(signum: int) -> None:
    """The second signal: kill what this driver started, close the parent, one line, exit."""
    kill_children(wait_s=0)
    hooks = list(_state.hard_exit_hooks)
    if hooks:
        worker = threading.Thread(target=lambda: [_quietly(hook) for hook in hooks], daemon=True)
        worker.start()
        worker.join(HARD_EXIT_HOOK_S)
    with contextlib.suppress(Exception):
        sys.stdout.flush()
    with contextlib.suppress(Exception):
        print(_state.hard_exit_line(signal.Signals(signum).name), file=sys.stderr, flush=True)
    os._exit(exit_code(signum))


def _quietly(hook: Callable[[], None]) -> None:
    with contextlib.suppress(Exception):
        hook()


def kill_children(wait_s: float = REAP_WAIT_S) -> int:
    """Wait up to ``wait_s`` for this process's descendants (the local Ray's GCS, raylet, agents
    and workers, which ``ray.shutdown`` told to stop) to exit, then SIGKILL the rest. Returns how
    many had to be killed. Only processes this driver started are touched."""
    import psutil

    try:
        children = psutil.Process().children(recursive=True)
    except psutil.Error:
        return 0
    if wait_s > 0 and children:
        _, children = psutil.wait_procs(children, timeout=wait_s)
    for child in children:
        with contextlib.suppress(psutil.Error):
            child.kill()
    if children:
        psutil.wait_procs(children, timeout=5)
    return len(children)
