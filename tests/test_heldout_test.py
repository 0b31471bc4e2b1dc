"""One fixed test set per PDF-plot study: drawn once from its own seed, the same images (by hash)
for every dataset size, disjoint from every training and validation image; train and val come
from each trial's own first n images; the studies' 80:10:10 split stays available.

The datasets here use the ``varied`` preset, where every draw renders differently, so that
disjointness can be checked pixel by pixel. In the ``seed`` preset a uniform(0, 1) plot is a flat
line whose only variation is its tick labels, so distinct draws can render to identical pixels;
``test_in_the_seed_preset_only_flat_uniform_plots_repeat_pixel_for_pixel`` pins that down.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import run_xfer as xfer
from xfer.data.pdf.generate import (MAX_IMAGES, TEST_SEED_OFFSET, PdfDatasetSpec, check_test_size,
                                    write_dataset)
from xfer.data.splits import stratified_split
from xfer.data.tensors import from_arrays, load_packed, read_packed_arrays
from xfer.errors import UsageError
from xfer.sweep.sources import CifarData, FolderData, PackedData, PdfData, source_from_option

POOL, TEST = 96, 40
SIZES = (16, 48, 96)


def _spec(**kwargs) -> PdfDatasetSpec:
    return PdfDatasetSpec(**{"n": POOL, "preset": "varied", "seed": 3, "image_size": 32, **kwargs})


@pytest.fixture(scope="module")
def heldout(tmp_path_factory) -> Path:
    out, _ = write_dataset(_spec(test_size=TEST), tmp_path_factory.mktemp("data") / "heldout", workers=1)
    return out


@pytest.fixture(scope="module")
def study_split(tmp_path_factory) -> Path:
    """The same pool in the studies' layout (no held-out rows), as before held-out test sets."""
    out, _ = write_dataset(_spec(), tmp_path_factory.mktemp("data") / "study", workers=1)
    return out


def _image_hashes(data, split: str) -> list[str]:
    images = data.split(split)[0].permute(0, 2, 3, 1).contiguous().numpy()
    return [hashlib.sha256(image.tobytes()).hexdigest() for image in images]


@pytest.mark.slow  # over 3 s of CPU
def test_the_layout_is_the_pool_then_the_test_rows(heldout, study_split):
    meta = json.loads((heldout / "dataset.json").read_text())
    assert (meta["n"], meta["test_size"], meta["heldout_test"], meta["split"]) == (POOL, TEST, [POOL, POOL + TEST], "heldout")
    assert meta["test_seed"] == 3 + TEST_SEED_OFFSET
    assert sorted(meta["test_class_counts"].values()) == [5] * 8
    packed = np.load(heldout / "packed" / "images_u8.npy")
    labels = np.load(heldout / "packed" / "labels_i64.npy")
    assert packed.shape[0] == len(labels) == POOL + TEST
    assert labels[POOL:].tolist() == [i % 8 for i in range(TEST)]  # round-robin, balanced
    # the pool rows are exactly the studies' dataset of the same seed
    assert np.array_equal(packed[:POOL], np.load(study_split / "packed" / "images_u8.npy"))
    names = list(json.loads((heldout / "metadata.json").read_text()))
    assert len(names) == POOL + TEST and all(n.startswith("test_") for n in names[POOL:])
    assert len(list((heldout / "images").iterdir())) == POOL + TEST
    study = json.loads((study_split / "dataset.json").read_text())
    assert study["split"] == "80:10:10" and study["heldout_test"] is None
    # the studies' layout keeps its cache key, so caches built before are still found
    assert _spec().key == "pdf-varied-seed3-n96-32px-obs100-v2"
    assert _spec(test_size=TEST).key != _spec(test_size=TEST + 8).key != _spec(test_size=TEST, test_seed=9).key


