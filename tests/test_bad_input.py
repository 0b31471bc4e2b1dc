"""Bad input to every command and every sweep option, against the SPEC's contract for it:

    exit code 2, exactly one line on stderr naming the problem (and the valid choices where
    there are choices), no traceback, and nothing started or created.

"Nothing created" is checked on the whole test folder (the working directory, every output
path, the --cache-dir, which starts empty, and the MLflow store) and on the shared fixture
folder: their trees (path, size, mtime) must be identical before and after. MLflow points at a
sqlite file in the working directory (``MLFLOW_TRACKING_URI``), so an experiment or run
created by mistake would leave ``mlflow.db`` (or ``mlruns/``) behind and fail the check.

"No Ray started" is checked through Ray's own session directory. Each case runs with
``RAY_TMPDIR`` set to a fresh folder of its own: any ``ray.init`` (and so any raylet or
gcs_server) first creates ``$RAY_TMPDIR/ray/session_*`` there, and Ray leaves that folder behind
after shutdown, so a Ray started and stopped inside the case is still seen. A process scan
("raylet" in ps before and after) is not reliable on a shared machine, where other test runs
start and stop their own Ray at any time; to still catch a Ray that outlives its driver, the
check also scans /proc for a process carrying this case's RAY_TMPDIR in its environment (Ray's
processes inherit the driver's). ``test_the_ray_detector_sees_a_ray_start`` proves the
detector fires when Ray does start.

Unreadable paths: the tests run as root, for whom chmod 000 blocks nothing, so "unreadable"
is a path under a regular file (no process can create or read it), a FIFO where a file is
expected (reading it would block forever), or a FIFO where a folder is expected.

No network: AWS settings are stripped (no credentials, no config files, no instance-metadata
lookup) and HTTP(S) proxies point at a closed loopback port; the one S3 endpoint a case uses
is a closed loopback port too.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conftest import REPO, sweep_env

pytestmark = pytest.mark.timeout(120)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass(frozen=True)
class Case:
    command: str  # "xfer", or a script under sweeps/
    args: list[str]  # {tmp} working dir, {out} a new path in it, {file}, {fifo}, {empty}, fixtures
    expect: tuple[str, ...]  # each must be in the one stderr line
    env: dict = field(default_factory=dict)  # on top of the isolated env; {closed}: a closed port


TRAIN = ["train", "--data", "{blobs}", "--model", "resnet10", "--epochs", "1", "--batch-size", "16",
         "--device", "cpu", "--json-out", "{out}/result.json"]
PRETRAINED = [*TRAIN, "--init", "pretrained", "--weights"]  # + the weights source
SCRATCH = [*TRAIN, "--init", "scratch"]

CASES: dict[str, Case] = {
    # --- xfer data pdf | audit | cifar10 | cifar100 | folder ---------------------------------
    "data pdf: --n not a number": Case("xfer", ["data", "pdf", "--n", "ten", "--out", "{out}"],
                                       ("argument --n: must be an integer, got 'ten'",)),
    "data pdf: --n negative": Case("xfer", ["data", "pdf", "--n", "-5", "--out", "{out}"],
                                   ("argument --n: must be a positive integer, got -5",)),
    "data pdf: unknown preset": Case("xfer", ["data", "pdf", "--n", "8", "--preset", "wild", "--out", "{out}"],
                                     ("invalid choice: 'wild'", "'seed', 'varied'")),
    "data pdf: unknown gamma reading": Case(
        "xfer", ["data", "pdf", "--n", "8", "--gamma-beta", "shape", "--out", "{out}"],
        ("unknown gamma-beta 'shape'", "valid: rate, scale")),
    "data audit: a FIFO where the dataset folder should be": Case(
        "xfer", ["data", "audit", "{fifo}"], ("{fifo} is not a folder",)),
    "data cifar10: archive absent and --no-download": Case(
        "xfer", ["data", "cifar10", "--root", "{empty}", "--out", "{out}", "--no-download"],
        ("cifar-10-python.tar.gz",)),
    "data cifar100: --val-size negative": Case(
        "xfer", ["data", "cifar100", "--root", "{empty}", "--out", "{out}", "--val-size", "-1"],
        ("argument --val-size: must be a positive integer, got -1",)),
    "data folder: missing folder": Case("xfer", ["data", "folder", "{tmp}/nowhere", "--out", "{out}"],
                                        ("image folder {tmp}/nowhere not found",)),
    "data folder: empty folder": Case("xfer", ["data", "folder", "{empty}", "--out", "{out}"],
                                      ("empty folder",)),
    "data folder: every image of a class is corrupt": Case(
        "xfer", ["data", "folder", "{corrupt_class}", "--out", "{out}", "--image-size", "32"],
        ("class 'dog'", "0 readable image(s)", "at least 3")),
    "data folder: --image-size not a number": Case(
        "xfer", ["data", "folder", "{one_class}", "--out", "{out}", "--image-size", "big"],
        ("argument --image-size: must be an integer, got 'big'",)),
    # --- xfer train ----------------------------------------------------------------------------
    "train: unknown model": Case("xfer", [*SCRATCH, "--model", "resnet9000"],
                                 ("unknown model 'resnet9000' (valid: alexnet, ", "resnet18")),
    "train: --batch-size not a number": Case("xfer", [*SCRATCH, "--batch-size", "x"],
                                             ("argument --batch-size: must be an integer, got 'x'",)),
    "train: --momentum negative": Case("xfer", [*SCRATCH, "--momentum", "-0.1"],
                                       ("momentum must be in [0, 1), got -0.1",)),
    "train: --epochs negative": Case("xfer", [*SCRATCH, "--epochs", "-2"],
                                     ("argument --epochs: must be a positive integer, got -2",)),
    "train: resnet10 weights for resnet18": Case(
        "xfer", [*PRETRAINED, "{resnet10_pt}", "--model", "resnet18"], ("weights do not fit resnet18",)),
    "train: truncated weights file": Case(
        "xfer", [*PRETRAINED, "{truncated_pt}"], ("truncated.pt is truncated or not a PyTorch weights file",)),
    "train: weights file pinned to another sha256": Case(
        "xfer", [*PRETRAINED, "{resnet10_pt}#sha256=" + "0" * 64], ("has sha256 ", "expected " + "0" * 64)),
    "train: EfficientNet-Lite0's ImageNet weights pinned to another sha256": Case(
        "xfer", [*PRETRAINED, "imagenet#sha256=" + "0" * 64, "--model", "efficientnet_lite0"],
        ("has sha256 579344248a93", "expected " + "0" * 64)),
    "train: weights path under a file": Case(
        "xfer", [*PRETRAINED, "{file}/w.pt"], ("weights file not found: {file}/w.pt",)),
    "train: a FIFO where the weights file should be": Case(
        "xfer", [*PRETRAINED, "{fifo}"], ("{fifo} is not a regular file",)),
    "train: s3:// without bucket or key": Case(
        "xfer", [*PRETRAINED, "s3://"], ("malformed S3 URI 's3://'", "s3://BUCKET/KEY")),
    "train: s3:/// without a bucket": Case(
        "xfer", [*PRETRAINED, "s3:///w.pt"], ("malformed S3 URI 's3:///w.pt'",)),
    "train: s3://bucket without a key": Case(
        "xfer", [*PRETRAINED, "s3://bucket"], ("malformed S3 URI 's3://bucket'",)),
    "train: s3 weights without AWS credentials": Case(
        "xfer", [*PRETRAINED, "s3://bucket/w.pt"], ("s3://bucket/w.pt needs AWS credentials",)),
    # an S3 endpoint on a closed port is a service that does not answer: exit 1, not here
    # (tests/test_endpoints.py::test_an_s3_weights_endpoint_that_does_not_answer_is_exit_1)
    "train: --epoch-milestones not numbers": Case("xfer", [*SCRATCH, "--epoch-milestones", "ten"],
                                                  ("argument --epoch-milestones: must be whole epochs",)),
    "train: an epoch milestone at or past --epochs": Case(
        "xfer", [*SCRATCH, "--epochs", "3", "--epoch-milestones", "2,5"],
        ("epoch_milestones must increase, each in 1..2 (below epochs 3), got [2, 5]",)),
    "train: epoch milestones with a cosine schedule": Case(
        "xfer", [*SCRATCH, "--epochs", "3", "--epoch-milestones", "1", "--schedule", "cosine"],
        ("schedule 'cosine'", "depends on the 3-epoch budget")),
    # --- xfer pretrain, xfer frontier -----------------------------------------------------------
    "pretrain: --out under a file": Case(
        "xfer", ["pretrain", "--out", "{file}/w.pt", "--model", "small_cnn", "--epochs", "1",
                 "--batch-size", "16"], ("--out {file}/w.pt: {file} is not a writable folder",)),
    "pretrain: unknown source preset": Case(
        "xfer", ["pretrain", "--out", "{out}/w.pt", "--model", "small_cnn", "--epochs", "1",
                 "--batch-size", "16", "--source-preset", "wild"], ("invalid choice: 'wild'", "'seed', 'varied'")),
    "frontier: --target-accuracy 1.5": Case(
        "xfer", ["frontier", "--experiment", "pdf_grid", "--target-accuracy", "1.5", "--out", "{out}"],
        ("--target-accuracy: must be in (0, 1], got 1.5",)),
    "frontier: --target-accuracy 0": Case(
        "xfer", ["frontier", "--experiment", "pdf_grid", "--target-accuracy", "0", "--out", "{out}"],
        ("--target-accuracy: must be in (0, 1], got 0",)),
    "frontier: no MLflow store (and none is created)": Case(
        "xfer", ["frontier", "--experiment", "pdf_grid", "--out", "{out}"], ("no MLflow store at",)),
    "forecast: --delta of two": Case(
        "xfer", ["forecast", "--experiment", "pdf_grid", "--delta", "2"],
        ("--delta: must be a fraction in [0, 1) (0.01 is one point), got 2",)),
    "forecast: --at not sizes": Case(
        "xfer", ["forecast", "--experiment", "pdf_grid", "--at", "400,big"], ("--at: must be positive whole numbers",)),
    "forecast: no MLflow store (and none is created)": Case(
        "xfer", ["forecast", "--experiment", "pdf_grid"], ("no MLflow store at",)),
    "transferability: unknown model": Case(
        "xfer", ["transferability", "--data", "{blobs}", "--model", "resnet9000"],
        ("unknown model 'resnet9000'", "resnet18")),
    "transferability: missing dataset": Case(
        "xfer", ["transferability", "--data", "{tmp}/nowhere", "--model", "resnet10"], ("data dir not found",)),
    # --- the sweep scripts: every shared option --------------------------------------------------
    "pdf_grid: unknown preset": Case("pdf_grid.py", ["--preset", "huge"],
                                     ("invalid choice: 'huge'", "'smoke', 'quick', 'study'")),
    "pdf_grid: negative --progress-interval": Case(
        "pdf_grid.py", ["--smoke-test", "--progress-interval", "-5"], ("--progress-interval",)),
    "pdf_grid: --score-transferability beside an unknown search": Case(
        "pdf_grid.py", ["--smoke-test", "--score-transferability", "--search", "random"],
        ("invalid choice: 'random'",)),
    "cifar100_archs: unknown --system-metrics": Case(
        "cifar100_archs.py", ["--smoke-test", "--system-metrics", "always"],
        ("invalid choice: 'always'", "'auto', 'on', 'off'")),
    "pdf_grid: unknown search": Case("pdf_grid.py", ["--smoke-test", "--search", "random"],
                                     ("invalid choice: 'random'", "'grid', 'tpe', 'nsga2'")),
    "pdf_grid: unknown scheduler": Case("pdf_grid.py", ["--smoke-test", "--scheduler", "pbt"],
                                        ("invalid choice: 'pbt'", "'asha', 'fifo'")),
    "pdf_grid: --num-samples negative": Case("pdf_grid.py", ["--smoke-test", "--num-samples", "-3"],
                                             ("--num-samples: must be a positive integer, got -3",)),
    "pdf_grid: --max-concurrent not a number": Case(
        "pdf_grid.py", ["--smoke-test", "--max-concurrent", "many"],
        ("--max-concurrent: must be an integer, got 'many'",)),
    "pdf_grid: --max-failures negative": Case("pdf_grid.py", ["--smoke-test", "--max-failures", "-1"],
                                              ("--max-failures must be >= 0",)),
    "pdf_grid: more GPUs per trial than the machine has": Case(
        "pdf_grid.py", ["--smoke-test", "--gpus-per-trial", "{too_many_gpus}"],
        ("--gpus-per-trial {too_many_gpus} but this machine has",)),
    "pdf_grid: more CPUs per trial than the machine has, even with --dry-run": Case(
        "pdf_grid.py", ["--smoke-test", "--dry-run", "--cpus-per-trial", "{too_many_cpus}"],
        ("--cpus-per-trial {too_many_cpus} but this machine has",)),
    "pdf_grid: --storage s3:/// without a bucket": Case(
        "pdf_grid.py", ["--smoke-test", "--storage", "s3:///runs"], ("needs a bucket",)),
    "pdf_grid: --cache-dir under a file": Case(
        "pdf_grid.py", ["--smoke-test", "--cache-dir", "{file}/cache"],
        ("--cache-dir {file}/cache: {file} is not a writable folder",)),
    "pdf_grid: --resume with nothing to resume": Case(
        "pdf_grid.py", ["--smoke-test", "--resume", "--experiment", "never_run", "--no-report"],
        ("--resume: no interrupted sweep of experiment 'never_run'",)),
    "pdf_grid: --data missing folder": Case(
        "pdf_grid.py", ["--smoke-test", "--data", "{tmp}/no_such_data"],
        ("--data {tmp}/no_such_data: no such folder", "valid: pdf, cifar10, cifar100")),
    "pdf_grid: --test-size beyond the generator": Case(
        "pdf_grid.py", ["--smoke-test", "--test-size", "800001"], ("--test-size must be at most 800000",)),
    "pdf_grid: ImageNet ResNet-50 weights neither cached nor downloadable (--no-download)": Case(
        "pdf_grid.py", ["--preset", "seed", "--dry-run", "--no-download"],
        ("ImageNet weights for resnet50 are not in the torch hub cache", "efficientnet_lite0")),
    "pdf_grid: --amortize-pretraining 0": Case(
        "pdf_grid.py", ["--smoke-test", "--amortize-pretraining", "0"],
        ("argument --amortize-pretraining: must be a positive integer, got 0",)),
    "pdf_grid: --momentum 1 (SGD's momentum must be below 1)": Case(
        "pdf_grid.py", ["--smoke-test", "--momentum", "1"], ("--momentum must be in [0, 1), got 1",)),
    "pdf_grid: unknown gamma reading": Case(
        "pdf_grid.py", ["--smoke-test", "--gamma-beta", "shape"], ("invalid choice: 'shape'",)),
    "cifar10_transfer: --no-tick-labels on CIFAR": Case(
        "cifar10_transfer.py", ["--smoke-test", "--no-tick-labels"], ("--no-tick-labels", "PDF")),
    "pdf_grid: unknown --split": Case("pdf_grid.py", ["--smoke-test", "--split", "70:30"],
                                      ("invalid choice: '70:30'", "'heldout', '80:10:10'")),
    "cifar10_transfer: archive absent and --no-download": Case(
        "cifar10_transfer.py", ["--smoke-test", "--no-download", "--data-root", "{empty}"],
        ("cifar-10-python.tar.gz",)),
    "cifar100_archs: unknown preset": Case("cifar100_archs.py", ["--preset", "big"],
                                           ("invalid choice: 'big'", "'smoke', 'quick', 'study'")),
    "folder_finetune: one-class --data": Case(
        "folder_finetune.py", ["--smoke-test", "--data", "{one_class}"], ("one-class folder",)),
    "probe_regimes: unknown dataset": Case(
        "probe_regimes.py", ["--smoke-test", "--data", "imagenet"],
        ("--data imagenet: no such folder", "valid: pdf, cifar10, cifar100")),
    "probe_regimes: --epoch-milestones on a preset without an epochs axis": Case(
        "probe_regimes.py", ["--smoke-test", "--epoch-milestones"], ("preset smoke does not sweep epochs",)),
    "probe_regimes: fractional GPUs above one": Case(
        "probe_regimes.py", ["--smoke-test", "--gpus-per-trial", "1.5"], ("whole number",)),
    # --- names, bounds, contradictions (issue 17; the rules: tests/test_names_and_bounds.py) -----
    "pdf_grid: --experiment escaping --storage": Case(
        "pdf_grid.py", ["--smoke-test", "--experiment", "../../escape"],
        ("--experiment '../../escape' cannot name a folder", "path separator '/'")),
    "pdf_grid: a newline in --experiment": Case(
        "pdf_grid.py", ["--smoke-test", "--experiment", "two\nlines"],
        ("cannot name a folder", "control character '\\n'")),
    "pdf_grid: --smoke-test with another --preset": Case(
        "pdf_grid.py", ["--smoke-test", "--preset", "quick"], ("--smoke-test", "contradicts --preset quick")),
    "pdf_grid: --num-samples 10^9": Case(
        "pdf_grid.py", ["--smoke-test", "--num-samples", "1000000000"],
        ("--num-samples 1000000000 needs at least", "this machine has")),
    "pdf_grid: --max-concurrent 10^6": Case(
        "pdf_grid.py", ["--smoke-test", "--max-concurrent", "1000000"],
        ("--max-concurrent 1000000 needs at least", "trial processes", "this machine has")),
    "pdf_grid: a newline in --storage": Case(
        "pdf_grid.py", ["--smoke-test", "--storage", "{tmp}/runs\nx"], ("--storage", "control character")),
    "data pdf: --image-size 10^6": Case(
        "xfer", ["data", "pdf", "--n", "8", "--image-size", "1000000", "--out", "{out}"],
        ("--image-size 1000000 needs at least", "of memory", "this machine has")),
    "data pdf: --n beyond the disk": Case(
        "xfer", ["data", "pdf", "--n", "800000", "--image-size", "8192", "--out", "{out}"],
        ("--n 800000 at --image-size 8192 needs at least", "of disk", "free")),
    "data folder: --out inside SRC": Case(
        "xfer", ["data", "folder", "{one_class}", "--out", "{one_class}/packed"], ("is inside SRC",)),
    "data folder: --image-size 10^6": Case(
        "xfer", ["data", "folder", "{corrupt_class}", "--out", "{out}", "--image-size", "1000000"],
        ("--image-size 1000000 needs at least", "8 packed images")),
    "train: --image-size 10^6": Case(
        "xfer", [*SCRATCH, "--image-size", "1000000"],
        ("--image-size 1000000 needs at least", "one batch of 256 image(s) (--eval-batch-size)")),
    # --- found by the fuzz test (tests/test_fuzz_cli.py) -------------------------------------
    "data audit: a newline in the folder's name (the message stays one line)": Case(
        "xfer", ["data", "audit", "{tmp}/a\nb"], ("{tmp}/a\\nb is not a folder",)),
    "train: a 300-character --data name (ENAMETOOLONG, not a traceback)": Case(
        "xfer", [*SCRATCH[:2], "x" * 300, *SCRATCH[3:]], ("File name too long",)),
    "pdf_grid: a 300-character --data name with --dry-run": Case(
        "pdf_grid.py", ["--smoke-test", "--dry-run", "--data", "x" * 300], ("File name too long",)),
    # --- endpoints first (tests/test_endpoints.py has the exit-1 side: closed ports, read-only) --
    "pdf_grid: MLFLOW_TRACKING_URI with an unknown scheme": Case(
        "pdf_grid.py", ["--smoke-test"], ("unknown tracking URI scheme 'bogus'", "valid: "),
        env={"MLFLOW_TRACKING_URI": "bogus://x"}),
    "frontier: MLFLOW_TRACKING_URI without a host": Case(
        "xfer", ["frontier", "--experiment", "pdf_grid", "--out", "{out}"],
        ("malformed tracking URI 'http://'", "no host"), env={"MLFLOW_TRACKING_URI": "http://"}),
    "train: runs:/ weights and no MLflow store (creates no mlflow.db)": Case(
        "xfer", [*PRETRAINED, "runs:/0123456789abcdef/model.pt"], ("not found: no MLflow store at",)),
}


# --- fixtures -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def fixtures(tmp_path_factory) -> dict[str, str]:
    """Inputs shared by every case, built once: they must come out of every case unchanged."""
    import torch

    from helpers_data import write_blob_dataset, write_image_folder
    from xfer import models

    root = tmp_path_factory.mktemp("bad-input-fixtures")
    blobs = write_blob_dataset(root / "blobs", n=80, num_classes=4)
    # a real resnet10 state_dict: the wrong architecture for resnet18, and cut in half
    torch.save(models.create_model("resnet10", 4).state_dict(), root / "resnet10.pt")
    whole = (root / "resnet10.pt").read_bytes()
    (root / "truncated.pt").write_bytes(whole[: len(whole) // 2])
    write_image_folder(root / "one_class", classes=("cat",), per_class=4, corrupt=False)
    write_image_folder(root / "corrupt_class", classes=("cat", "dog"), per_class=4, corrupt=False)
    for image in (root / "corrupt_class" / "dog").iterdir():  # every dog "image" is garbage
        image.write_bytes(b"\x89PNG not really" * 8)
    return {"blobs": str(blobs), "resnet10_pt": str(root / "resnet10.pt"),
            "truncated_pt": str(root / "truncated.pt"), "one_class": str(root / "one_class"),
            "corrupt_class": str(root / "corrupt_class"), "root": str(root),
            "too_many_gpus": str(torch.cuda.device_count() + 1),
            "too_many_cpus": str(max(64, (os.cpu_count() or 1) + 1))}


def _tree(*roots: Path) -> list[tuple]:
    return sorted((str(p), p.stat().st_size, p.stat().st_mtime_ns)
                  for root in roots for p in [root, *root.rglob("*")])


def _isolated_env(work: Path, ray_tmp: Path, extra: dict) -> dict:
    env = sweep_env(work)  # MLFLOW_TRACKING_URI=sqlite:///<work>/mlflow.db, no RAY_ADDRESS
    for name in list(env):
        if name.startswith("AWS_"):
            del env[name]
    blackhole = f"http://127.0.0.1:{_closed_port()}"
    env.update({"AWS_SHARED_CREDENTIALS_FILE": str(work / "no-aws-credentials"),
                "AWS_CONFIG_FILE": str(work / "no-aws-config"), "AWS_EC2_METADATA_DISABLED": "true",
                "RAY_TMPDIR": str(ray_tmp), "TORCH_HOME": str(work / "torch_home"),
                "MLFLOW_DISABLE_TELEMETRY": "true",
                **{name: blackhole for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY")},
                "no_proxy": "127.0.0.1,localhost", "NO_PROXY": "127.0.0.1,localhost"})
    env.update({k: v.format(closed=_closed_port()) for k, v in extra.items()})
    return env


def _processes_with_env(marker: str) -> list[str]:
    """Live processes whose environment holds ``marker`` (root reads every /proc/PID/environ)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if marker.encode() in (proc / "environ").read_bytes():
                found.append(f"{proc.name} {(proc / 'comm').read_text().strip()}")
        except OSError:  # gone, or a kernel thread
            continue
    return found


