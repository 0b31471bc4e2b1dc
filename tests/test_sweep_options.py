"""Bad sweep options fail in a second, before Ray or MLflow is touched: one stderr line,
exit 2, nothing created."""

from __future__ import annotations

import pytest

from conftest import run_sweep

BAD_OPTIONS = {
    "unknown preset": (["--preset", "huge"], "invalid choice: 'huge'"),
    "unknown search": (["--search", "random"], "invalid choice: 'random'"),
    "unknown scheduler": (["--scheduler", "pbt"], "invalid choice: 'pbt'"),
    "zero samples": (["--num-samples", "0"], "must be a positive integer"),
    "samples not a number": (["--num-samples", "many"], "must be an integer"),
    "negative cpus": (["--cpus-per-trial", "-1"], "must be > 0"),
    "more GPUs than the machine has": (["--gpus-per-trial", "4"], "--gpus-per-trial 4"),
    "fractional GPUs above one": (["--gpus-per-trial", "1.5"], "whole number"),
    "s3 storage without a bucket": (["--storage", "s3://"], "needs a bucket"),
    "storage under a file": (["--storage", "{file}/runs"], "not a writable folder"),
    "resume with nothing to resume": (["--resume"], "no interrupted sweep"),
    "empty experiment": (["--experiment", " "], "must not be empty"),
    "momentum of one": (["--momentum", "1.0"], "--momentum must be in [0, 1), got 1.0"),
    "negative momentum": (["--momentum", "-0.1"], "--momentum must be in [0, 1), got -0.1"),
    "momentum not a number": (["--momentum", "nan"], "--momentum must be in [0, 1), got nan"),
    "momentum a word": (["--momentum", "heavy"], "must be a number, got 'heavy'"),
    "unknown gamma reading": (["--gamma-beta", "bogus"], "invalid choice: 'bogus'"),
}


@pytest.mark.parametrize("case", list(BAD_OPTIONS))
@pytest.mark.slow
def test_bad_sweep_option_is_one_line_exit_2_and_starts_nothing(case, tmp_path, shared_cache):
    args, expected = BAD_OPTIONS[case]
    (tmp_path / "a_file").write_text("x")
    argv = [a.format(file=tmp_path / "a_file") for a in args]
    done = run_sweep("pdf_grid.py", ["--preset", "smoke", *argv] if "--preset" not in argv else argv,
                     tmp_path, shared_cache, timeout=120)
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert expected in lines[0]
    assert "plan:" not in done.stdout  # failed before planning, let alone launching
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]  # no mlflow.db, no runs/


# (script, arguments, what the one line must say); {tmp} is the test's folder, which holds
# `a_file`, an empty `empty/` and a one-class image folder `one_class/`
STUDY_BAD_OPTIONS = {
    "folder study without --data": ("folder_finetune.py", [], "needs --data DIR"),
    "--data that does not exist": ("folder_finetune.py", ["--data", "{tmp}/nope"], "no such folder"),
    "--data that is a file": ("folder_finetune.py", ["--data", "{tmp}/a_file"], "not a folder"),
    "--data an empty folder": ("folder_finetune.py", ["--data", "{tmp}/empty"], "empty"),
    "--data a one-class folder": ("folder_finetune.py", ["--data", "{tmp}/one_class"], "class"),
    "CIFAR offline and absent": ("cifar10_transfer.py", ["--no-download", "--data-root", "{tmp}/empty"],
                                 "cifar-10-python.tar.gz"),
    "--data-root that is a file": ("cifar100_archs.py", ["--data-root", "{tmp}/a_file"], "not a folder"),
    "--data unknown name": ("probe_regimes.py", ["--data", "imagenet"], "valid: pdf, cifar10, cifar100"),
    "--epoch-milestones without an epochs axis": ("cifar10_transfer.py", ["--epoch-milestones"],
                                                  "preset smoke does not sweep epochs"),
    "--gamma-beta for CIFAR": ("cifar10_transfer.py", ["--gamma-beta", "scale"],
                               "--gamma-beta apply to generated PDF-plot data only, not to CIFAR10"),
    "--no-tick-labels for an image folder": ("folder_finetune.py", ["--data", "{tmp}/one_class",
                                                                    "--no-tick-labels"],
                                             "--no-tick-labels apply to generated PDF-plot data only"),
}


