"""Real data sources packed into xfer's format: CIFAR's python pickles, image folders, and the
fixed-split layout (split_ranges) they share; fit() trains on both unchanged. No network."""

from __future__ import annotations

import json
import os
import pickle
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers_data import pretend_official, write_blob_dataset, write_cifar, write_image_folder
from xfer.data.cifar import ensure_cifar, locate_or_fetch, pack_cifar, read_cifar
from xfer.data.folder import (ensure_folder, folder_summary, pack_folder, scan_folder,
                              split_every_class)
from xfer.data.packing import (balanced_order, ensure_packed, fixed_split_layout, write_packed)
from xfer.data.tensors import classes_of, from_arrays, load_packed, max_n, read_packed_arrays
from xfer.errors import UsageError
from xfer.train import TrialConfig, fit


def _meta(root: Path) -> dict:
    return json.loads((root / "dataset.json").read_text())


def _no_network(monkeypatch) -> list:
    """torchvision's CIFAR loaders replaced by ones that record the call and fail as offline."""
    from torchvision import datasets

    calls = []

    def offline(root, train=True, download=False, **kwargs):
        calls.append((root, train, download))
        raise RuntimeError("<urlopen error [Errno -3] Temporary failure in name resolution>")

    monkeypatch.setattr(datasets, "CIFAR10", offline)
    monkeypatch.setattr(datasets, "CIFAR100", offline)
    return calls


@pytest.fixture(scope="module")
def cifar10(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("cifar")
    return root, write_cifar(root, "cifar10", n_train_per_batch=30, n_test=40)


@pytest.fixture(scope="module")
def packed10(cifar10, tmp_path_factory) -> Path:
    root, _ = cifar10
    return pack_cifar(root, "cifar10", tmp_path_factory.mktemp("packed") / "c10", val_size=20,
                      seed=3, download=False)


# --- CIFAR: reading --------------------------------------------------------------------------

def test_pickles_read_back_pixel_exact_in_nhwc(cifar10):
    root, written = cifar10
    train_images, train_labels, test_images, test_labels, classes = read_cifar(root, "cifar10")
    assert train_images.shape == (150, 32, 32, 3) and train_images.dtype == np.uint8
    assert np.array_equal(train_images, written["train_images"])  # channel order, rows, batches
    assert np.array_equal(test_images, written["test_images"])
    assert np.array_equal(train_labels, written["train_labels"])
    assert np.array_equal(test_labels, written["test_labels"])
    assert classes == written["classes"] and classes[0] == "airplane"
    # --root may also name the extracted folder itself
    assert locate_or_fetch(written["folder"], "cifar10", download=False) == written["folder"]
    assert np.array_equal(read_cifar(written["folder"], "cifar10")[2], test_images)
    # channel-planar: the first 1024 values of a row are the red plane
    raw = pickle.loads((written["folder"] / "data_batch_1").read_bytes(), encoding="latin1")
    assert np.array_equal(raw["data"][0, :1024].reshape(32, 32), train_images[0, :, :, 0])
    assert np.array_equal(raw["data"][0, 2048:].reshape(32, 32), train_images[0, :, :, 2])


def test_cifar100_fine_labels_and_bytes_keys(tmp_path):
    written = write_cifar(tmp_path, "cifar100", n_train_per_batch=40, n_test=10, num_classes=5,
                          bytes_keys=True)
    train_images, train_labels, _, test_labels, classes = read_cifar(tmp_path, "cifar100")
    assert classes == [f"fine{c:02d}" for c in range(5)]
    assert np.array_equal(train_images, written["train_images"])
    assert np.array_equal(train_labels, written["train_labels"])
    assert np.array_equal(test_labels, written["test_labels"])


def test_pickles_written_by_numpy_1_read_too(tmp_path):
    """The official files name numpy.core.multiarray (numpy < 2); numpy 2 calls it numpy._core."""
    written = write_cifar(tmp_path, "cifar10", n_train_per_batch=10, n_test=10)
    for path in written["folder"].iterdir():
        path.write_bytes(path.read_bytes().replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))
    assert b"numpy.core.multiarray" in (written["folder"] / "data_batch_1").read_bytes()
    assert np.array_equal(read_cifar(tmp_path, "cifar10")[0], written["train_images"])