def test_the_test_set_is_the_same_images_for_every_n_and_disjoint_from_train_and_val(heldout):
    pool_hashes = set(_image_hashes(load_packed(heldout, split="80:10:10"), "train"))
    first = load_packed(heldout, n=SIZES[0])
    test_hashes = _image_hashes(first, "test")
    assert len(set(test_hashes)) == TEST
    assert not set(test_hashes) & pool_hashes  # no test image anywhere in the pool
    for n in SIZES:
        data = load_packed(heldout, n=n)
        assert data.identity["split"] == "heldout" and len(data.splits["test"]) == TEST
        assert data.split_sha256("test") == first.split_sha256("test")
        assert _image_hashes(data, "test") == test_hashes
        assert torch.equal(data.split("test")[1], first.split("test")[1])
        seen = set(_image_hashes(data, "train")) | set(_image_hashes(data, "val"))
        assert not seen & set(test_hashes)
    assert first.split_sha256("val") != first.split_sha256("test")


def test_in_the_seed_preset_only_flat_uniform_plots_repeat_pixel_for_pixel():
    from xfer.data.pdf.families import FAMILY_NAMES
    from xfer.data.pdf.generate import row_key, sample_image
    from xfer.data.pdf.render import render_plot

    spec = _spec(preset="seed", test_size=TEST)
    hashes, families = [], []
    for row in range(spec.rows):
        seed, family_index, index, _ = row_key(spec, row)
        _, x, y = sample_image(spec, family_index, index, seed=seed)
        hashes.append(hashlib.sha256(render_plot(x, y, 32).tobytes()).hexdigest())
        families.append(FAMILY_NAMES[family_index])
    repeats = {families[row] for row in range(POOL, spec.rows) if hashes[row] in set(hashes[:POOL])}
    assert repeats <= {"uniform"}  # other drawn curves differ in pixels; only draws are disjoint


def test_an_explicit_test_seed_draws_other_disjoint_images(heldout, tmp_path):
    other, _ = write_dataset(_spec(n=16, test_size=16, test_seed=11), tmp_path / "o", workers=1)
    data = load_packed(other)
    assert data.identity["test_seed"] == 11
    test = set(_image_hashes(data, "test"))
    assert not test & set(_image_hashes(load_packed(heldout, n=16), "test"))
    assert not test & (set(_image_hashes(data, "train")) | set(_image_hashes(data, "val")))


def test_train_is_the_studies_80_percent_and_val_the_rest_of_n(heldout):
    for n in SIZES:
        data = load_packed(heldout, n=n)
        labels = np.arange(n) % 8
        study = stratified_split(labels, 3)
        if n >= 40:  # from 5 per class: the studies' train; their val and test shares validate
            assert np.array_equal(data.splits["train"], study["train"])
            assert np.array_equal(data.splits["val"], np.sort(np.concatenate([study["val"], study["test"]])))
        assert sorted(np.concatenate([data.splits["train"], data.splits["val"]]).tolist()) == list(range(n))
        assert np.bincount(data.split("val")[1].numpy(), minlength=8).min() >= 1  # every class validated
    assert {k: len(v) for k, v in load_packed(heldout, n=96).splits.items()} == {"train": 80, "val": 16, "test": 40}
    # 2 per class (n=16): one trains, one validates
    assert {k: len(v) for k, v in load_packed(heldout, n=16).splits.items()} == {"train": 8, "val": 8, "test": 40}


def test_the_pools_of_smaller_sizes_are_nested_in_larger_ones(heldout):
    previous: set[str] = set()
    for n in SIZES:
        data = load_packed(heldout, n=n)
        pool = set(_image_hashes(data, "train")) | set(_image_hashes(data, "val"))
        assert previous <= pool and len(pool) == n
        previous = pool


def test_the_80_10_10_option_reproduces_the_studies_split_exactly(heldout, study_split):
    for n in (48, 96):
        old = load_packed(study_split, n=n)
        new = load_packed(heldout, n=n, split="80:10:10")
        assert old.identity["split"] == new.identity["split"] == "80:10:10"
        assert torch.equal(old.images, new.images) and torch.equal(old.labels, new.labels)
        expected = stratified_split(np.arange(n) % 8, 3)
        for name in ("train", "val", "test"):
            assert np.array_equal(old.splits[name], expected[name])
            assert np.array_equal(new.splits[name], expected[name])
            assert old.split_sha256(name) == new.split_sha256(name)
    assert len(load_packed(study_split, n=96).splits["test"]) == 8  # shrinks with n, as in the study
    with pytest.raises(UsageError, match="no held-out test set"):
        load_packed(study_split, split="heldout")
    with pytest.raises(UsageError, match="unknown split"):
        load_packed(heldout, split="70:30")