@pytest.mark.parametrize("case", list(STUDY_BAD_OPTIONS))
@pytest.mark.slow
def test_bad_study_input_is_one_line_exit_2_and_starts_nothing(case, tmp_path, shared_cache):
    from helpers_data import write_image_folder

    script, args, expected = STUDY_BAD_OPTIONS[case]
    (tmp_path / "a_file").write_text("x")
    (tmp_path / "empty").mkdir()
    write_image_folder(tmp_path / "one_class", classes=("cat",), per_class=4, corrupt=False)
    before = sorted(p.name for p in tmp_path.iterdir())
    argv = [a.format(tmp=tmp_path) for a in args]
    done = run_sweep(script, ["--preset", "smoke", *argv], tmp_path, shared_cache, timeout=120)
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert expected in lines[0], lines[0]
    assert "plan:" not in done.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no mlflow.db, no runs/
    assert not any((tmp_path / "empty").iterdir())


@pytest.mark.slow
def test_resume_when_s3_storage_does_not_answer_is_one_line_exit_1(tmp_path, shared_cache):
    """Not exit 2: the storage may hold an interrupted sweep that a retry would find, and
    KubeRay's entrypoint (infra/k8s/rayjob.yaml) reads 2 from --resume as "nothing to resume"."""
    import socket

    from conftest import sweep_env

    with socket.socket() as sock:  # a loopback port nothing listens on
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    env = {k: v for k, v in sweep_env(tmp_path).items() if not k.startswith("AWS_")}
    env.update({"AWS_ENDPOINT_URL": f"http://127.0.0.1:{closed}", "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
                "AWS_EC2_METADATA_DISABLED": "true"})
    done = run_sweep("pdf_grid.py", ["--preset", "smoke", "--resume", "--storage", "s3://bucket/runs"],
                     tmp_path, shared_cache, timeout=120, env=env)
    assert done.returncode == 1, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert "--resume: cannot list s3://bucket/runs/pdf_grid/" in lines[0]
    assert "check AWS_ENDPOINT_URL and the AWS credentials" in lines[0]
    assert list(tmp_path.iterdir()) == []  # no mlflow.db, nothing launched


# --- options that override a preset's trials or its PDF data, in process -----------------------

def _options(tmp_path, *argv: str):
    from xfer.sweep.options import build_parser, parse_options

    parser = build_parser("sweeps/test.py", "a test", ["smoke"], "smoke", "test")
    return parse_options(parser, [*argv, "--gpus-per-trial", "0", "--storage", str(tmp_path / "runs"),
                                  "--cache-dir", str(tmp_path / "cache")])


def test_momentum_zero_is_accepted_and_reaches_every_trial_of_every_arm(tmp_path):
    from dataclasses import fields

    from xfer.sweep.options import apply_overrides
    from xfer.sweep.study import Preset, resolve_trial
    from xfer.train import TrialConfig

    preset = Preset(space={"epochs": [1, 2]}, fixed={"model": "small_cnn", "momentum": 0.9},
                    arms={"plain": {"init": "scratch", "lr": 0.01},
                          "heavy": {"init": "scratch", "lr": 0.02, "momentum": 0.5}})
    assert _options(tmp_path).momentum is None
    assert apply_overrides(preset, _options(tmp_path)) is preset  # not given: the preset's own
    options = _options(tmp_path, "--momentum", "0")
    assert options.momentum == 0.0
    trials = [resolve_trial(t) for t in apply_overrides(preset, options).trials()]
    assert len(trials) == 4 and [t["momentum"] for t in trials] == [0.0] * 4
    assert {t["lr"] for t in trials} == {0.01, 0.02}  # the arms keep everything else
    assert sorted(t["momentum"] for t in map(resolve_trial, preset.trials())) == [0.5, 0.5, 0.9, 0.9]
    known = {f.name for f in fields(TrialConfig)}
    for trial in trials:  # what the driver checks before launching: a valid TrialConfig
        config = TrialConfig(data="<sweep dataset>", **{k: v for k, v in trial.items() if k in known})
        config.validate()
        assert config.momentum == 0.0
    assert apply_overrides(preset, _options(tmp_path, "--momentum", "0.99")).fixed["momentum"] == 0.99