def test_the_archive_is_extracted_safely_when_no_folder_exists(tmp_path, monkeypatch):
    calls = _no_network(monkeypatch)
    written = write_cifar(tmp_path, "cifar10", n_train_per_batch=10, n_test=10, archive=True)
    assert not written["folder"].exists() and written["archive"].is_file()
    folder = locate_or_fetch(tmp_path, "cifar10", download=True)
    assert folder == written["folder"] and calls == []
    assert np.array_equal(read_cifar(tmp_path, "cifar10")[0], written["train_images"])
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # temp gone


def test_an_archive_escaping_its_folder_is_refused(tmp_path):
    import io
    import tarfile

    with tarfile.open(tmp_path / "cifar-10-python.tar.gz", "w:gz") as tar:
        info = tarfile.TarInfo("../escaped.txt")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"bad"))
    with pytest.raises(UsageError, match="cannot extract"):
        locate_or_fetch(tmp_path, "cifar10", download=False)
    assert not (tmp_path / "escaped.txt").exists() and not (tmp_path.parent / "escaped.txt").exists()


def test_missing_files_name_the_files_the_archive_and_the_url_without_network(tmp_path, monkeypatch):
    calls = _no_network(monkeypatch)
    with pytest.raises(UsageError) as error:
        locate_or_fetch(tmp_path, "cifar10", download=False)
    message = str(error.value)
    for expected in ("data_batch_1", "data_batch_5", "test_batch", "batches.meta",
                     "cifar-10-python.tar.gz", "https://www.cs.toronto.edu/~kriz/cifar.html"):
        assert expected in message
    assert calls == [] and list(tmp_path.iterdir()) == []
    with pytest.raises(UsageError, match="cifar-100-python.tar.gz"):
        locate_or_fetch(tmp_path, "cifar100", download=False)


def test_a_failed_download_is_a_usage_error_and_leaves_nothing(tmp_path, monkeypatch):
    calls = _no_network(monkeypatch)
    root = tmp_path / "new_root"
    with pytest.raises(UsageError, match="could not download CIFAR-10.*name resolution"):
        locate_or_fetch(root, "cifar10", download=True)
    assert calls and calls[0][2] is True
    assert not root.exists()


