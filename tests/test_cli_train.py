"""`xfer train` and `xfer pretrain` as a user runs them, including every bad input."""

from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path

import pytest
import torch

from conftest import warm_runner
from xfer import models
from xfer.cli import main
from xfer.weights import save_weights


@pytest.fixture(scope="module")
def weight_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("weights")
    save_weights(folder / "small_cnn.pt", "small_cnn", models.create_model("small_cnn", 4).state_dict(),
                 mean=(0.5,) * 3, std=(0.25,) * 3, source_task={"preset": "test"})
    torch.save(models.create_model("small_cnn", 4).state_dict(), folder / "bare_small_cnn.pt")
    return folder


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse errors exit from inside parse_args
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


def train_args(data: Path, json_out: Path, **overrides: str) -> list[str]:
    flags = {"--data": str(data), "--model": "resnet10", "--init": "scratch", "--epochs": "1",
             "--batch-size": "16", "--device": "cpu", "--json-out": str(json_out), **overrides}
    argv = ["train"]
    for flag, value in flags.items():
        if value is not None:
            argv += [flag, value] if value else [flag]  # "" = a switch such as --augment
    return argv


@pytest.mark.slow  # over 4 s of CPU
def test_train_prints_epochs_and_summary_and_writes_the_json(blobs, tmp_path, capsys):
    out = tmp_path / "results" / "r.json"
    code, stdout, stderr = run(train_args(blobs, out, **{"--epochs": "2", "--lr": "0.05"}), capsys)
    assert code == 0, stderr
    assert len(re.findall(r"^epoch +\d", stdout, flags=re.M)) == 2
    assert re.search(r"^test_accuracy [01]\.\d{4} .* epochs_run 2 ", stdout, flags=re.M)
    result = json.loads(out.read_text())
    for key in ("test_accuracy", "test_precision_macro", "test_recall_macro", "test_f1_macro",
                "test_auc_roc_ovr", "epochs_run", "wall_time_s", "train_time_s", "macs_per_image",
                "train_macs", "macs_epochs_per_batch", "gpu_seconds", "history", "config",
                "git_sha", "packages", "dataset", "normalization", "confusion_matrix"):
        assert key in result, key
    assert result["epochs_run"] == 2 and result["config"]["lr"] == 0.05
    assert result["test_accuracy"] > 0.5  # 4 classes: chance is 0.25


@pytest.mark.slow  # over 4 s of CPU
def test_train_with_the_study_options_records_them(blobs, tmp_path, capsys):
    out = tmp_path / "r.json"
    code, stdout, stderr = run(train_args(blobs, out, **{
        "--epochs": "3", "--lr": "0.05", "--schedule": "exp_decay", "--lr-constant-epochs": "1",
        "--lr-decay-rate": "0.5", "--head": "mlp256", "--augment": "", "--rotate-degrees": "10"}),
        capsys)
    assert code == 0, stderr
    result = json.loads(out.read_text())
    config = result["config"]
    assert (config["schedule"], config["lr_constant_epochs"], config["lr_decay_rate"]) == ("exp_decay", 1, 0.5)
    assert (config["head"], config["augment"], config["rotate_degrees"]) == ("mlp256", True, 10.0)
    assert [h["lr"] for h in result["history"]] == [0.05, 0.05 * math.exp(-0.5), 0.05 * math.exp(-1.0)]
    assert len(result["roc_curve"]["fpr"]) == len(result["roc_curve"]["tpr"]) == 101
    assert re.search(r"^epoch +3 .* lr 0\.0184 ", stdout, flags=re.M)


def test_momentum_resize_mode_and_classifier_reach_the_run(blobs, tmp_path, capsys):
    """The study 001 recipe's knobs (Keras SGD without momentum, nearest-neighbour upsampling)
    and study 003's fine-tuned layers, recorded with the result."""
    out = tmp_path / "r.json"
    code, stdout, stderr = run(train_args(blobs, out, **{
        "--model": "small_cnn", "--momentum": "0", "--resize-mode": "nearest", "--image-size": "64",
        "--train-layers": "classifier"}), capsys)
    assert code == 0, stderr
    result = json.loads(out.read_text())
    config = result["config"]
    assert (config["momentum"], config["resize_mode"], config["train_layers"]) == (0.0, "nearest", "classifier")
    assert result["input_size"] == 64


