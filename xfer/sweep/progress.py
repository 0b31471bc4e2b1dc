"""The sweep's live progress line: trials done / running / pending / failed of those planned,
the time elapsed and an ETA, while Ray Tune runs the trials.

Where it shows. In a terminal (stdout is a TTY) it is a tqdm bar redrawn in place; every other
line the driver prints meanwhile (the per-epoch lines, spool notices) goes through
``tqdm.write`` (``lines_above_bar``), so it lands above the bar instead of through it. Anywhere
else (``ray job logs``, a pipe, a file, where a redrawn line would be a stream of carriage
returns) it is a plain line every ``--progress-interval`` seconds, one when the trials start
and one when they are over; ``--progress-interval 0`` turns the progress line off.

The ETA. The plan (``xfer.sweep.plan``) estimates each trial's seconds from a short calibration;
real trials also pay for data loading, checkpoints and Ray, so the estimate is corrected by the
pace of the trials that have finished: their measured seconds (Tune's ``time_total_s``) over
their estimate, scaled to the epochs they ran (ASHA stops some early). What is left (pending
trials in full, running ones for their epochs to go) at that pace, spread over the trials that
run at once, is the ETA; never less than the longest single trial left, which cannot be split.
With no calibrated estimate, the finished trials' mean time stands in; with neither, "ETA
unknown". The first trial on each Ray worker also pays the worker's start-up (imports, data),
so the first ETAs run high and settle as trials finish (a 2-core smoke sweep: pace 8.3x the
estimate after its first 2 trials, 2x after all 8); before any trial finishes the ETA is the
plan's own estimate.

Cost (measured, 500 trials): counting ~30 us per Tune step; the ETA ~2 ms, computed only when a
line is due (once a second on a terminal, once per interval elsewhere).
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from dataclasses import dataclass

from ray.tune import Callback

from xfer.sweep.plan import Plan, cost_key, format_duration
from xfer.sweep.study import resolve_trial

DEFAULT_INTERVAL_S = 30.0
_TTY_REFRESH_S = 1.0  # the bar's elapsed time ticks in seconds: no point redrawing faster
_FINAL = ("TERMINATED", "ERROR")


@dataclass(frozen=True)
class Counts:
    done: int
    running: int
    pending: int  # queued, paused, or not yet created by the searcher
    failed: int

    @property
    def total(self) -> int:
        return self.done + self.running + self.pending + self.failed


def count(trials, planned: int) -> Counts:
    """``trials``: Tune's trial list (anything with ``.status``). A searcher creates trials as
    it goes, so those of the ``planned`` not created yet are pending too. A trial Tune retries
    after a crash (``--max-failures``) is running or pending again, not failed: only a trial
    that has used up its retries is."""
    statuses = [trial.status for trial in trials]
    done, failed = statuses.count("TERMINATED"), statuses.count("ERROR")
    running = statuses.count("RUNNING")
    pending = len(statuses) - done - failed - running + max(0, planned - len(statuses))
    return Counts(done=done, running=running, pending=pending, failed=failed)


def eta(trials, planned: int, trial_seconds: dict[tuple, float], default_seconds: float,
        parallel: int) -> tuple[float | None, float | None]:
    """(seconds left, pace): the pace is measured / estimated seconds of the finished trials
    (None before one has finished, or without estimates); see the module docstring."""
    estimate = lambda values: trial_seconds.get(cost_key(values), default_seconds)  # noqa: E731
    measured = estimated = per_full_trial = 0.0
    finished = 0
    for trial in trials:
        result = trial.last_result or {}
        seconds = result.get("time_total_s")
        if trial.status != "TERMINATED" or not seconds:
            continue
        values = resolve_trial(trial.config)
        fraction = _fraction_run(values, result) or 1.0
        measured += seconds
        estimated += estimate(values) * fraction
        per_full_trial += seconds / fraction
        finished += 1
    if estimated > 0:
        pace = measured / estimated
        seconds_of = lambda values: estimate(values) * pace  # noqa: E731
    elif finished:  # no calibrated estimate: the finished trials' mean time stands in
        pace = None
        seconds_of = lambda values: per_full_trial / finished  # noqa: E731
    elif default_seconds > 0 or trial_seconds:
        pace = None
        seconds_of = estimate
    else:
        return None, None
    left = []
    for trial in trials:
        if trial.status in _FINAL:
            continue
        values = resolve_trial(trial.config)
        left.append(seconds_of(values) * (1.0 - _fraction_run(values, trial.last_result or {})))
    not_created = max(0, planned - len(trials))
    per_unseen = default_seconds * pace if pace is not None else (
        per_full_trial / finished if finished and not estimated else default_seconds)
    left += [per_unseen] * not_created
    if not left:
        return 0.0, pace
    running = sum(trial.status == "RUNNING" for trial in trials)
    lanes = max(1, min(max(parallel, running), len(left)))
    return max(sum(left) / lanes, max(left)), pace


def _fraction_run(values: dict, result: dict) -> float:
    """The share of its epochs a trial has run, from its latest result."""
    epochs = values.get("epochs") or 0
    ran = result.get("epochs_run") or result.get("epoch") or 0
    return min(1.0, ran / epochs) if epochs else 0.0


def status_line(counts: Counts, elapsed_s: float, eta_s: float | None, pace: float | None) -> str:
    """e.g. ``progress: 3/8 done, 2 running, 3 pending, 0 failed; elapsed 42 s, ETA 1.2 min
    (trials take 1.3x the plan's estimate)``."""
    line = (f"progress: {counts.done}/{counts.total} done, {counts.running} running, "
            f"{counts.pending} pending, {counts.failed} failed; elapsed {format_duration(elapsed_s)}, "
            f"ETA {format_duration(eta_s) if eta_s is not None else 'unknown'}")
    if pace is not None:
        line += f" (trials take {pace:.2g}x the plan's estimate)"
    return line


class SweepProgress(Callback):
    """The progress line as a Tune callback in the driver process (every hook gets Tune's
    whole trial list). Ray pickles it with the RunConfig into the sweep's state, so that
    ``Tuner.restore`` brings it back: the bar, the stream and the clock readings are dropped
    (``__getstate__``) and start afresh in the restored driver; counts and ETA are recomputed
    from the trial list each time, so nothing else needs carrying over."""

    def __init__(self, planned: int, trial_seconds: dict[tuple, float] | None = None,
                 default_seconds: float = 0.0, parallel: int = 1,
                 interval_s: float = DEFAULT_INTERVAL_S, stream=None, clock=None):
        self.planned = planned
        self.trial_seconds = dict(trial_seconds or {})
        self.default_seconds = default_seconds
        self.parallel = parallel
        self.interval_s = interval_s
        self.stream = stream  # None: sys.stdout at the time of writing (it may be redirected)
        self.clock = clock or time.monotonic
        self._reset()

    @classmethod
    def from_plan(cls, plan: Plan, interval_s: float = DEFAULT_INTERVAL_S, **kwargs) -> "SweepProgress":
        return cls(planned=plan.num_trials, trial_seconds=plan.trial_seconds,
                   default_seconds=plan.seconds_serial / max(1, plan.num_trials),
                   parallel=plan.parallel_trials, interval_s=interval_s, **kwargs)

    def _reset(self) -> None:
        self._started: float | None = None
        self._shown_at: float | None = None
        self._shown_counts: Counts | None = None
        self._bar = None

    def __getstate__(self):
        state = {k: v for k, v in self.__dict__.items() if not k.startswith("_")}
        state.update(stream=None, clock=None)  # a terminal and a test's fake clock do not pickle
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self.clock = self.clock or time.monotonic
        self._reset()

    # --- Tune hooks ---------------------------------------------------------------------------

    def setup(self, total_num_samples: int | None = None, **info):
        self._started = self.clock()
        if total_num_samples:  # Tune's own count (grid x samples) is the one it will run
            self.planned = total_num_samples

    def on_step_end(self, iteration, trials, **info):
        self.show(trials)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.show(trials)

    def on_trial_error(self, iteration, trials, trial, **info):
        self.show(trials)

    def on_experiment_end(self, trials, **info):
        self.show(trials, final=True)
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    # --- display ------------------------------------------------------------------------------

    def show(self, trials, final: bool = False) -> None:
        if self.interval_s <= 0:
            return
        now = self.clock()
        if self._started is None:
            self._started = now
        stream = self.stream or sys.stdout
        terminal = _is_terminal(stream)
        counts = count(trials, self.planned)
        since = None if self._shown_at is None else now - self._shown_at
        if terminal:  # redraw when a count changes, else once a second for the clock
            due = since is None or since >= _TTY_REFRESH_S or counts != self._shown_counts
        else:
            due = since is None or since >= self.interval_s
        if not (due or final):
            return
        eta_s, pace = eta(trials, counts.total, self.trial_seconds, self.default_seconds,
                          self.parallel)
        text = status_line(counts, now - self._started, 0.0 if final else eta_s, pace)
        self._shown_at, self._shown_counts = now, counts
        if terminal:
            self._draw(_unwrapped(stream), counts, text)
        else:
            print(text, file=stream, flush=True)

    def _draw(self, stream, counts: Counts, text: str) -> None:
        from tqdm import tqdm

        if self._bar is None:
            # the counts are in the text; the bar shows the share of trials that are over
            self._bar = tqdm(total=counts.total, desc=text, file=stream, bar_format="|{bar:20}| {desc}",
                             dynamic_ncols=True, leave=True, mininterval=0)
        self._bar.total = counts.total
        self._bar.n = counts.done + counts.failed
        self._bar.set_description_str(text, refresh=False)
        self._bar.refresh()


def _is_terminal(stream) -> bool:
    """A terminal that a bar can be drawn on: a tty with a width. A pseudo-terminal of size 0
    (`script` run without a controlling terminal) gets plain lines: tqdm draws nothing there."""
    try:
        if not stream.isatty():
            return False
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False
    try:
        return os.get_terminal_size(stream.fileno()).columns > 0
    except (AttributeError, ValueError, OSError):  # a tty stand-in without a file descriptor
        return True


def _unwrapped(stream):
    """The terminal under ``lines_above_bar``'s stand-in: the bar draws on it directly."""
    return stream.terminal if isinstance(stream, _AboveBar) else stream


class _AboveBar:
    """A stand-in for stdout or stderr whose whole lines go through ``tqdm.write`` (tqdm's
    recipe for printing beside a bar; its own ``DummyTqdmFile`` would store its buffer on the
    wrapped stream): tqdm clears the bar, prints the line and redraws the bar under it."""

    def __init__(self, terminal):
        self.terminal = terminal
        self._partial = ""

    def write(self, text: str) -> int:
        from tqdm import tqdm

        *lines, self._partial = (self._partial + text).split("\n")
        for line in lines:
            tqdm.write(line, file=self.terminal)
        return len(text)

    def flush(self) -> None:  # a partial line waits for its newline: tqdm.write takes lines
        self.terminal.flush()

    def __getattr__(self, name):  # isatty, fileno, encoding, ... of the terminal
        return getattr(self.terminal, name)


@contextlib.contextmanager
def lines_above_bar(enabled: bool = True):
    """While Tune runs: on a terminal, send what is printed to stdout and stderr through
    ``tqdm.write``, above the bar. Every ``print`` is covered, the MLflow logger's echo
    included, also when ``Tuner.restore`` brought back a logger whose echo is plain
    ``print``. Off a terminal nothing changes."""
    saved = sys.stdout, sys.stderr
    if enabled and _is_terminal(sys.stdout):
        sys.stdout = _AboveBar(sys.stdout)
        if _is_terminal(sys.stderr):
            sys.stderr = _AboveBar(sys.stderr)
    try:
        yield
    finally:
        for stream in (sys.stdout, sys.stderr):
            if isinstance(stream, _AboveBar) and stream._partial:
                stream.terminal.write(stream._partial)
        sys.stdout, sys.stderr = saved