def _run(argv: list[str], work: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=110, cwd=work, env=env,
                          stdin=subprocess.DEVNULL)


def _ray_started(ray_tmp: Path) -> list[str]:
    return [str(p.relative_to(ray_tmp)) for p in ray_tmp.rglob("*")] + _processes_with_env(
        f"RAY_TMPDIR={ray_tmp}")


# --- the table ------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.slow
def test_bad_input_is_one_line_exit_2_and_starts_nothing(name, fixtures, tmp_path, warm_python):
    # forked from a warm interpreter (conftest.warm_python); test_a_cold_process_... below runs
    # two of the cases as plain processes
    _check_case(name, fixtures, tmp_path,
                lambda argv, work, env: warm_python.run(argv, cwd=work, env=env, timeout=110))


# one script and one xfer command that fail after importing torch, each in a cold process too
COLD_CASES = ["pdf_grid: --momentum 1 (SGD's momentum must be below 1)", "train: resnet10 weights for resnet18"]


@pytest.mark.parametrize("name", COLD_CASES)
@pytest.mark.slow
def test_a_cold_process_answers_as_the_warm_one(name, fixtures, tmp_path):
    _check_case(name, fixtures, tmp_path, _run)


def _check_case(name: str, fixtures: dict, tmp_path: Path, run) -> None:
    case = CASES[name]
    work = tmp_path / "work"  # the working directory; MLflow's sqlite file would land here
    (work / "cache").mkdir(parents=True)  # the --cache-dir of the sweeps: must stay empty
    (work / "empty").mkdir()
    (work / "a_file").write_text("a regular file\n")
    os.mkfifo(work / "fifo")
    ray_tmp = Path(tempfile.mkdtemp(prefix="xfer-ray-"))  # short: Ray's socket paths are capped
    try:
        values = {**fixtures, "tmp": str(work), "out": str(work / "new_out"),
                  "file": str(work / "a_file"), "fifo": str(work / "fifo"), "empty": str(work / "empty")}
        argv = [arg.format(**values) for arg in case.args]
        if case.command == "xfer":
            argv = [sys.executable, "-m", "xfer.cli", *argv]
        else:
            argv = [sys.executable, str(REPO / "sweeps" / case.command), *argv]
            for flag, value in (("--storage", work / "runs"), ("--cache-dir", work / "cache")):
                if flag not in argv:
                    argv += [flag, str(value)]
        env = _isolated_env(work, ray_tmp, case.env)
        watched = (work, Path(fixtures["root"]))
        before = _tree(*watched)

        done = run(argv, work, env)

        assert done.returncode == 2, (done.stdout[-2000:], done.stderr[-2000:])
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
        for text in case.expect:
            assert text.format(**values) in lines[0], lines[0]
        assert "plan:" not in done.stdout  # failed before planning, let alone launching
        assert _tree(*watched) == before  # nothing written: no output, cache, mlflow.db, mlruns/
        assert not (work / "mlflow.db").exists() and not (work / "mlruns").exists()
        assert _ray_started(ray_tmp) == []
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)