def test_flag_defaults_and_choices_match_the_trial_config(capsys):
    """The CLI cannot import torch to read them (``xfer --help`` stays instant), so it repeats
    the defaults and the names; this keeps the copies honest."""
    from xfer.cli import build_parser
    from xfer.batches import RESIZE_MODES
    from xfer.train import EMBEDDING_METHODS, SCHEDULES, TrialConfig

    for command in ("train", "pretrain"):
        args = build_parser().parse_args([command, "--data", "d", "--model", "resnet10", "--init",
                                          "scratch", "--epochs", "1", "--batch-size", "2"]
                                         + (["--out", "w.pt"] if command == "pretrain" else []))
        defaults = TrialConfig(data="d")
        for flag, field in [("lr_constant_epochs", "lr_constant_epochs"),
                            ("lr_decay_rate", "lr_decay_rate"),
                            ("plateau_patience", "plateau_patience"),
                            ("plateau_factor", "plateau_factor"), ("rotate_degrees", "rotate_degrees"),
                            ("schedule", "schedule"), ("head", "head"), ("momentum", "momentum"),
                            ("resize_mode", "resize_mode"), ("train_layers", "train_layers")]:
            assert getattr(args, flag) == getattr(defaults, field), flag
    code, stdout, _ = run(["train", "--help"], capsys)
    assert code == 0
    assert f"--head {'|'.join(models.HEADS)}" in stdout
    assert f"--schedule {'|'.join(SCHEDULES)}" in stdout
    assert f"--train-layers {'|'.join(models.TRAIN_LAYERS)}" in stdout
    assert f"--resize-mode {'|'.join(RESIZE_MODES)}" in stdout
    embeddings = re.search(r"--embeddings \{([^}]*)\}", stdout).group(1).split(",")
    assert tuple(embeddings) == EMBEDDING_METHODS[1:]


