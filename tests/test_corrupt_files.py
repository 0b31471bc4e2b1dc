"""Every file xfer reads is checked as it is opened (issue 17, "corrupt files are named").

A damaged file is one line naming it and what is wrong, exit 2, never a traceback:

    corrupt dataset: PATH: why        dataset.json, packed/images_u8.npy, packed/labels_i64.npy,
                                      audit.json (xfer.data.layout)
    corrupt spool: PATH: why          an MLflow spool's journal.jsonl / replayed.jsonl
    corrupt sweep record: PATH: why   a sweep's xfer_sweep.json (what --resume reads)
    corrupt checkpoint: why           a trial state read back for a retry or --resume

and ``--dry-run`` reads what the run would read: a dataset given with --data, or one the cache
already holds for this sweep, is checked file by file before the plan is printed.

The in-process tests damage a tiny packed dataset one way each and call the loaders; the
subprocess tests run the real commands (a few seconds each: they import torch).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, sweep_env, warm_runner
from helpers_data import write_blob_dataset
from xfer.data.layout import check_packed
from xfer.data.tensors import load_packed, read_packed_arrays
from xfer.errors import UsageError

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    return write_blob_dataset(tmp_path_factory.mktemp("corrupt") / "blobs", n=160, num_classes=4)


def _copy(good: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(good, tmp_path / "data"))


def _meta(root: Path) -> dict:
    return json.loads((root / "dataset.json").read_text())


def _edit_meta(root: Path, **changes) -> None:
    (root / "dataset.json").write_text(json.dumps({**_meta(root), **changes}))


def _truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


# (how the dataset is damaged, the file named, what the message says)
DAMAGE = {
    "dataset.json garbage": (lambda r: (r / "dataset.json").write_bytes(b"\x00\xffgarbage{"),
                             "dataset.json", "not UTF-8 text"),
    "dataset.json not JSON": (lambda r: (r / "dataset.json").write_text("{\"n\": 160,"),
                              "dataset.json", "not JSON"),
    "dataset.json empty": (lambda r: (r / "dataset.json").write_text(""), "dataset.json", "empty"),
    "dataset.json a list": (lambda r: (r / "dataset.json").write_text("[1, 2]"),
                            "dataset.json", "not a JSON object"),
    "dataset.json without n": (lambda r: (r / "dataset.json").write_text(json.dumps(
        {k: v for k, v in _meta(r).items() if k != "n"})), "dataset.json", "'n' must be a positive integer"),
    "dataset.json image_size a string": (lambda r: _edit_meta(r, image_size="32"),
                                         "dataset.json", "'image_size' must be a positive integer"),
    "dataset.json without classes": (lambda r: _edit_meta(r, families=None), "dataset.json",
                                     "'classes' (or 'families')"),
    "dataset.json split_ranges malformed": (lambda r: _edit_meta(r, split_ranges={"train": [0]}),
                                            "dataset.json", "'split_ranges' must map"),
    "dataset.json split_ranges past the arrays": (
        lambda r: _edit_meta(r, split_ranges={"train": [0, 100], "val": [100, 130], "test": [130, 999]}),
        "dataset.json", "lies outside the packed arrays' 160 rows"),
    "dataset.json heldout_test past the arrays": (lambda r: _edit_meta(r, n=100, heldout_test=[100, 400]),
                                                  "dataset.json", "heldout_test [100, 400]"),
    "dataset.json n larger than the arrays": (lambda r: _edit_meta(r, n=161), "dataset.json",
                                              "n is 161 but the packed arrays hold 160"),
    "images truncated": (lambda r: _truncate(r / "packed" / "images_u8.npy"), "images_u8.npy", "truncated"),
    "images header garbage": (lambda r: (r / "packed" / "images_u8.npy").write_bytes(b"PK\x03\x04" * 40),
                              "images_u8.npy", "not a NumPy .npy array"),
    "images empty file": (lambda r: (r / "packed" / "images_u8.npy").write_bytes(b""),
                          "images_u8.npy", "not a NumPy .npy array"),
    "images of another size": (lambda r: np.save(r / "packed" / "images_u8.npy",
                                                 np.zeros((160, 16, 16, 3), np.uint8)),
                               "images_u8.npy", "16×16 px, dataset.json says 32 px"),
    "images float": (lambda r: np.save(r / "packed" / "images_u8.npy", np.zeros((160, 32, 32, 3))),
                     "images_u8.npy", "expected N×H×W×3 uint8"),
    "images pickled objects": (lambda r: np.save(r / "packed" / "images_u8.npy",
                                                 np.array([None] * 160, dtype=object)),
                               "images_u8.npy", "holds Python objects"),
    "labels truncated": (lambda r: _truncate(r / "packed" / "labels_i64.npy", 0.9), "labels_i64.npy", "truncated"),
    "labels missing": (lambda r: (r / "packed" / "labels_i64.npy").unlink(), "labels_i64.npy", "missing"),
    "labels fewer than images": (lambda r: np.save(r / "packed" / "labels_i64.npy", np.zeros(100, np.int64)),
                                 "labels_i64.npy", "100 labels for the 160 images"),
    "labels out of range": (lambda r: np.save(r / "packed" / "labels_i64.npy", np.arange(160) % 9),
                            "labels_i64.npy", "class indices 0..3, found 0..8"),
    "labels negative": (lambda r: np.save(r / "packed" / "labels_i64.npy", np.arange(160) % 4 - 1),
                        "labels_i64.npy", "found -1..2"),
    "labels floats": (lambda r: np.save(r / "packed" / "labels_i64.npy", np.zeros(160)),
                      "labels_i64.npy", "one integer label per image"),
    "audit.json garbage": (lambda r: (r / "audit.json").write_text("{not json"), "audit.json", "not JSON"),
}


@pytest.mark.parametrize("name", list(DAMAGE))
def test_each_damaged_dataset_file_is_named_by_every_loader(name, good, tmp_path):
    damage, file_name, why = DAMAGE[name]
    root = _copy(good, tmp_path)
    damage(root)
    for load in (check_packed, load_packed, read_packed_arrays):
        with pytest.raises(UsageError) as caught:
            load(root)
        message = str(caught.value)
        assert message.startswith("corrupt dataset: "), message
        assert file_name in message and why in message, message
        assert "\n" not in message


def test_the_intact_dataset_loads(good):
    assert check_packed(good)["n"] == 160
    assert load_packed(good).images.shape == (160, 3, 32, 32)


def test_a_damaged_checkpoint_is_named():
    from xfer.trial_state import check_state

    for state, why in [(None, "not a trial state"), ({"format": "other"}, "found 'other'"),
                       ({"format": "xfer-trial-state/1", "config": {}}, "'model' is missing"),
                       ({"format": "xfer-trial-state/1", "config": {}, "model": {}, "optimizer": {},
                         "rng": {"torch": 1}, "progress": {"history": []}}, "RNG state lacks"),
                       ({"format": "xfer-trial-state/1", "config": {}, "model": {}, "optimizer": {},
                         "rng": dict.fromkeys(("torch", "cuda", "numpy", "python")), "progress": {}},
                        "no epoch history")]:
        with pytest.raises(ValueError, match="corrupt checkpoint") as caught:
            check_state(state)
        assert why in str(caught.value)


def test_a_truncated_checkpoint_file_is_named(tmp_path):
    import torch

    from xfer.weights import load_state_file

    path = tmp_path / "trial_state.pt"
    torch.save({"format": "xfer-trial-state/1", "model": {"w": torch.zeros(1000)}}, path)
    _truncate(path)
    with pytest.raises(UsageError, match=f"checkpoint {path} is truncated"):
        load_state_file(path)


# --- the spool and the sweep record ----------------------------------------------------------

@pytest.mark.parametrize("journal, why", [
    (b"\x00\x01garbage\n", "line 1 is not JSON"),
    (b'{"seq": 0, "op": "header"}\n[1]\n', "line 2 is not a JSON object"),
    (b'{"seq": 0, "op": "header"}\n{"op": "log_batch"}\n', "line 2 has no integer 'seq'"),
    (b'{"seq": 0, "op": "header", "tracking_uri": 5}\n', "the header's tracking_uri must be text"),
])
def test_a_damaged_spool_journal_is_named(journal, why, tmp_path):
    from xfer.tracking.journal import Spool

    (tmp_path / "journal.jsonl").write_bytes(journal)
    with pytest.raises(UsageError) as caught:
        Spool(tmp_path).header()
    assert str(caught.value).startswith(f"corrupt spool: {tmp_path / 'journal.jsonl'}: {why}")


def test_a_damaged_acknowledgement_file_is_named(tmp_path):
    from xfer.tracking.journal import Spool

    (tmp_path / "replayed.jsonl").write_text('{"seq": 1}\n{"seq": 2, "resolved": [1]}\n')
    with pytest.raises(UsageError, match="corrupt spool: .*replayed.jsonl: record 2"):
        Spool(tmp_path).acks()


@pytest.mark.parametrize("record, why", [
    (b"", "empty"), (b"{torn", "not JSON"), (b"[]", "not a JSON object"),
    (b'{"sweep_id": "s", "started_at": "yesterday"}', "started_at must be a time"),
    (b'{"started_at": 1.0}', "no sweep_id"),
])
def test_a_damaged_sweep_record_is_named_not_skipped(record, why, tmp_path):
    """Skipping it would let --resume pick an older sweep, or say there is none."""
    from xfer.sweep.storage import META_FILE, SweepStore

    store = SweepStore.open(str(tmp_path))
    store.write_meta("exp", "older", {"sweep_id": "older", "started_at": 1.0, "finished": False})
    (tmp_path / "exp" / "newer").mkdir()
    (tmp_path / "exp" / "newer" / META_FILE).write_bytes(record)
    with pytest.raises(UsageError) as caught:
        store.latest_unfinished("exp")
    assert str(caught.value).startswith(f"corrupt sweep record: {tmp_path}/exp/newer/{META_FILE}: {why}")


def test_a_folder_without_a_record_is_still_skipped(tmp_path):
    from xfer.sweep.storage import SweepStore

    store = SweepStore.open(str(tmp_path))
    store.write_meta("exp", "s1", {"sweep_id": "s1", "started_at": 1.0})
    (tmp_path / "exp" / "not-a-sweep").mkdir()
    assert store.latest_unfinished("exp")["sweep_id"] == "s1"


# --- the commands: one line, exit 2, with --dry-run too ------------------------------------

def _run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return warm_runner().run(argv, timeout=240, cwd=cwd, env=sweep_env(cwd))


def _assert_one_line(done: subprocess.CompletedProcess, *parts: str) -> str:
    assert done.returncode == 2, (done.returncode, done.stdout[-2000:], done.stderr[-3000:])
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr[-3000:]
    for part in parts:
        assert part in lines[0], lines[0]
    return lines[0]


XFER = [sys.executable, "-m", "xfer.cli"]


@pytest.mark.slow
def test_xfer_train_names_a_truncated_packed_array(good, tmp_path):
    root = _copy(good, tmp_path)
    _truncate(root / "packed" / "images_u8.npy")
    done = _run([*XFER, "train", "--data", str(root), "--model", "small_cnn", "--init", "scratch",
                 "--epochs", "1", "--batch-size", "8", "--device", "cpu"], tmp_path)
    _assert_one_line(done, f"corrupt dataset: {root}/packed/images_u8.npy: truncated")


@pytest.mark.slow
def test_xfer_data_pdf_names_a_garbage_dataset_json_at_its_out(good, tmp_path):
    root = _copy(good, tmp_path)
    (root / "dataset.json").write_text("garbage")
    done = _run([*XFER, "data", "pdf", "--n", "8", "--image-size", "32", "--out", str(root)], tmp_path)
    _assert_one_line(done, f"corrupt dataset: {root}/dataset.json: not JSON")


@pytest.mark.slow
def test_xfer_data_audit_names_garbage_metadata(good, tmp_path):
    root = _copy(good, tmp_path)
    (root / "metadata.json").write_text("{\"a\": ")
    done = _run([*XFER, "data", "audit", str(root), "--no-empirical"], tmp_path)
    _assert_one_line(done, f"{root}/metadata.json")


@pytest.mark.slow
def test_xfer_replay_names_a_garbage_journal(tmp_path):
    spool = tmp_path / "spool"
    spool.mkdir()
    (spool / "journal.jsonl").write_bytes(b"\x89garbage\x00\nmore\n")
    done = _run([*XFER, "replay", str(spool)], tmp_path)
    _assert_one_line(done, f"corrupt spool: {spool}/journal.jsonl: line 1 is not JSON")
    assert not (tmp_path / "mlflow.db").exists()


@pytest.mark.slow
def test_dry_run_reads_a_given_dataset_like_the_run(good, tmp_path):
    """--data DIR with labels cut short: the dry run fails where the trials would."""
    root = _copy(good, tmp_path)
    _truncate(root / "packed" / "labels_i64.npy", 0.9)
    done = _run([sys.executable, str(REPO / "sweeps" / "pdf_grid.py"), "--smoke-test", "--dry-run",
                 "--data", str(root), "--storage", str(tmp_path / "runs"),
                 "--cache-dir", str(tmp_path / "cache")], tmp_path)
    _assert_one_line(done, f"corrupt dataset: {root}/packed/labels_i64.npy: truncated")


@pytest.mark.slow
def test_dry_run_reads_the_cached_dataset_the_run_would_reuse(good, tmp_path):
    """The smoke preset's PDF dataset is in the cache, but damaged: the dry run says so."""
    sys.path.insert(0, str(REPO / "sweeps"))
    try:
        from pdf_grid import STUDY
    finally:
        sys.path.remove(str(REPO / "sweeps"))
    preset = STUDY.preset("smoke")
    largest = max(t["dataset_size"] for t in preset.trials(seeds=1))
    cached = tmp_path / "cache" / "datasets" / preset.data._spec(largest).key
    shutil.copytree(good, cached)
    (cached / "dataset.json").write_text(json.dumps({**_meta(cached), "n": "many"}))
    args = [sys.executable, str(REPO / "sweeps" / "pdf_grid.py"), "--smoke-test", "--dry-run",
            "--storage", str(tmp_path / "runs"), "--cache-dir", str(tmp_path / "cache")]
    _assert_one_line(_run(args, tmp_path), f"corrupt dataset: {cached}/dataset.json: 'n' must be")
    shutil.rmtree(cached)  # absent: nothing to check, the run would build it
    done = _run(args, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.slow
def test_dry_run_reads_the_cached_offline_weights_the_run_would_load(tmp_path):
    """The smoke preset's offline-pretrained weights are in the cache, but cut short."""
    from xfer.sweep.driver import offline_weights_path
    from xfer.sweep.study import SMOKE_PRETRAIN

    cached = offline_weights_path(SMOKE_PRETRAIN, tmp_path / "cache")
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"PK\x03\x04 not a whole torch.save zip")
    done = _run([sys.executable, str(REPO / "sweeps" / "pdf_grid.py"), "--smoke-test", "--dry-run",
                 "--storage", str(tmp_path / "runs"), "--cache-dir", str(tmp_path / "cache")], tmp_path)
    assert done.returncode == 2, done.stderr[-3000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and str(cached) in lines[0] and "Traceback" not in done.stderr, done.stderr


@pytest.mark.slow
def test_resume_names_a_damaged_sweep_record(tmp_path):
    record = tmp_path / "runs" / "pdf_grid" / "pdf_grid-20990101-000000-abcd" / "xfer_sweep.json"
    record.parent.mkdir(parents=True)
    record.write_text('{"sweep_id": "pdf_grid-20990101-000000-abcd", "started_')
    done = _run([sys.executable, str(REPO / "sweeps" / "pdf_grid.py"), "--smoke-test", "--resume",
                 "--dry-run", "--storage", str(tmp_path / "runs"),
                 "--cache-dir", str(tmp_path / "cache")], tmp_path)
    _assert_one_line(done, f"corrupt sweep record: {record}: not JSON")
