"""The sweep's live progress line (xfer.sweep.progress): its counts and ETA on made-up trial
lists, the terminal bar and the plain lines, surviving Tuner.restore's pickling, the option,
and the lines of a real smoke sweep."""

from __future__ import annotations

import importlib.util
import io
import pickle
import re
import sys
from types import SimpleNamespace

import pytest

from conftest import REPO
from xfer.sweep.plan import cost_key
from xfer.sweep.progress import Counts, SweepProgress, count, eta, lines_above_bar, status_line

LINE = re.compile(r"^progress: (\d+)/(\d+) done, (\d+) running, (\d+) pending, (\d+) failed; "
                  r"elapsed [\d.]+ (?:s|min|h), ETA (?:[\d.]+ (?:s|min|h)|unknown)")


def trial(status: str, epochs: int = 4, batch_size: int = 16, seconds: float | None = None,
          epoch: int = 0, epochs_run: int | None = None):
    """What the progress line reads of a Tune trial: status, config and latest result."""
    result = {}
    if epoch:
        result["epoch"] = epoch
    if seconds is not None:
        result["time_total_s"] = seconds
    if epochs_run is not None:
        result["epochs_run"] = epochs_run
    return SimpleNamespace(status=status, last_result=result,
                           config={"model": "resnet10", "epochs": epochs, "batch_size": batch_size,
                                   "dataset_size": 48})


def key(epochs: int = 4, batch_size: int = 16) -> tuple:
    return cost_key({"model": "resnet10", "epochs": epochs, "batch_size": batch_size,
                     "dataset_size": 48})


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


# --- counting -----------------------------------------------------------------------------------

def test_counts_add_up_to_the_plan_with_trials_the_searcher_has_not_created_as_pending():
    trials = [trial("TERMINATED"), trial("TERMINATED"), trial("RUNNING"), trial("PENDING"),
              trial("PAUSED"), trial("ERROR")]
    counts = count(trials, planned=10)
    assert counts == Counts(done=2, running=1, pending=2 + 4, failed=1)
    assert counts.total == 10
    # Tune running more than planned (the plan's count was off): the total follows Tune
    assert count(trials, planned=3).total == len(trials)


# --- ETA ----------------------------------------------------------------------------------------

def test_eta_scales_the_estimate_by_the_pace_of_finished_trials_over_the_parallel_lanes():
    # estimate 10 s per trial; the two finished took 20 s each: pace 2x
    trials = [trial("TERMINATED", seconds=20.0, epochs_run=4), trial("TERMINATED", seconds=20.0, epochs_run=4),
              trial("RUNNING", epoch=2), trial("RUNNING", epoch=1), trial("PENDING")]
    seconds, pace = eta(trials, planned=6, trial_seconds={key(): 10.0}, default_seconds=10.0, parallel=2)
    assert pace == pytest.approx(2.0)
    # left at 20 s a trial: running 20*(1-2/4) + 20*(1-1/4), pending 20, one not created 20
    assert seconds == pytest.approx((10 + 15 + 20 + 20) / 2)


def test_eta_is_never_less_than_the_longest_trial_left():
    trials = [trial("RUNNING", epochs=40), trial("PENDING", epochs=1)]
    seconds, pace = eta(trials, planned=2, trial_seconds={key(40): 100.0, key(1): 2.5},
                        default_seconds=50.0, parallel=8)
    assert pace is None  # nothing finished yet: the plan's estimate as it is
    assert seconds == pytest.approx(100.0)


def test_eta_counts_a_trial_the_scheduler_stopped_early_by_the_epochs_it_ran():
    # ran 1 of 4 epochs in 5 s against a 10 s estimate for all 4: pace 2x, not 0.5x
    trials = [trial("TERMINATED", seconds=5.0, epochs_run=1), trial("PENDING")]
    seconds, pace = eta(trials, planned=2, trial_seconds={key(): 10.0}, default_seconds=10.0, parallel=1)
    assert pace == pytest.approx(2.0)
    assert seconds == pytest.approx(20.0)


def test_eta_without_an_estimate_uses_the_finished_trials_and_else_says_unknown():
    pending = [trial("PENDING"), trial("PENDING")]
    assert eta(pending, planned=2, trial_seconds={}, default_seconds=0.0, parallel=1) == (None, None)
    done = [trial("TERMINATED", seconds=30.0, epochs_run=4), *pending]
    seconds, pace = eta(done, planned=3, trial_seconds={}, default_seconds=0.0, parallel=2)
    assert pace is None and seconds == pytest.approx(30.0)  # 2 x 30 s over 2 lanes


