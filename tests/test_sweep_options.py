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
}


@pytest.mark.parametrize("case", list(BAD_OPTIONS))
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
}


@pytest.mark.parametrize("case", list(STUDY_BAD_OPTIONS))
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