def test_pdf_options_reach_the_pdf_data_and_its_generator(tmp_path, monkeypatch):
    import xfer.data.pdf.generate as generate
    from xfer.sweep.sources import PdfData, source_from_option

    options = _options(tmp_path, "--gamma-beta", "scale", "--no-tick-labels")
    assert (options.gamma_beta, options.tick_labels) == ("scale", False)
    preset_data = PdfData(preset="seed", image_size=64, test_size=16)
    source = source_from_option(options.data, preset_data, test_size=options.test_size,
                                split=options.split, gamma_beta=options.gamma_beta,
                                tick_labels=options.tick_labels)
    assert source == PdfData(preset="seed", image_size=64, test_size=16, gamma_beta="scale",
                             tick_labels=False)
    assert "gamma beta as a scale, no tick labels" in source.describe()
    # not given: the preset's own values stay
    plain = _options(tmp_path)
    assert (plain.gamma_beta, plain.tick_labels) == (None, None)
    kept = source_from_option(None, PdfData(gamma_beta="scale"), gamma_beta=plain.gamma_beta,
                              tick_labels=plain.tick_labels)
    assert (kept.gamma_beta, kept.tick_labels) == ("scale", True)
    # prepare hands them to the generator's spec (its cache key and dataset.json record them)
    specs = []
    monkeypatch.setattr(generate, "ensure_dataset", lambda root, spec, progress=None: specs.append(spec))
    source.prepare(tmp_path, 80)
    assert (specs[0].gamma_beta, specs[0].tick_labels, specs[0].n) == ("scale", False, 80)
    assert "-gammascale-noticks" in specs[0].key


def test_pdf_options_are_refused_for_other_data_and_bad_values(tmp_path):
    from xfer.errors import UsageError
    from xfer.sweep.sources import CifarData, PdfData, source_from_option

    for flags in ({"gamma_beta": "scale"}, {"tick_labels": False}):
        with pytest.raises(UsageError, match="apply to generated PDF-plot data only, not to CIFAR10"):
            source_from_option(None, CifarData("cifar10"), **flags)
    with pytest.raises(UsageError, match=r"unknown gamma-beta 'shape' \(valid: rate, scale\)"):
        PdfData(gamma_beta="shape")
    with pytest.raises(UsageError, match="tick_labels must be true or false"):
        PdfData(tick_labels="no")
    with pytest.raises(UsageError, match=r"unknown val_source 'val' \(valid: train, test\)"):
        CifarData("cifar10", val_source="val")
    with pytest.raises(UsageError, match="applies to val_source 'train' only"):
        CifarData("cifar10", val_size=40, val_source="test")


def test_cifar_val_source_test_sizes_and_description():
    from xfer.sweep.sources import CifarData

    study = CifarData("cifar10", val_source="test")
    assert (study.train_pool(), study.eval_pool(), study.default_size()) == (50_000, 20_000, 50_000)
    study.check_size(50_000)
    assert "all 50000 training images" in study.describe()
    assert "official test set is both validation and test" in study.describe()
    held = CifarData("cifar10")
    assert (held.train_pool(), held.eval_pool()) == (45_000, 15_000)
    assert "5000 training images held out" in held.describe()
    assert CifarData("cifar100", val_source="test").train_pool() == 50_000


@pytest.mark.slow
def test_the_overrides_are_accepted_end_to_end_in_a_dry_run(tmp_path, shared_cache):
    """--momentum 0 and the PDF options pass validation (every trial's TrialConfig included)
    and the plan's data line says what will be generated; nothing is launched."""
    done = run_sweep("pdf_grid.py", ["--preset", "smoke", "--dry-run", "--momentum", "0",
                                     "--gamma-beta", "scale", "--no-tick-labels"],
                     tmp_path, shared_cache, timeout=120)
    assert done.returncode == 0, (done.stdout, done.stderr)
    assert "plan:" in done.stdout and "gamma beta as a scale, no tick labels" in done.stdout
