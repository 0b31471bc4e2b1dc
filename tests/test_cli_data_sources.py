"""`xfer data cifar10|cifar100|folder` as a user runs them, including every bad input.
No network: every case either finds the files or runs with --no-download."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import run_xfer as xfer
from helpers_data import write_cifar, write_image_folder


@pytest.mark.slow
def test_cifar10_from_the_archive_then_reused(tmp_path):
    write_cifar(tmp_path / "raw", "cifar10", n_train_per_batch=10, n_test=10, archive=True)
    args = ["data", "cifar10", "--root", str(tmp_path / "raw"), "--out", str(tmp_path / "c10"),
            "--val-size", "10", "--seed", "1", "--no-download"]
    done = xfer(*args)
    assert done.returncode == 0, done.stderr
    assert "wrote" in done.stdout and "train/val/test 40/10/10" in done.stdout
    meta = json.loads((tmp_path / "c10" / "dataset.json").read_text())
    assert meta["split_ranges"] == {"train": [0, 40], "val": [40, 50], "test": [50, 60]}
    again = xfer(*args)
    assert again.returncode == 0 and "exists, unchanged" in again.stdout, again.stderr


@pytest.mark.slow
def test_cifar100_and_folder_end_to_end(tmp_path):
    write_cifar(tmp_path / "raw", "cifar100", n_train_per_batch=30, n_test=10, num_classes=5)
    done = xfer("data", "cifar100", "--root", str(tmp_path / "raw"), "--out", str(tmp_path / "c100"),
                "--val-size", "5", "--no-download")
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "c100" / "dataset.json").read_text())["kind"] == "cifar100"

    written = write_image_folder(tmp_path / "pets", classes=("cat", "dog"), per_class=6, size=40)
    done = xfer("data", "folder", str(tmp_path / "pets"), "--out", str(tmp_path / "packed"),
                "--image-size", "32")
    assert done.returncode == 0, done.stderr
    skipped_lines = [line for line in done.stdout.splitlines() if line.startswith("skipped")]
    assert len(skipped_lines) == 1
    assert all(name in skipped_lines[0] for name in written["corrupt"] + written["non_images"])
    meta = json.loads((tmp_path / "packed" / "dataset.json").read_text())
    assert meta["n"] == 12 and meta["skipped_count"] == 3 and meta["image_size"] == 32


def _cifar_root(tmp_path: Path) -> Path:
    write_cifar(tmp_path / "raw", "cifar10", n_train_per_batch=10, n_test=10)
    return tmp_path / "raw"


def _one_class(tmp_path: Path) -> Path:
    write_image_folder(tmp_path / "one", classes=("only",), per_class=4, size=32, corrupt=False)
    return tmp_path / "one"


def _corrupt_batch(tmp_path: Path) -> Path:
    root = _cifar_root(tmp_path)
    (root / "cifar-10-batches-py" / "data_batch_2").write_bytes(b"garbage")
    return root


# name: (setup -> {placeholder: path}, argv, expected text in the one stderr line)
BAD_INPUTS = {
    "cifar files missing, no download": (
        lambda t: {"root": t / "empty_root"},
        ["data", "cifar10", "--root", "{root}", "--out", "{out}", "--no-download"],
        "cifar-10-python.tar.gz"),
    "cifar100 files missing, no download": (
        lambda t: {"root": t / "empty_root"},
        ["data", "cifar100", "--root", "{root}", "--out", "{out}", "--no-download"],
        "https://www.cs.toronto.edu/~kriz/cifar.html"),
    "corrupt cifar batch": (
        lambda t: {"root": _corrupt_batch(t)},
        ["data", "cifar10", "--root", "{root}", "--out", "{out}", "--no-download"], "data_batch_2"),
    "val size too large": (
        lambda t: {"root": _cifar_root(t)},
        ["data", "cifar10", "--root", "{root}", "--out", "{out}", "--val-size", "41", "--no-download"],
        "--val-size must be between 1 and 40"),
    "val size zero": (
        lambda t: {"root": _cifar_root(t)},
        ["data", "cifar10", "--root", "{root}", "--out", "{out}", "--val-size", "0"], "--val-size"),
    "negative seed": (
        lambda t: {"root": _cifar_root(t)},
        ["data", "cifar10", "--root", "{root}", "--out", "{out}", "--seed", "-1"], "--seed"),
    "cifar output is a non-empty folder": (
        lambda t: {"root": _cifar_root(t)},
        ["data", "cifar10", "--root", "{root}", "--out", "{holder}", "--no-download"], "not an empty folder"),
    "cifar output unwritable": (
        lambda t: {"root": _cifar_root(t)},
        ["data", "cifar10", "--root", "{root}", "--out", "{file}/sub", "--no-download"], "not a writable folder"),
    "cifar without --root": (lambda t: {}, ["data", "cifar10", "--out", "{out}"], "--root"),
    "folder missing": (lambda t: {}, ["data", "folder", "{tmp}/nowhere", "--out", "{out}"], "not found"),
    "folder is a file": (lambda t: {}, ["data", "folder", "{file}", "--out", "{out}"], "not a folder"),
    "empty folder": (lambda t: {}, ["data", "folder", "{holder}", "--out", "{out}"], "empty folder"),
    "one-class folder": (lambda t: {"src": _one_class(t)},
                         ["data", "folder", "{src}", "--out", "{out}"], "one-class folder"),
    "image size below 32": (lambda t: {"src": _one_class(t)},
                            ["data", "folder", "{src}", "--out", "{out}", "--image-size", "16"],
                            "at least 32"),
    "image size not a number": (lambda t: {}, ["data", "folder", "{holder}", "--out", "{out}",
                                               "--image-size", "big"], "--image-size"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
@pytest.mark.slow
def test_bad_input_is_one_line_exit_2_and_writes_nothing(case, tmp_path):
    setup, args, expected = BAD_INPUTS[case]
    paths = setup(tmp_path)
    holder = tmp_path / "work"
    holder.mkdir()
    (holder / "keep.txt").write_text("user data")
    file = tmp_path / "a_file"
    file.write_text("x")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    argv = [a.format(out=tmp_path / "new", file=file, holder=holder, tmp=tmp_path,
                     **{k: str(v) for k, v in paths.items()}) for a in args]
    done = xfer(*argv)
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert expected in lines[0], lines[0]
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
    assert (holder / "keep.txt").read_text() == "user data"


@pytest.mark.slow
def test_every_new_command_has_help():
    for args in (["data", "cifar10", "--help"], ["data", "cifar100", "--help"], ["data", "folder", "--help"]):
        done = xfer(*args)
        assert done.returncode == 0 and "usage:" in done.stdout
        assert "--out" in done.stdout and "--seed" in done.stdout