def test_shared_arrays_are_viewed_and_take_matches_load_packed(heldout):
    images, labels, meta = read_packed_arrays(heldout)
    images.setflags(write=False)  # as from Ray's object store
    shared = from_arrays(images, labels, meta, n=48)
    assert shared.images.data_ptr() == images.ctypes.data  # no copy of the whole array
    for n in (16, 48):
        loaded = load_packed(heldout, n=n)
        for data in (from_arrays(images, labels, meta, n=n), shared.take(n), load_packed(heldout).take(n)):
            assert data.identity["n"] == n and data.identity["split"] == "heldout"
            for name in ("train", "val", "test"):
                assert data.split_sha256(name) == loaded.split_sha256(name)
    assert load_packed(heldout, n=48).images.shape[0] == 48 + TEST  # only the rows in play read
    for bad in (0, POOL + 1):
        with pytest.raises(UsageError, match="pool images"):
            load_packed(heldout, n=bad)
    with pytest.raises(UsageError, match="pool images"):
        load_packed(heldout, n=48).take(49)


def test_split_sha256_is_the_documented_digest_of_packed_rows(heldout):
    data = load_packed(heldout, n=48)
    packed = np.load(heldout / "packed" / "images_u8.npy")
    labels = np.load(heldout / "packed" / "labels_i64.npy")
    digest = hashlib.sha256(f"{TEST} 32x32x3 uint8 NHWC\n".encode())
    digest.update(packed[POOL:].tobytes())
    digest.update(labels[POOL:].astype("<i8").tobytes())
    assert data.split_sha256("test") == digest.hexdigest()


def test_pdf_data_counts_and_size_checks_for_both_splits(tmp_path):
    heldout, study = PdfData(image_size=32, test_size=TEST), PdfData(image_size=32, split="80:10:10")
    assert PdfData().split == "heldout" and PdfData().test_size == 1000
    for n in (40, 96, 1000):
        assert heldout.train_images(n) == study.train_images(n) == len(stratified_split(np.arange(n) % 8, 0)["train"])
        assert heldout.eval_images(n) == n - heldout.train_images(n) + TEST
        assert study.eval_images(n) == n - study.train_images(n)
    assert heldout.train_images(16) == 8 and study.train_images(16) == 16
    heldout.check_size(16)
    study.check_size(40)
    for source, bad in ((heldout, 15), (study, 39), (heldout, MAX_IMAGES + 1), (heldout, 20.0)):
        with pytest.raises(UsageError, match="dataset_size"):
            source.check_size(bad)
    path = heldout.prepare(tmp_path, 24)
    assert "test40" in path.name
    images, labels, meta = read_packed_arrays(path)
    data = from_arrays(images, labels, meta, n=24)
    assert len(data.splits["train"]) == heldout.train_images(24)
    assert len(data.splits["val"]) + len(data.splits["test"]) == heldout.eval_images(24)
    packed = PackedData(str(path))
    assert packed.train_images(24) == heldout.train_images(24) and packed.eval_images(24) == heldout.eval_images(24)
    study_path = study.prepare(tmp_path, 24)
    assert "test" not in study_path.name and load_packed(study_path).identity["split"] == "80:10:10"


@pytest.mark.parametrize("bad, expected", [
    (dict(test_size=MAX_IMAGES + 1), "at most 800000"), (dict(test_size=7), ">= 8"),
    (dict(test_size=-1), ">= 8"), (dict(test_seed=3), "must differ from --seed"),
    (dict(seed=TEST_SEED_OFFSET), "< 2\\^31"), (dict(n=MAX_IMAGES + 1), "at most 800000")])
def test_the_generators_bounds_are_usage_errors(bad, expected):
    with pytest.raises(UsageError, match=expected):
        _spec(**{"test_size": TEST, **bad}).validate()
    assert check_test_size(MAX_IMAGES) == MAX_IMAGES


# --- the command line -----------------------------------------------------------------------

