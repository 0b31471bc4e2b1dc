"""Names that cannot escape storage, sizes bounded by the machine, and contradictions refused
(issue 17, items 2, 5 and 6).

The one-line-exit-2-nothing-written contract of each refusal through the real command line is
in tests/test_bad_input.py's table; this file checks the rules themselves in process, and with
one real smoke sweep: that everything a sweep writes lies under --storage, --cache-dir, the
working directory (mlflow.db, xfer_reports) or the temp dir, and that --resume refuses a sweep
whose recorded options differ, naming each difference.
"""

from __future__ import annotations

import json
import os
import shutil
import sys

import pytest

from conftest import REPO, smoke_folders, smoke_layout, sweep_env, warm_runner

from xfer.errors import UsageError


# --- names ------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, problem", [
    ("../../escape", "path separator '/'"),
    ("a/b", "path separator '/'"),
    ("a\\b", "path separator '\\\\'"),
    ("..", "not a folder of its own"),
    (".", "not a folder of its own"),
    ("", "empty"),
    ("   ", "empty"),
    ("a\nb", "control character '\\n'"),
    ("a\x00b", "control character '\\x00'"),
    ("a\tb", "control character '\\t'"),
    ("a\x7fb", "control character '\\x7f'"),
    ("a\u2028b", "control character '\\u2028'"),
    ("x" * 101, "101 bytes long in UTF-8, at most 100"),
    ("é" * 51, "102 bytes long in UTF-8, at most 100"),  # 51 characters, 2 bytes each
    ("bad\udcffbytes", "not valid UTF-8"),  # what Python makes of undecodable argv bytes
])
def test_a_name_that_is_not_one_plain_folder_is_refused(name, problem):
    from xfer.paths import check_name, name_problem

    assert problem in name_problem(name)
    with pytest.raises(UsageError, match="--experiment .* cannot name a folder"):
        check_name(name, "--experiment")


@pytest.mark.parametrize("name", ["pdf_grid", "my-study.v2", "Étude_ß", "é" * 50, "x" * 100, ".hidden"])
def test_plain_names_pass(name):
    from xfer.paths import name_problem

    assert name_problem(name) is None


def _options(tmp_path, *argv: str):
    from xfer.sweep.options import build_parser, parse_options

    parser = build_parser("sweeps/test.py", "a test", ["smoke", "quick", "study"], "study", "test",
                          aliases={"tiny": "smoke", "cpu": "quick"})
    return parse_options(parser, [*argv, "--gpus-per-trial", "0", "--storage", str(tmp_path / "runs"),
                                  "--cache-dir", str(tmp_path / "cache")])


def test_the_experiment_name_is_checked_with_the_options(tmp_path):
    with pytest.raises(UsageError, match="--experiment '../x' cannot name a folder"):
        _options(tmp_path, "--experiment", "../x")
    assert _options(tmp_path, "--experiment", "study_2").experiment == "study_2"


def test_an_output_path_with_a_control_character_is_refused(tmp_path):
    from xfer.paths import check_output_path

    with pytest.raises(UsageError, match="--out .* contains the control character '\\\\n'"):
        check_output_path(tmp_path / "a\nb", "--out", folder=True)
    assert not list(tmp_path.iterdir())


# --- contradictions ---------------------------------------------------------------------------

def test_smoke_test_with_another_explicit_preset_is_refused(tmp_path):
    with pytest.raises(UsageError, match="--smoke-test is --preset smoke; it contradicts --preset quick"):
        _options(tmp_path, "--smoke-test", "--preset", "quick")
    with pytest.raises(UsageError, match="contradicts --preset cpu"):  # an alias of quick
        _options(tmp_path, "--smoke-test", "--preset", "cpu")
    assert _options(tmp_path, "--smoke-test", "--preset", "smoke").preset == "smoke"
    assert _options(tmp_path, "--smoke-test", "--preset", "tiny").preset == "smoke"  # smoke's alias
    assert _options(tmp_path, "--smoke-test").preset == "smoke"
    assert _options(tmp_path).preset == "study"  # the default, unchanged
    assert _options(tmp_path, "--preset", "quick").preset == "quick"


def _record(options) -> dict:
    """What xfer.sweep.tune_run writes to xfer_sweep.json for these options."""
    return {"sweep_id": "test-20250101-000000-abcd", "started_at": 1.0, "finished": False,
            "options": {k: str(v) for k, v in vars(options).items()}}


def test_resume_refuses_other_preset_data_or_search_space_and_names_each_difference(tmp_path):
    from dataclasses import replace

    from xfer.sweep.options import check_resume

    started = _options(tmp_path, "--smoke-test")
    previous = _record(started)
    # what may change between an interrupted run and its resumption
    check_resume(previous, replace(started, max_concurrent=1, max_failures=5, report=False,
                                   progress_interval=0.0, resume=True))
    changed = replace(started, preset="quick", data="cifar10", num_samples=3, momentum=0.5,
                      tick_labels=False)
    with pytest.raises(UsageError) as refused:
        check_resume(previous, changed)
    message = str(refused.value)
    assert "\n" not in message and "sweep test-20250101-000000-abcd was started with" in message
    for difference in ("--preset smoke (now quick)", "--data (not given) (now cifar10)",
                       "--num-samples (not given) (now 3)", "--momentum (not given) (now 0.5)",
                       "--no-tick-labels not given (now given)"):
        assert difference in message, message
    assert "--search" not in message  # unchanged options are not listed