BAD_TRAIN = {
    "batch size 0": ({"--batch-size": "0"}, "--batch-size: must be a positive integer"),
    "batch size negative": ({"--batch-size": "-3"}, "--batch-size"),
    "epochs 0": ({"--epochs": "0"}, "--epochs: must be a positive integer"),
    "epochs missing": ({"--epochs": None}, "the following arguments are required: --epochs"),
    "lr 0": ({"--lr": "0"}, "--lr: must be > 0"),
    "lr negative": ({"--lr": "-0.1"}, "--lr"),
    "unknown model": ({"--model": "resnet9000"}, "unknown model 'resnet9000' (valid: alexnet, "),
    "unknown init": ({"--init": "warm"}, "unknown init 'warm' (valid: scratch, pretrained)"),
    "unknown train layers": ({"--train-layers": "most"},
                             "unknown train_layers 'most' (valid: all, head, last_block, classifier)"),
    "momentum 1": ({"--momentum": "1.0"}, "momentum must be in [0, 1), got 1.0"),
    "momentum negative": ({"--momentum": "-0.1"}, "momentum must be in [0, 1), got -0.1"),
    "momentum with adam": ({"--optimizer": "adam", "--momentum": "1.5"}, "momentum must be in [0, 1), got 1.5"),
    "momentum not a number": ({"--momentum": "heavy"}, "--momentum: invalid float value"),
    "unknown resize mode": ({"--resize-mode": "bicubic"},
                            "unknown resize_mode 'bicubic' (valid: bilinear, nearest)"),
    "unknown embeddings": ({"--embeddings": "umap+tsne"}, "--embeddings: invalid choice: 'umap+tsne'"),
    "unknown optimizer": ({"--optimizer": "lion"}, "unknown optimizer 'lion' (valid: sgd, adam, adamw)"),
    "unknown schedule": ({"--schedule": "step"},
                         "unknown schedule 'step' (valid: constant, cosine, exp_decay, plateau)"),
    "unknown head": ({"--head": "mlp"}, "unknown head 'mlp' (valid: linear, gap_mlp, mlp256, mlp3x384)"),
    "lr constant epochs negative": ({"--lr-constant-epochs": "-1"}, "--lr-constant-epochs: must be an integer >= 0"),
    "lr decay rate negative": ({"--lr-decay-rate": "-0.1"}, "--lr-decay-rate: must be >= 0"),
    "lr decay rate infinite": ({"--lr-decay-rate": "inf"}, "lr_decay_rate must be a finite number >= 0"),
    "plateau patience 0": ({"--plateau-patience": "0"}, "--plateau-patience: must be a positive integer"),
    "plateau factor 1": ({"--schedule": "plateau", "--plateau-factor": "1"}, "plateau_factor must be in (0, 1)"),
    "plateau factor not a number": ({"--plateau-factor": "half"}, "--plateau-factor: invalid float value"),
    "rotate degrees above 180": ({"--rotate-degrees": "200"}, "rotate_degrees must be in [0, 180]"),
    "rotate degrees negative": ({"--rotate-degrees": "-5"}, "rotate_degrees must be in [0, 180]"),
    "unknown device": ({"--device": "tpu"}, "unknown device 'tpu'"),
    "label smoothing 1": ({"--label-smoothing": "1.0"}, "label_smoothing must be in [0, 1)"),
    "early stopping negative": ({"--early-stopping": "-1"}, "--early-stopping"),
    "missing data dir": ({"--data": "{tmp}/nowhere"}, "data dir not found"),
    "data dir is not a dataset": ({"--data": "{tmp}"}, "is not a complete xfer dataset"),
    "n larger than the dataset": ({"--n": "1000"}, "--n must be between 1 and the dataset's size 160"),
    "n too small to split": ({"--n": "8"}, "too small to split"),
    "image size too small": ({"--model": "small_cnn", "--image-size": "8"}, "image_size 8 is too small for small_cnn"),
    "weights with scratch": ({"--weights": "imagenet"}, "use init 'pretrained'"),
    "weights file missing": ({"--init": "pretrained", "--weights": "{tmp}/none.pt"}, "weights file not found"),
    "xfer weights of another model": ({"--init": "pretrained", "--weights": "{weights}/small_cnn.pt"},
                                      "holds weights for model 'small_cnn', not 'resnet10'"),
    "bare weights of another model": ({"--init": "pretrained", "--weights": "{weights}/bare_small_cnn.pt"},
                                      "weights do not fit resnet10"),
    "s3 weights without credentials": ({"--init": "pretrained", "--weights": "s3://bucket/w.pt"},
                                       "needs AWS credentials"),
    "unsupported weights scheme": ({"--init": "pretrained", "--weights": "http://x/w.pt"},
                                   "unsupported weights source"),
    "json-out is a folder": ({"--json-out": "{tmp}"}, "is a folder"),
}
if not torch.cuda.is_available():
    BAD_TRAIN["cuda without a GPU"] = ({"--device": "cuda"}, "CUDA is not available")


def _tree(root: Path) -> list:
    return sorted((str(p.relative_to(root)), p.stat().st_size) for p in root.rglob("*"))


@pytest.fixture
def no_aws(monkeypatch, tmp_path):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                 "AWS_DEFAULT_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no instance-role lookup


@pytest.mark.parametrize("case", list(BAD_TRAIN))
def test_bad_train_input_is_one_line_exit_2_and_writes_nothing(case, blobs, weight_files, tmp_path,
                                                               capsys, no_aws):
    overrides, expected = BAD_TRAIN[case]
    work = tmp_path / "work"
    work.mkdir()
    out = work / "result.json"
    fill = {"tmp": str(work), "weights": str(weight_files)}
    overrides = {k: v.format(**fill) if v else v for k, v in overrides.items()}
    before = _tree(work)
    code, stdout, stderr = run(train_args(blobs, out, **overrides), capsys)
    assert code == 2, (stdout, stderr)
    assert len(stderr.strip().splitlines()) == 1, stderr
    assert "Traceback" not in stderr and expected in stderr, stderr
    assert stderr.startswith("xfer train: error: "), stderr
    assert _tree(work) == before  # nothing written