def test_a_trial_without_its_own_estimate_gets_the_plans_mean():
    seconds, _ = eta([trial("PENDING", batch_size=64)], planned=1, trial_seconds={key(): 10.0},
                     default_seconds=7.0, parallel=1)
    assert seconds == pytest.approx(7.0)


def test_status_line_reads_as_counts_elapsed_eta_and_pace():
    line = status_line(Counts(3, 2, 3, 0), 42.0, 75.0, 1.3)
    assert line == ("progress: 3/8 done, 2 running, 3 pending, 0 failed; elapsed 42 s, ETA 75 s "
                    "(trials take 1.3x the plan's estimate)")
    assert LINE.match(line)
    assert status_line(Counts(0, 0, 8, 0), 1.0, None, None).endswith("ETA unknown")


# --- where it shows -----------------------------------------------------------------------------

def _progress(stream, clock, interval=30.0) -> SweepProgress:
    progress = SweepProgress(planned=3, trial_seconds={key(): 10.0}, default_seconds=10.0,
                             parallel=1, interval_s=interval, stream=stream, clock=clock)
    progress.setup(total_num_samples=3)
    return progress


def test_off_a_terminal_a_plain_line_every_interval_and_a_final_one():
    out, clock = io.StringIO(), FakeClock()
    progress = _progress(out, clock, interval=30.0)
    trials = [trial("RUNNING"), trial("PENDING"), trial("PENDING")]
    progress.on_step_end(1, trials)  # the first step: a line, so a log shows the total early
    clock.now += 10
    progress.on_step_end(2, trials)  # within the interval: nothing
    clock.now += 25
    progress.on_step_end(3, trials)
    trials = [trial("TERMINATED", seconds=12.0, epochs_run=4)] * 2 + [trial("ERROR")]
    clock.now += 1
    progress.on_experiment_end(trials)
    lines = out.getvalue().splitlines()
    assert len(lines) == 3 and all(LINE.match(line) for line in lines), lines
    assert lines[0].startswith("progress: 0/3 done, 1 running, 2 pending, 0 failed; elapsed 0 s, ETA 30 s")
    assert "elapsed 35 s" in lines[1]
    assert lines[2].startswith("progress: 2/3 done, 0 running, 0 pending, 1 failed; elapsed 36 s, ETA 0 s")
    assert "\r" not in out.getvalue() and "\x1b" not in out.getvalue()


def test_interval_zero_prints_nothing():
    out = io.StringIO()
    progress = _progress(out, FakeClock(), interval=0)
    progress.on_step_end(1, [trial("RUNNING")])
    progress.on_experiment_end([trial("TERMINATED", seconds=1.0)])
    assert out.getvalue() == ""


def test_in_a_terminal_a_bar_redrawn_in_place_with_printed_lines_above_it(monkeypatch):
    terminal, clock = FakeTerminal(), FakeClock()
    monkeypatch.setattr(sys, "stdout", terminal)
    progress = _progress(None, clock)  # None: sys.stdout at the time of writing
    with lines_above_bar():
        assert sys.stdout is not terminal  # prints go through tqdm.write now
        progress.on_step_end(1, [trial("RUNNING"), trial("PENDING"), trial("PENDING")])
        print("[resnet10-scratch] epoch 1/4  train_acc 0.500")
        clock.now += 2
        progress.on_step_end(2, [trial("TERMINATED", seconds=10.0, epochs_run=4), trial("RUNNING"),
                                 trial("PENDING")])
        progress.on_experiment_end([trial("TERMINATED", seconds=10.0, epochs_run=4)] * 3)
    assert sys.stdout is terminal
    screen = terminal.getvalue()
    assert "\r" in screen  # redrawn in place (tqdm's carriage return), not one line per update
    # the echoed line: the bar cleared first (the line starts at column 0), then redrawn under it
    echoed = screen.index("[resnet10-scratch] epoch 1/4  train_acc 0.500\n")
    assert screen[echoed - 1] == "\r" and "| progress: 0/3 done" in screen[echoed:]
    final = screen.rstrip("\n").rsplit("\r", 1)[-1]
    assert "progress: 3/3 done, 0 running, 0 pending, 0 failed" in final and "ETA 0 s" in final
    assert "|" in final and screen.endswith("\n")  # bar left on screen, closed


def test_lines_above_bar_changes_nothing_off_a_terminal(monkeypatch):
    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    with lines_above_bar():
        assert sys.stdout is out