def test_resume_refuses_a_recorded_sweep_id_that_is_not_one_folder(tmp_path):
    from xfer.sweep.options import check_resume

    options = _options(tmp_path, "--smoke-test")
    with pytest.raises(UsageError, match="recorded sweep id '../../elsewhere' cannot name a folder"):
        check_resume({**_record(options), "sweep_id": "../../elsewhere"}, options)


# --- bounds -----------------------------------------------------------------------------------

def test_the_bounds_come_from_this_machine_and_name_the_estimate():
    from xfer import bounds

    memory = bounds.memory_bytes()
    assert 2**28 < memory <= os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    side = int((memory / bounds.FLOAT32_RGB) ** 0.5) + 1  # one float32 image just over memory
    with pytest.raises(UsageError) as refused:
        bounds.check_image_batch(side, 1)
    assert str(refused.value).startswith(f"--image-size {side} needs at least ")
    assert f"this machine has {bounds.human_bytes(memory)}" in str(refused.value)
    bounds.check_image_batch(224, 256)  # an ImageNet-size batch passes anywhere
    with pytest.raises(UsageError, match="--num-samples 10000000000 needs at least .* for 10000000000 trials"):
        bounds.check_trial_count(10**10, "--num-samples 10000000000")
    bounds.check_trial_count(1000, "--num-samples 1000")
    with pytest.raises(UsageError, match="--max-concurrent 100000 needs at least 50 TB"):
        bounds.check_concurrent_trials(100_000)
    bounds.check_concurrent_trials(1)


def test_the_disk_bound_reads_the_filesystem_the_output_goes_to(tmp_path):
    from xfer import bounds

    free = shutil.disk_usage(tmp_path).free
    assert abs(bounds.free_disk_bytes(tmp_path / "not" / "yet" / "there") - free) < 2**30
    count = free // (64 * 64 * 3) + 1  # one image more than fits
    with pytest.raises(UsageError, match=f"needs at least .* of disk for {count} packed images of "
                                         f"64 x 64 px.*free"):
        bounds.check_packed_images(count, 64, tmp_path / "out", "--n")
    bounds.check_packed_images(1000, 64, tmp_path / "out", "--n")
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_the_grid_times_num_samples_is_bounded_before_the_trials_are_listed(tmp_path):
    """--num-samples within the bound alone, but times the grid over it: refused in the
    driver before the trial list (which ran out of memory at 10^9) is made."""
    from xfer import bounds

    per_seed = int(bounds.memory_bytes() / bounds.TRIAL_DRIVER_BYTES / 8) + 1  # smoke: 8 configs
    done = warm_runner().run([sys.executable, str(REPO / "sweeps" / "pdf_grid.py"), "--smoke-test",
                              "--dry-run", "--num-samples", str(per_seed), "--storage", str(tmp_path / "runs"),
                              "--cache-dir", str(tmp_path / "cache")],
                             cwd=tmp_path, env=sweep_env(tmp_path), timeout=120)
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-2000:]
    assert f"--num-samples {per_seed} x the grid's 8 configurations needs at least" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "plan:" not in done.stdout


# --- the shared smoke sweep: where it writes, and --resume against its record -----------------

def test_everything_a_sweep_writes_lies_under_its_folders_and_resume_checks_its_record(
        smoke_sweep, tmp_path, shared_cache):
    """The shared smoke sweep ran cold with HOME, the working directory, --storage and
    --cache-dir all apart (conftest.smoke_layout): as it exited HOME was untouched, the working
    directory held only mlflow.db (or mlruns/) and xfer_reports/, and nothing new sat beside
    them or at the filesystem root. (Ray's session folder goes to RAY_TMPDIR, the temp dir,
    which is allowed.) Then the sweep's own record, copied and marked unfinished, refuses
    --resume with another preset and accepts it with the same one."""
    work = smoke_sweep[0]
    held = smoke_folders(work)
    assert held["home"] == [], held["home"][:20]
    assert set(held["work"]) <= {"mlflow.db", "mlruns", "xfer_reports"} and "mlflow.db" in held["work"], held
    assert held["parent"] == ["home", "storage", "work"]
    assert held["storage"] == ["pdf_grid"]  # <storage>/<experiment>/<sweep id>
    assert held["roots_after"] == held["roots_before"]

    # --resume against a copy of the real record, as an interrupted sweep leaves it
    [original] = smoke_layout(work)["storage"].glob("pdf_grid/*/xfer_sweep.json")
    storage = tmp_path / "storage"
    copy = storage / "pdf_grid" / original.parent.name
    shutil.copytree(original.parent, copy)
    shutil.copy(work / "mlflow.db", tmp_path / "mlflow.db")
    record_path = copy / original.name
    record = json.loads(record_path.read_text())
    record_path.write_text(json.dumps({**record, "finished": False}))
    cmd = [sys.executable, str(REPO / "sweeps" / "pdf_grid.py"), "--preset", "smoke",
           "--storage", str(storage), "--cache-dir", str(shared_cache), "--max-concurrent", "1"]
    env = sweep_env(tmp_path)
    other = warm_runner().run([*cmd[:2], "--preset", "quick", *cmd[4:], "--resume", "--dry-run"],
                              cwd=tmp_path, env=env, timeout=120)
    assert other.returncode == 2, other.stdout[-2000:] + other.stderr[-2000:]
    [line] = other.stderr.strip().splitlines()
    assert f"--resume: sweep {record['sweep_id']} was started with --preset smoke (now quick)" in line
    same = warm_runner().run([*cmd, "--resume", "--dry-run"], cwd=tmp_path, env=env, timeout=120)
    assert same.returncode == 0, same.stdout[-2000:] + same.stderr[-2000:]
    assert record["sweep_id"] in same.stdout