@pytest.mark.slow
def test_bad_input_from_the_console_has_no_traceback(blobs, tmp_path):
    done = warm_runner().run([sys.executable, "-m", "xfer.cli", *train_args(blobs, tmp_path / "r.json",
                                                                             **{"--optimizer": "lion"})],
                             timeout=120)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "lion" in done.stderr
    assert not (tmp_path / "r.json").exists()


@pytest.mark.slow  # over 4 s of CPU
def test_pretrain_on_a_dataset_then_train_from_its_weights(blobs, tmp_path, capsys):
    weights = tmp_path / "w" / "resnet10-blobs.pt"
    code, stdout, stderr = run(["pretrain", "--out", str(weights), "--model", "resnet10", "--data",
                                str(blobs), "--epochs", "1", "--batch-size", "16", "--lr", "0.05",
                                "--device", "cpu"], capsys)
    assert code == 0, stderr
    sha = re.search(r"sha256 ([0-9a-f]{64})", stdout).group(1)
    assert weights.is_file() and str(weights.resolve()) in stdout

    out = tmp_path / "r.json"
    code, stdout, stderr = run(train_args(blobs, out, **{"--init": "pretrained", "--weights": str(weights),
                                                         "--train-layers": "head"}), capsys)
    assert code == 0, stderr
    result = json.loads(out.read_text())
    assert result["weights"]["sha256"] == sha and result["weights"]["source"] == f"file:{weights.resolve()}"
    source_task = result["weights"]["meta"]["source_task"]
    assert source_task["preset"] == "blobs" and 0 <= source_task["test_accuracy"] <= 1
    assert source_task["model"] == "resnet10" and source_task["n"] == 160
    assert result["normalization"]["from"] == "weights"
    assert result["config"]["init"] == "pretrained" and result["config"]["train_layers"] == "head"


@pytest.mark.slow  # over 3 s of CPU
def test_pretrain_generates_its_source_task_next_to_the_file(tmp_path, capsys):
    weights = tmp_path / "src.pt"
    code, stdout, stderr = run(["pretrain", "--out", str(weights), "--model", "small_cnn", "--n", "48",
                                "--image-size", "32", "--epochs", "1", "--batch-size", "16",
                                "--device", "cpu"], capsys)
    assert code == 0, stderr
    generated = [p for p in tmp_path.iterdir() if p.is_dir() and p.name.startswith("pdf-varied-seed1-n48-32px")]
    assert len(generated) == 1 and (generated[0] / "dataset.json").is_file()
    saved = torch.load(weights, weights_only=True)
    assert saved["model"] == "small_cnn"
    assert saved["source_task"]["preset"] == "varied" and saved["source_task"]["seed"] == 1


BAD_PRETRAIN = {
    "out is a folder": (["--out", "{tmp}"], "is a folder"),
    "out is a URI": (["--out", "s3://bucket/w.pt"], "must be a local file path"),
    "data and source preset": (["--data", "{tmp}", "--source-preset", "varied"], "not allowed with argument"),
    "source too small": (["--n", "4"], "at least 8"),
    "source image too small": (["--image-size", "16"], "at least 32"),
    "unknown preset": (["--source-preset", "wild"], "invalid choice: 'wild'"),
    "unknown model": (["--model", "resnet9000"], "unknown model 'resnet9000'"),
    "batch size 0": (["--batch-size", "0"], "--batch-size"),
}


@pytest.mark.parametrize("case", list(BAD_PRETRAIN))
def test_bad_pretrain_input_is_one_line_exit_2_and_writes_nothing(case, tmp_path, capsys):
    extra, expected = BAD_PRETRAIN[case]
    work = tmp_path / "work"
    work.mkdir()
    extra = [arg.format(tmp=work) for arg in extra]
    argv = ["pretrain", "--out", str(work / "w.pt"), "--model", "small_cnn", "--epochs", "1",
            "--batch-size", "16", "--device", "cpu"] + extra
    code, stdout, stderr = run(argv, capsys)
    assert code == 2, (stdout, stderr)
    assert len(stderr.strip().splitlines()) == 1 and expected in stderr, stderr
    assert "Traceback" not in stderr
    assert _tree(work) == []