@pytest.mark.slow
def test_xfer_data_pdf_writes_the_heldout_layout(tmp_path):
    out = tmp_path / "d"
    args = ["data", "pdf", "--n", "16", "--image-size", "32", "--test-size", "16", "--out", str(out)]
    done = xfer(*args)
    assert done.returncode == 0, done.stderr
    assert "+ 16 held-out test images" in done.stdout
    meta = json.loads((out / "dataset.json").read_text())
    assert (meta["heldout_test"], meta["test_seed"], meta["split"]) == ([16, 32], TEST_SEED_OFFSET, "heldout")
    assert np.load(out / "packed" / "labels_i64.npy").shape == (32,)
    again = xfer(*args)
    assert again.returncode == 0 and "exists, unchanged" in again.stdout
    other = xfer(*args[:-4], "--test-size", "24", "--out", str(out))
    assert other.returncode == 2 and "different dataset" in other.stderr
    study = xfer("data", "pdf", "--n", "16", "--image-size", "32", "--split", "80:10:10", "--out", str(tmp_path / "s"))
    assert study.returncode == 0, study.stderr
    assert np.load(tmp_path / "s" / "packed" / "labels_i64.npy").shape == (16,)


CLI_BAD = {
    "test size zero": (["--test-size", "0"], "--test-size"),
    "test size negative": (["--test-size", "-3"], "--test-size"),
    "test size below one per class": (["--test-size", "7"], "must be an integer >= 8"),
    "test size beyond the generator": (["--test-size", "800001"], "at most 800000"),
    "unknown split": (["--split", "70:30"], "invalid choice: '70:30'"),
    "test size with the studies' split": (["--split", "80:10:10", "--test-size", "100"], "--split heldout only"),
    "test seed equal to the seed": (["--seed", "4", "--test-seed", "4"], "must differ from --seed"),
}


@pytest.mark.parametrize("case", list(CLI_BAD))
@pytest.mark.slow
def test_bad_test_set_input_is_one_line_exit_2_and_writes_nothing(case, tmp_path):
    args, expected = CLI_BAD[case]
    done = xfer("data", "pdf", "--n", "16", "--image-size", "32", "--out", str(tmp_path / "d"), *args)
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr and expected in lines[0], done.stderr
    assert list(tmp_path.iterdir()) == []


# --- sweep options --------------------------------------------------------------------------

def _parse(argv: list[str], tmp_path: Path):
    from xfer.sweep.options import build_parser, parse_options

    parser = build_parser("pdf_grid.py", "test", ["smoke"], "smoke", "pdf_grid")
    return parse_options(parser, ["--storage", str(tmp_path / "runs"), "--cache-dir", str(tmp_path / "c"),
                                  "--gpus-per-trial", "0", *argv])


def test_sweep_flags_parse_and_override_the_presets_pdf_data(tmp_path):
    options = _parse(["--test-size", "500", "--split", "heldout"], tmp_path)
    assert (options.test_size, options.split) == (500, "heldout")
    assert (_parse([], tmp_path).test_size, _parse([], tmp_path).split) == (None, None)
    preset = PdfData(image_size=32)
    source = source_from_option(None, preset, test_size=500)
    assert (source.split, source.test_size, source.image_size) == ("heldout", 500, 32)
    assert source_from_option("pdf", preset, split="80:10:10").split == "80:10:10"
    assert source_from_option(None, preset) is preset
    with pytest.raises(UsageError, match="--split heldout only"):
        source_from_option(None, preset, split="80:10:10", test_size=500)
    with pytest.raises(SystemExit):
        _parse(["--split", "70:30"], tmp_path)
    for bad in ("7", str(MAX_IMAGES + 1)):
        with pytest.raises(UsageError, match="--test-size"):
            _parse(["--test-size", bad], tmp_path)


def test_sweep_flags_are_refused_for_other_data_with_one_line(tmp_path, heldout):
    for value, default in ((None, CifarData("cifar10")), ("cifar100", PdfData()), (None, FolderData()),
                           (str(heldout), PdfData())):
        for flags in ({"test_size": 500}, {"split": "80:10:10"}):
            with pytest.raises(UsageError, match="apply to generated PDF-plot data only") as raised:
                source_from_option(value, default, **flags)
            assert "\n" not in str(raised.value)
