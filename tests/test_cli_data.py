"""`xfer data pdf` and `xfer data audit` as a user runs them, including every bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import run_xfer as xfer


@pytest.mark.slow
def test_pdf_then_audit_end_to_end(tmp_path):
    out = tmp_path / "d"
    # a small held-out test set: the default 1,000 would cost ~6 s of rendering here
    done = xfer("data", "pdf", "--n", "24", "--preset", "seed", "--image-size", "32", "--test-size", "16",
                "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert {p.name for p in out.iterdir()} == {"images", "packed", "metadata.json", "dataset.json", "audit.json"}
    (out / "audit.json").unlink()
    audit = xfer("data", "audit", str(out))
    assert audit.returncode == 0, audit.stderr
    assert "Bayes accuracy ceiling: 0.7500" in audit.stdout
    assert "exponential ~ weibull" in audit.stdout and "chi2 ~ gamma" in audit.stdout
    assert "same distribution" in audit.stdout
    assert json.loads((out / "audit.json").read_text())["bayes_accuracy_ceiling"] == 0.75
    again = xfer("data", "pdf", "--n", "24", "--preset", "seed", "--image-size", "32", "--test-size", "16",
                 "--out", str(out))
    assert again.returncode == 0 and "exists, unchanged" in again.stdout


def _file(tmp_path: Path) -> Path:
    path = tmp_path / "a_file"
    path.write_text("x")
    return path


BAD_INPUTS = {
    "n below the family count": (["data", "pdf", "--n", "7", "--out", "{out}"], "at least 8"),
    "n not a number": (["data", "pdf", "--n", "ten", "--out", "{out}"], "--n"),
    "n negative": (["data", "pdf", "--n", "-5", "--out", "{out}"], "--n"),
    "image size below 32": (["data", "pdf", "--n", "8", "--image-size", "16", "--out", "{out}"], "at least 32"),
    "unknown preset": (["data", "pdf", "--n", "8", "--preset", "wild", "--out", "{out}"], "'seed', 'varied'"),
    "unwritable output": (["data", "pdf", "--n", "8", "--out", "{file}/sub"], "not writable"),
    "output is a non-empty folder": (["data", "pdf", "--n", "8", "--out", "{tmp}"], "not an empty folder"),
    "audit of a folder that is not a dataset": (["data", "audit", "{tmp}"], "not a complete PDF-plot dataset"),
    "audit of a missing folder": (["data", "audit", "{tmp}/missing"], "not a folder"),
    "no command": (["data"], "required"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
@pytest.mark.slow
def test_bad_input_is_one_line_exit_2_and_writes_nothing(case, tmp_path):
    args, expected = BAD_INPUTS[case]
    holder = tmp_path / "work"
    holder.mkdir()
    (holder / "keep.txt").write_text("user data")
    file = _file(tmp_path)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    argv = [a.format(out=tmp_path / "new", file=file, tmp=holder) for a in args]
    done = xfer(*argv)
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert expected in lines[0]
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
    assert (holder / "keep.txt").read_text() == "user data"


@pytest.mark.slow
def test_every_command_has_help():
    for args in (["--help"], ["data", "--help"], ["data", "pdf", "--help"], ["data", "audit", "--help"]):
        done = xfer(*args)
        assert done.returncode == 0 and "usage:" in done.stdout