def test_survives_pickling_for_tuner_restore_with_a_bar_open():
    terminal, clock = FakeTerminal(), FakeClock()
    progress = _progress(terminal, clock)
    progress.on_step_end(1, [trial("RUNNING")])
    assert progress._bar is not None
    restored = pickle.loads(pickle.dumps(progress))  # the bar, the stream and the clock are dropped
    assert restored._bar is None and restored.stream is None and restored._started is None
    assert (restored.planned, restored.trial_seconds, restored.interval_s) == (3, {key(): 10.0}, 30.0)
    out = io.StringIO()
    restored.stream = out
    restored.on_experiment_end([trial("TERMINATED", seconds=5.0, epochs_run=4)] * 3)
    assert out.getvalue().startswith("progress: 3/3 done")
    progress.on_experiment_end([])


# --- the plan's per-trial estimates, as Ray's configs find them ---------------------------------

def _pdf_grid_study():
    spec = importlib.util.spec_from_file_location("pdf_grid_for_progress", REPO / "sweeps" / "pdf_grid.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.STUDY


def test_every_trial_ray_runs_finds_its_own_estimate_in_the_plan(monkeypatch, tmp_path):
    """The plan's keys and Ray's configs must agree, else every trial falls back to the mean."""
    from ray.tune.search.variant_generator import generate_variants

    from xfer.sweep import driver, plan as plan_module, tune_run
    from xfer.sweep.options import build_parser, parse_options
    from xfer.sweep.sources import apply_size_default, source_from_option
    from xfer.sweep.study import resolve_trial

    monkeypatch.setattr(plan_module, "_time_step", lambda model, classes, size, batch, layers: 0.01 * batch)
    study = _pdf_grid_study()
    options = parse_options(build_parser("x", "x", list(study.presets), study.default_preset, "pdf_grid"),
                            ["--preset", "smoke", "--storage", str(tmp_path / "runs"),
                             "--cache-dir", str(tmp_path / "cache"), "--scheduler", "fifo"])
    preset = study.preset("smoke").for_run("smoke", False)
    source = source_from_option(None, preset.data)
    trials = apply_size_default(driver._validated_trials(preset, options, source), source)
    plan = plan_module.make_plan(trials, options, source=source, parallel_trials=2)
    # 2 sizes x 2 budgets; scratch and pretrained cost the same
    assert len(plan.trial_seconds) == 4 and len(set(plan.trial_seconds.values())) == 4
    space, _ = tune_run._search(preset, options, study, weights={}, default_size=None)
    configs = [spec for _, spec in generate_variants(space)]
    assert len(configs) == plan.num_trials
    for config in configs:
        assert cost_key(resolve_trial(config)) in plan.trial_seconds


# --- the option ---------------------------------------------------------------------------------

def test_progress_interval_option(capsys):
    from xfer.sweep.options import build_parser, parse_options

    parser = lambda: build_parser("sweeps/x.py", "x", ["smoke"], "smoke", "x")  # noqa: E731
    assert parse_options(parser(), []).progress_interval == 30.0
    assert parse_options(parser(), ["--progress-interval", "0"]).progress_interval == 0.0
    with pytest.raises(SystemExit) as exit_:
        parse_options(parser(), ["--progress-interval", "-5"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--progress-interval" in err[0] and "must be >= 0" in err[0]


# --- a real sweep -------------------------------------------------------------------------------

def test_smoke_sweep_prints_consistent_progress_lines_ending_all_done(smoke_sweep):
    _, done, _ = smoke_sweep
    lines = [line for line in done.stdout.splitlines() if line.startswith("progress: ")]
    assert len(lines) >= 2, done.stdout[-3000:]
    parsed = []
    for line in lines:
        match = LINE.match(line)
        assert match, line
        finished, total, running, pending, failed = map(int, match.groups())
        assert finished + running + pending + failed == total == 8, line
        parsed.append((finished, failed))
    assert [f for f, _ in parsed] == sorted(f for f, _ in parsed)  # done never goes back
    assert lines[-1].startswith("progress: 8/8 done, 0 running, 0 pending, 0 failed;"), lines[-1]
    assert "ETA 0 s" in lines[-1]
    assert any("ETA unknown" not in line for line in lines)  # the plan's estimate was used
    # printed before the closing summary, after the plan
    out = done.stdout
    assert out.index("plan:") < out.index(lines[0]) and out.rindex(lines[-1]) < out.index("\nsweep ")