def test_the_table_covers_every_command_and_every_sweep_script():
    commands = {c.args[0] + (" " + c.args[1] if c.args[0] == "data" else "")
                for c in CASES.values() if c.command == "xfer"}
    assert commands == {"data pdf", "data audit", "data cifar10", "data cifar100", "data folder",
                        "train", "pretrain", "frontier", "forecast", "transferability"}
    scripts = {c.command for c in CASES.values() if c.command != "xfer"}
    assert scripts == {p.name for p in (REPO / "sweeps").glob("*.py")}
    from xfer.sweep.options import build_parser

    flags = {a.option_strings[0] for a in build_parser("p", "d", ["smoke"], "smoke", "e")._actions
             if a.option_strings and a.option_strings[0] != "-h"}
    # switches (--smoke-test, --dry-run, --no-download, --no-report) cannot be wrong on their
    # own: each rides along in a case whose other input is wrong
    used = {arg for c in CASES.values() if c.command != "xfer" for arg in c.args if arg.startswith("--")}
    assert flags <= used, sorted(flags - used)
    assert len(CASES) >= 25


@pytest.mark.slow
def test_the_ray_detector_sees_a_ray_start(tmp_path):
    """The check above could pass vacuously if RAY_TMPDIR were ignored: start a real local Ray
    under the same environment and see it detected."""
    work = tmp_path / "work"
    work.mkdir()
    ray_tmp = Path(tempfile.mkdtemp(prefix="xfer-ray-"))
    try:
        code = ("import ray; ray.init(num_cpus=1, include_dashboard=False); ray.shutdown()")
        done = _run([sys.executable, "-c", code], work, _isolated_env(work, ray_tmp, {}))
        assert done.returncode == 0, done.stderr[-2000:]
        assert any(name.startswith("ray/session_") for name in _ray_started(ray_tmp))
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