def test_download_goes_through_torchvisions_loader(tmp_path, monkeypatch):
    """Online, torchvision fetches and extracts; simulated by a loader writing the files."""
    from torchvision import datasets

    calls = []

    def fetch(root, train=True, download=False, **kwargs):
        calls.append(train)
        if not (Path(root) / "cifar-10-batches-py").exists():
            write_cifar(Path(root), "cifar10", n_train_per_batch=10, n_test=10, archive=False)

    monkeypatch.setattr(datasets, "CIFAR10", fetch)
    folder = locate_or_fetch(tmp_path, "cifar10", download=True)
    assert calls == [True, False] and folder == tmp_path / "cifar-10-batches-py"
    assert read_cifar(tmp_path, "cifar10")[0].shape == (50, 32, 32, 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cifar-10-batches-py"]


@pytest.mark.parametrize("damage", ["garbage", "wrong shape", "label out of range", "code"])
def test_a_corrupt_pickle_is_a_usage_error_naming_the_file(tmp_path, damage):
    written = write_cifar(tmp_path, "cifar10", n_train_per_batch=10, n_test=10)
    path = written["folder"] / "data_batch_3"
    if damage == "garbage":
        path.write_bytes(b"\x80\x02not a pickle at all")
    elif damage == "code":  # a pickle that would run a command when loaded
        path.write_bytes(pickle.dumps({"data": os.system}))
    else:
        entry = pickle.loads(path.read_bytes(), encoding="latin1")
        if damage == "wrong shape":
            entry["data"] = entry["data"][:, :1000]
        else:
            entry["labels"][0] = 10
        path.write_bytes(pickle.dumps(entry, protocol=2))
    with pytest.raises(UsageError, match="data_batch_3"):
        read_cifar(tmp_path, "cifar10")


# --- CIFAR: packing and the fixed splits ---------------------------------------------------

def test_val_is_a_stratified_holdout_disjoint_from_train_and_test_is_official(cifar10, packed10):
    _, written = cifar10
    meta = _meta(packed10)
    assert meta["split_ranges"] == {"train": [0, 130], "val": [130, 150], "test": [150, 190]}
    assert (meta["kind"], meta["preset"], meta["classes"], meta["image_size"], meta["seed"],
            meta["n"], meta["val_size"]) == ("cifar10", "official", written["classes"], 32, 3, 190, 20)
    assert sum(meta["class_counts"].values()) == 190 and meta["generator_version"] == 1
    assert meta["source"]["files"][0] == "cifar-10-batches-py/data_batch_1"
    images, labels, _ = read_packed_arrays(packed10)
    assert np.bincount(labels[130:150], minlength=10).tolist() == [2] * 10  # 20 of 150: 2 per class
    assert np.array_equal(images[150:], written["test_images"])  # official test, in order
    assert np.array_equal(labels[150:], written["test_labels"])
    # train and val are exactly the official train set, each image once
    as_rows = lambda a: {row.tobytes() for row in a}
    official = as_rows(written["train_images"])
    assert as_rows(images[:130]) | as_rows(images[130:150]) == official
    assert not as_rows(images[:130]) & as_rows(images[130:150])


def test_every_prefix_of_the_train_range_is_class_balanced(packed10):
    labels = read_packed_arrays(packed10)[1][:130]
    for n in range(1, 131):
        counts = np.bincount(labels[:n], minlength=10)
        assert counts.max() - counts.min() <= 1, n


def test_balanced_order_with_unequal_classes_shuffles_within_a_class_by_seed():
    labels = np.array([0] * 6 + [1] * 2 + [2] * 4)
    order = balanced_order(labels, seed=0)
    assert sorted(order.tolist()) == list(range(12))
    assert labels[order].tolist() == [0, 1, 2, 0, 1, 2, 0, 2, 0, 2, 0, 0]
    assert not np.array_equal(order, balanced_order(labels, seed=1))


def test_take_n_counts_training_images_and_keeps_val_and_test(packed10):
    full = load_packed(packed10)
    assert full.identity["split"] == "fixed" and full.identity["n"] == 130
    assert {k: len(v) for k, v in full.splits.items()} == {"train": 130, "val": 20, "test": 40}
    small = full.take(25)
    assert small.identity["n"] == 25 and len(small.splits["train"]) == 25
    for name in ("val", "test"):
        assert all(torch.equal(a, b) for a, b in zip(small.split(name), full.split(name)))
    # take(n) == load_packed(n): same images in every split
    loaded = load_packed(packed10, n=25)
    assert loaded.images.shape[0] == 25 + 20 + 40  # only the rows in play were read
    for name in ("train", "val", "test"):
        assert all(torch.equal(a, b) for a, b in zip(small.split(name), loaded.split(name)))
    assert np.bincount(small.split("train")[1].numpy(), minlength=10).tolist() == [3] * 5 + [2] * 5
    for bad in (0, 131):
        with pytest.raises(UsageError, match="between 1 and the train split's 130"):
            load_packed(packed10, n=bad)
        with pytest.raises(UsageError, match="between 1 and 130"):
            full.take(bad)
    with pytest.raises(UsageError, match="fixed splits"):
        load_packed(packed10, seed=7)


def test_shared_in_memory_arrays_are_viewed_not_copied(packed10):
    images, labels, meta = read_packed_arrays(packed10)
    images.setflags(write=False)  # as from Ray's object store
    data = from_arrays(images, labels, meta, n=10)
    assert data.images.data_ptr() == images.ctypes.data
    assert data.split("train")[0].shape == (10, 3, 32, 32)
    assert torch.equal(data.split("test")[0], torch.from_numpy(images[150:]).permute(0, 3, 1, 2))
    assert data.identity["n"] == 10 and data.identity["split"] == "fixed"


def test_max_n_and_classes_of_read_both_layouts(packed10, tmp_path):
    assert max_n(_meta(packed10)) == 130 and classes_of(_meta(packed10))[1] == "automobile"
    blobs = write_blob_dataset(tmp_path / "blobs", n=40, num_classes=4)
    assert max_n(_meta(blobs)) == 40 and classes_of(_meta(blobs)) == ["class0", "class1", "class2", "class3"]
    data = load_packed(blobs, n=20)  # the prefix layout, unchanged
    assert data.identity["split"] == "80:10:10" and data.images.shape[0] == 20


def test_val_size_must_leave_training_images(cifar10, tmp_path):
    root, _ = cifar10
    for bad in (0, 141, 150):
        with pytest.raises(UsageError, match="--val-size"):
            pack_cifar(root, "cifar10", tmp_path / "out", val_size=bad, download=False)
    assert not (tmp_path / "out").exists()


def test_repacking_reuses_an_identical_dataset_and_refuses_another(cifar10, packed10):
    root, _ = cifar10
    before = (packed10 / "dataset.json").stat().st_mtime_ns
    assert pack_cifar(root, "cifar10", packed10, val_size=20, seed=3, download=False) == packed10
    assert (packed10 / "dataset.json").stat().st_mtime_ns == before
    with pytest.raises(UsageError, match="different dataset"):
        pack_cifar(root, "cifar10", packed10, val_size=30, seed=3, download=False)


def test_ensure_cifar_builds_once_under_concurrency(cifar10, tmp_path, monkeypatch):
    import xfer.data.cifar as cifar

    root, _ = cifar10
    builds, paths = [], []
    real = cifar.read_cifar
    monkeypatch.setattr(cifar, "read_cifar", lambda *a: (builds.append(1), real(*a))[1])
    threads = [threading.Thread(target=lambda: paths.append(
        ensure_cifar(tmp_path, root, "cifar10", val_size=20, seed=0, download=False))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(builds) == 1 and len(set(paths)) == 1 and len(paths) == 3
    assert paths[0].name == "cifar10-official-val20-seed0-v1" and max_n(_meta(paths[0])) == 130


def test_fit_trains_on_packed_cifar(packed10):
    config = TrialConfig(data=str(packed10), model="small_cnn", epochs=1, batch_size=16, lr=0.05,
                         n=60, device="cpu")
    result = fit(config, lambda metrics: None)
    assert (result["n_train"], result["n_val"], result["n_test"]) == (60, 20, 40)
    assert result["classes"][0] == "airplane" and len(result["classes"]) == 10
    assert result["dataset"]["dataset"] == "cifar10" and result["dataset"]["split"] == "fixed"
    assert result["images_processed"] == 60 and np.isfinite(result["test_loss"])


# --- CIFAR: the official test set as validation (val_source "test", the CIFAR-10 study's) -----

@pytest.fixture(scope="module")
def packed10_valtest(cifar10, tmp_path_factory) -> Path:
    root, _ = cifar10
    return pack_cifar(root, "cifar10", tmp_path_factory.mktemp("packed") / "c10t", seed=3,
                      download=False, val_source="test")


def test_val_source_test_trains_on_every_training_image_and_validates_on_the_test_set(
        cifar10, packed10_valtest):
    _, written = cifar10
    meta = _meta(packed10_valtest)
    assert meta["split_ranges"] == {"train": [0, 150], "val": [150, 190], "test": [190, 230]}
    assert (meta["val_source"], meta["val_is_test"], meta["val_size"]) == ("test", True, 0)
    assert sum(meta["class_counts"].values()) == 190  # distinct images: val repeats test
    images, labels, _ = read_packed_arrays(packed10_valtest)
    as_rows = lambda a: sorted(row.tobytes() for row in a)
    assert as_rows(images[:150]) == as_rows(written["train_images"])  # all of train, once each
    for start in (150, 190):  # val and test: the official test set, in its order
        assert np.array_equal(images[start:start + 40], written["test_images"])
        assert np.array_equal(labels[start:start + 40], written["test_labels"])
    data = load_packed(packed10_valtest, n=50)
    assert {k: len(v) for k, v in data.splits.items()} == {"train": 50, "val": 40, "test": 40}
    assert torch.equal(data.split("val")[0], data.split("test")[0])
    assert torch.equal(data.split("val")[1], data.split("test")[1])


def test_val_source_test_is_another_dataset_with_its_own_identity_and_cache(cifar10, packed10_valtest,
                                                                            tmp_path):
    from xfer.data.cifar import cache_key

    root, _ = cifar10
    holdout = pack_cifar(root, "cifar10", tmp_path / "holdout", val_size=20, seed=3, download=False)
    meta, held = _meta(packed10_valtest), _meta(holdout)
    assert (held["val_source"], held["val_is_test"], held["val_size"]) == ("train", False, 20)
    assert "selection sees the test set" in meta["splits"]["val"]
    assert "held out of the official train set" in held["splits"]["val"]
    with pytest.raises(UsageError, match="different dataset"):  # one folder never holds both
        pack_cifar(root, "cifar10", packed10_valtest, val_size=20, seed=3, download=False)
    with pytest.raises(UsageError, match="different dataset"):
        pack_cifar(root, "cifar10", holdout, seed=3, download=False, val_source="test")
    # a "train" dataset packed before val_source existed (no such key) is still reused
    old = {k: v for k, v in held.items() if k not in ("val_source", "val_is_test", "source_md5")}
    (holdout / "dataset.json").write_text(json.dumps(old))
    assert pack_cifar(root, "cifar10", holdout, val_size=20, seed=3, download=False) == holdout
    assert cache_key("cifar10", 0, 3, "test") == "cifar10-official-valtest-seed3-v1"
    assert cache_key("cifar10", 5000, 3) == "cifar10-official-val5000-seed3-v1"  # as before
    built = ensure_cifar(tmp_path / "cache", root, "cifar10", seed=3, download=False, val_source="test")
    assert built.name == "cifar10-official-valtest-seed3-v1" and _meta(built)["val_is_test"]


def test_val_source_is_checked(cifar10, tmp_path):
    root, _ = cifar10
    with pytest.raises(UsageError, match=r"unknown val_source 'official' \(valid: train, test\)"):
        pack_cifar(root, "cifar10", tmp_path / "out", download=False, val_source="official")
    with pytest.raises(UsageError, match="applies to val_source 'train' only"):
        pack_cifar(root, "cifar10", tmp_path / "out", val_size=20, download=False, val_source="test")
    assert not (tmp_path / "out").exists()


# --- provenance: the official release or a stand-in -------------------------------------------

def test_generated_cifar_is_a_stand_in_and_matching_md5s_make_it_genuine(cifar10, monkeypatch):
    from xfer.data.cifar import official_release, published_md5s, release_note, source_md5s

    _, written = cifar10
    md5s = source_md5s(written["folder"], "cifar10")
    assert set(md5s) == {*(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta"}
    # torchvision's table, as published: the generated files are not the official ones
    assert published_md5s("cifar10")["data_batch_1"] == "c99cafc152244af753f735de768cd75f"
    genuine, differ = official_release("cifar10", md5s)
    assert not genuine and differ == [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta"]
    genuine, note = release_note("cifar10", md5s)
    assert genuine is False and note.startswith("stand-in: generated files, not the official CIFAR-10")
    # the table listing exactly these files' md5s: the comparison says genuine
    pretend_official(monkeypatch, written["folder"])
    assert official_release("cifar10", md5s) == (True, [])
    assert release_note("cifar10", md5s) == (True, "the official CIFAR-10 archive (every file's md5 "
                                                   "matches torchvision's)")
    # one file off, or missing, is enough to be a stand-in
    assert official_release("cifar10", {**md5s, "test_batch": "0" * 32}) == (False, ["test_batch"])
    assert official_release("cifar10", {k: v for k, v in md5s.items() if k != "batches.meta"}) == \
        (False, ["batches.meta"])
    assert release_note("cifar10", None)[0] is None


def test_cifar_source_provenance_before_and_after_prepare(cifar10, tmp_path, monkeypatch):
    import shutil

    from xfer.sweep.sources import CifarData

    root, written = cifar10
    copy = tmp_path / "downloads"
    shutil.copytree(written["folder"], copy / "cifar-10-batches-py")
    cache = tmp_path / "datasets"
    source = CifarData("cifar10", root=str(copy), download=False, val_source="test")
    card = source.provenance(cache)  # not packed yet: read from the extracted files
    assert card["genuine"] is False and card["note"].startswith("stand-in") and card["val_is_test"] is True
    assert card["describe"] == source.describe() and "both validation and test" in card["describe"]
    packed = source.prepare(cache, 150)
    assert set(_meta(packed)["source_md5"]) == {p.name for p in written["folder"].iterdir()}
    pretend_official(monkeypatch, written["folder"])
    shutil.rmtree(copy)  # after prepare, the md5s recorded in dataset.json answer
    assert source.provenance(cache)["genuine"] is True
    # nothing extracted and nothing packed: unknown, not a guess
    empty = CifarData("cifar10", root=str(tmp_path / "none"), download=False, seed=9)
    assert empty.provenance(cache)["genuine"] is None
    assert CifarData("cifar10").provenance(cache)["val_is_test"] is False


def test_every_source_has_provenance(packed10, packed10_valtest, image_folder, tmp_path):
    from xfer.sweep.sources import FolderData, PackedData, PdfData

    seed = PdfData().provenance(tmp_path)
    assert set(seed) == {"describe", "genuine", "note", "val_is_test"}
    assert seed["genuine"] is True and seed["val_is_test"] is False
    for part in ("preset seed", "gamma's beta read as a rate", "tick labels drawn", "256 px"):
        assert part in seed["note"], seed["note"]
    other = PdfData(preset="varied", image_size=64, gamma_beta="scale", tick_labels=False).provenance(tmp_path)
    assert other["genuine"] is False and other["note"].startswith("not the study's dataset: preset varied")
    for part in ("as a scale", "no tick labels", "64 px (the study's: 256 px)"):
        assert part in other["note"], other["note"]
    root, _ = image_folder
    folder = FolderData(str(root), image_size=32).provenance(tmp_path)
    assert folder["genuine"] is None and folder["note"] == (
        "not the study's dataset: the study's 1,800 clothing images are not public")
    packed = PackedData(str(packed10)).provenance(tmp_path)
    assert packed["genuine"] is False and packed["note"].startswith("stand-in") and not packed["val_is_test"]
    assert PackedData(str(packed10_valtest)).provenance(tmp_path)["val_is_test"] is True


# --- packing primitives --------------------------------------------------------------------

def test_write_packed_is_atomic_and_refuses_user_data(tmp_path, monkeypatch):
    images = np.zeros((6, 8, 8, 3), np.uint8)
    labels = np.array([0, 1, 0, 1, 0, 1])
    holder = tmp_path / "holder"
    holder.mkdir()
    (holder / "keep.txt").write_text("user data")
    with pytest.raises(UsageError, match="not an empty folder"):
        write_packed(holder, images, labels, {"kind": "x", "classes": ["a", "b"]})
    assert [p.name for p in holder.iterdir()] == ["keep.txt"]
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(UsageError, match="not writable"):
        write_packed(tmp_path / "a_file" / "sub", images, labels, {"kind": "x"})

    import xfer.data.packing as packing

    monkeypatch.setattr(packing, "packed_section", lambda root: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        write_packed(tmp_path / "out", images, labels, {"kind": "x"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "holder"]


def test_ensure_packed_deletes_a_killed_build_and_rebuilds(tmp_path):
    (tmp_path / ".key.partial-1-deadbeef" / "packed").mkdir(parents=True)
    (tmp_path / "key" / "packed").mkdir(parents=True)  # no dataset.json: never complete
    images, labels = np.ones((3, 4, 4, 3), np.uint8), np.array([0, 1, 1])
    built = []

    def build(target):
        built.append(target)
        write_packed(target, images, labels, {"kind": "x", "classes": ["a", "b"], "seed": 0, "n": 3})

    path = ensure_packed(tmp_path, "key", build)
    assert built == [tmp_path / "key"] and not (tmp_path / ".key.partial-1-deadbeef").exists()
    assert ensure_packed(tmp_path, "key", build) == path and len(built) == 1
    assert load_packed(path).classes == ["a", "b"]


def test_fixed_split_layout_orders_train_val_test():
    labels = np.array([0, 1, 0, 1, 0, 1, 0, 1])
    order, ranges = fixed_split_layout(labels, {"train": np.array([0, 1, 2, 3, 4, 5]),
                                                "val": np.array([6]), "test": np.array([7])}, 0)
    assert ranges == {"train": [0, 6], "val": [6, 7], "test": [7, 8]}
    assert order[6:].tolist() == [6, 7] and labels[order[:6]].tolist() == [0, 1, 0, 1, 0, 1]


# --- image folders ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def image_folder(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("images") / "animals"
    return root, write_image_folder(root, classes=("cat", "dog", "fox"), per_class=10, size=40)


@pytest.fixture(scope="module")
def packed_folder(image_folder, tmp_path_factory) -> tuple[Path, list[str]]:
    root, _ = image_folder
    lines: list[str] = []
    out = pack_folder(root, tmp_path_factory.mktemp("packed") / "animals", image_size=32, seed=0,
                      progress=lines.append)
    return out, lines


def test_scan_finds_classes_and_skips_non_images_and_hidden_files(image_folder):
    root, _ = image_folder
    scan = scan_folder(root)
    assert scan.classes == ["cat", "dog", "fox"]
    assert [len(f) for f in scan.files] == [11, 11, 10]  # + broken.jpg, + truncated.png
    assert scan.skipped == [{"file": "cat/README.txt", "reason": "not an image file extension"}]
    assert not any(".hidden" in f for files in scan.files for f in files)
    assert folder_summary(root) == (3, 32)


def test_folder_pack_skips_corrupt_files_and_lists_them_exactly_once(image_folder, packed_folder):
    _, written = image_folder
    out, lines = packed_folder
    meta = _meta(out)
    skipped = {s["file"]: s["reason"] for s in meta["skipped_files"]}
    assert set(skipped) == set(written["corrupt"]) | set(written["non_images"])
    assert meta["skipped_count"] == 3
    assert "cannot identify image file" in skipped["cat/broken.jpg"]
    assert "truncated" in skipped["dog/truncated.png"]
    for name in written["corrupt"] + written["non_images"]:
        assert sum(line.count(name) for line in lines) == 1, (name, lines)
    assert (meta["kind"], meta["preset"], meta["classes"], meta["image_size"], meta["n"]) == \
           ("folder", "animals", ["cat", "dog", "fox"], 32, 30)
    assert meta["class_counts"] == {"cat": 10, "dog": 10, "fox": 10}
    assert meta["split_ranges"] == {"train": [0, 24], "val": [24, 27], "test": [27, 30]}


def test_folder_images_are_resized_whole_and_labelled_by_folder(image_folder, packed_folder):
    from PIL import Image

    _, written = image_folder
    out, _ = packed_folder
    images, labels, meta = read_packed_arrays(out)
    assert images.shape == (30, 32, 32, 3)
    # every PNG appears, resized as the docs say, with its folder's label
    rows = {images[i].tobytes(): int(labels[i]) for i in range(len(labels))}
    for rel, pixels in written["images"].items():
        if rel.endswith(".png"):
            expected = np.asarray(Image.fromarray(pixels).resize((32, 32), Image.Resampling.BILINEAR))
            assert rows[expected.tobytes()] == meta["classes"].index(rel.split("/")[0])
    assert np.bincount(labels[:24]).tolist() == [8, 8, 8]
    assert [np.bincount(labels[a:b], minlength=3).tolist() for a, b in ((24, 27), (27, 30))] == \
           [[1, 1, 1], [1, 1, 1]]


@pytest.mark.slow  # over 4 s of CPU
def test_fit_trains_on_a_packed_image_folder(packed_folder):
    out, _ = packed_folder
    config = TrialConfig(data=str(out), model="resnet10", epochs=1, batch_size=8, lr=0.05,
                         device="cpu")
    result = fit(config, lambda metrics: None)
    assert (result["n_train"], result["n_val"], result["n_test"]) == (24, 3, 3)
    assert result["classes"] == ["cat", "dog", "fox"] and result["dataset"]["dataset"] == "folder"
    assert np.isfinite(result["test_loss"])


def test_tiny_classes_still_get_one_val_and_one_test_image():
    labels = np.repeat(np.arange(3), [3, 4, 12])
    splits = split_every_class(labels, seed=0)
    for name in ("train", "val", "test"):
        assert set(labels[splits[name]]) == {0, 1, 2}, name
    assert sorted(np.concatenate(list(splits.values())).tolist()) == list(range(len(labels)))


@pytest.mark.parametrize("case, expected", [
    ("missing", "not found"), ("a file", "not a folder"), ("empty", "empty folder"),
    ("only non-images", "empty folder"), ("one class", "one-class folder"),
    ("two images in a class", "'b' in .* has 2 image"), ("empty class folder", "'b' in .* has 0 image"),
])
def test_unusable_folders_are_usage_errors(tmp_path, case, expected):
    root = tmp_path / "src"
    if case == "a file":
        root.write_text("x")
    elif case != "missing":
        root.mkdir()
    if case == "only non-images":
        (root / "a").mkdir()
        (root / "a" / "notes.txt").write_text("x")
    if case in ("one class", "two images in a class", "empty class folder"):
        write_image_folder(root, classes=("a",), per_class=4, size=32, corrupt=False)
    if case == "empty class folder":  # a, c hold images; b holds none
        write_image_folder(root, classes=("c",), per_class=4, size=32, corrupt=False)
    if case == "two images in a class":
        write_image_folder(root, classes=("b",), per_class=2, size=32, corrupt=False)
    if case == "empty class folder":
        (root / "b").mkdir()
    with pytest.raises(UsageError, match=expected):
        folder_summary(root)
    with pytest.raises(UsageError, match=expected):
        pack_folder(root, tmp_path / "out", image_size=32)
    assert not (tmp_path / "out").exists()


def test_a_class_left_with_too_few_readable_images_is_a_usage_error(tmp_path):
    root = tmp_path / "src"
    write_image_folder(root, classes=("a", "b"), per_class=3, size=32, corrupt=False)
    (root / "b" / "b_000.png").write_bytes(b"not a png")
    with pytest.raises(UsageError, match="'b' .* 2 readable image"):
        pack_folder(root, tmp_path / "out", image_size=32)
    assert not (tmp_path / "out").exists() and [p.name for p in tmp_path.iterdir()] == ["src"]


def test_ensure_folder_repacks_when_the_folder_changes(tmp_path):
    root = tmp_path / "src"
    write_image_folder(root, classes=("a", "b"), per_class=5, size=32, corrupt=False)
    cache = tmp_path / "cache"
    first = ensure_folder(cache, root, image_size=32, seed=0)
    assert ensure_folder(cache, root, image_size=32, seed=0) == first  # unchanged: reused
    from PIL import Image

    extra = root / "b" / "extra.png"
    Image.fromarray(np.full((32, 32, 3), 200, np.uint8)).save(extra)
    second = ensure_folder(cache, root, image_size=32, seed=0)
    assert second != first and _meta(second)["n"] == 11 and _meta(first)["n"] == 10
    assert ensure_folder(cache, root, image_size=48, seed=0) not in (first, second)
