"""The PDF-plot dataset: the study's families, determinism, nesting, balance, SPEC metadata,
splits, caching. The audit's tests are in test_pdf_audit.py."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from xfer.data.pdf.families import (FAMILY_NAMES, GAMMA_BETA_READINGS, PRESETS, SEED_PARAMETERS,
                                    VARIED_RANGES, family)
from xfer.data.pdf.generate import (PdfDatasetSpec, class_counts, ensure_dataset, image_key,
                                    plan, write_dataset)
from xfer.data.splits import stratified_split
from xfer.data.tensors import load_packed
from xfer.errors import UsageError


def _packed(root: Path) -> np.ndarray:
    return np.load(root / "packed" / "images_u8.npy")


@pytest.fixture(scope="module")
def seed40(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("data") / "seed40"
    write_dataset(PdfDatasetSpec(n=40, preset="seed", seed=3, image_size=32), out, workers=2)
    return out


@pytest.mark.parametrize("n", [8, 13, 100, 1000, 10000])
def test_class_counts_are_balanced_and_sum_to_n(n):
    counts = class_counts(n)
    assert sum(counts) == n and max(counts) - min(counts) <= 1
    assert [f for f, _ in plan(n)].count(0) == counts[0]


def test_class_counts_only_grow_with_n():
    for n in range(8, 200):
        assert all(a <= b for a, b in zip(class_counts(n), class_counts(n + 1)))


def test_metadata_has_exactly_the_spec_structure(seed40):
    metadata = json.loads((seed40 / "metadata.json").read_text())
    assert len(metadata) == 40
    for name, entry in metadata.items():
        assert set(entry) == {"label", "parameters", "values_parameters", "support", "values_support",
                              "gamma_beta"}
        assert entry["label"] in FAMILY_NAMES and name.startswith(entry["label"] + "_")
        assert list(entry["parameters"]) == list(STUDY_TABLE[entry["label"]]) and entry["gamma_beta"] == "rate"
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in entry["parameters"].items())
        assert len(entry["values_parameters"]) == len(entry["parameters"])
        assert list(entry["values_parameters"]) == list(SEED_PARAMETERS[entry["label"]])
        assert isinstance(entry["support"], str)
        assert len(entry["values_support"]) >= 90 and entry["values_support"] == sorted(entry["values_support"])
        with Image.open(seed40 / "images" / f"{name}.png") as image:
            assert image.mode == "RGB" and image.size == (32, 32)
    assert len(list((seed40 / "images").iterdir())) == 40
    dataset = json.loads((seed40 / "dataset.json").read_text())
    assert (dataset["preset"], dataset["seed"], dataset["n"], dataset["image_size"]) == ("seed", 3, 40, 32)
    assert (dataset["gamma_beta"], dataset["tick_labels"]) == ("rate", True)
    assert sorted(dataset["class_counts"].values()) == [5] * 8


def test_png_and_packed_cache_hold_the_same_pixels(seed40):
    packed = _packed(seed40)
    names = list(json.loads((seed40 / "metadata.json").read_text()))
    for position in (0, 7, 39):
        assert np.array_equal(np.asarray(Image.open(seed40 / "images" / f"{names[position]}.png")),
                              packed[position])


def test_images_are_plots_not_blank(seed40):
    packed = _packed(seed40)
    white = (packed == 255).all(-1).mean(axis=(1, 2))
    blue = (packed[..., 2].astype(int) - packed[..., 0] > 60).mean(axis=(1, 2))  # C0 line
    assert (white > 0.5).all() and (white < 0.99).all()
    assert (blue > 0.002).all()


def test_same_seed_same_bytes_whatever_the_worker_count(seed40, tmp_path):
    again, reused = write_dataset(PdfDatasetSpec(n=40, preset="seed", seed=3, image_size=32),
                                  tmp_path / "again", workers=1)
    assert not reused
    assert np.array_equal(_packed(seed40), _packed(again))
    assert (seed40 / "metadata.json").read_text() == (again / "metadata.json").read_text()
    fingerprint = lambda d: json.loads((d / "dataset.json").read_text())["packed"]["images_sha256"]
    assert fingerprint(seed40) == fingerprint(again)


def test_other_seed_gives_other_images(seed40, tmp_path):
    other, _ = write_dataset(PdfDatasetSpec(n=40, preset="seed", seed=4, image_size=32), tmp_path / "o", workers=1)
    assert not np.array_equal(_packed(seed40), _packed(other))


def test_smaller_dataset_is_a_stratified_prefix_of_a_larger_one(seed40, tmp_path):
    small, _ = write_dataset(PdfDatasetSpec(n=13, preset="seed", seed=3, image_size=32), tmp_path / "s", workers=1)
    assert np.array_equal(_packed(small), _packed(seed40)[:13])
    small_meta = json.loads((small / "metadata.json").read_text())
    large_meta = json.loads((seed40 / "metadata.json").read_text())
    assert small_meta == {k: large_meta[k] for k in small_meta}
    loaded = load_packed(seed40, n=13)
    assert np.array_equal(loaded.images.permute(0, 2, 3, 1).numpy(), _packed(small))
    counts = np.bincount(loaded.labels.numpy(), minlength=8)
    assert counts.max() - counts.min() <= 1


def test_varied_preset_draws_parameters_inside_the_documented_ranges():
    for position in range(200):
        family_index, index = image_key(position)
        name = FAMILY_NAMES[family_index]
        values = PRESETS["varied"](name, np.random.default_rng([position]))
        ranges = VARIED_RANGES[name]
        if name == "uniform":
            values = (values[0], values[1] - values[0])
        assert all(lo <= v <= hi for v, (lo, hi) in zip(values, ranges))


def test_splits_are_stratified_disjoint_and_deterministic():
    labels = np.repeat(np.arange(8), 125)
    split = stratified_split(labels, seed=0)
    assert sorted(np.concatenate(list(split.values())).tolist()) == list(range(1000))
    # 125 per class: 12.5 rounds up to 13 for val and test, 99 train
    assert {k: len(v) for k, v in split.items()} == {"train": 792, "val": 104, "test": 104}
    for part in split.values():
        counts = np.bincount(labels[part], minlength=8)
        assert counts.max() - counts.min() <= 1
    again = stratified_split(labels, seed=0)
    assert all(np.array_equal(split[k], again[k]) for k in split)
    assert not np.array_equal(split["test"], stratified_split(labels, seed=1)["test"])


def test_load_packed_gives_uint8_nchw_with_splits(seed40):
    data = load_packed(seed40)
    assert data.images.dtype == torch.uint8 and data.images.shape == (40, 3, 32, 32)
    assert data.classes == list(FAMILY_NAMES) and data.num_classes == 8
    assert sum(len(v) for v in data.splits.values()) == 40
    assert data.identity["preset"] == "seed" and data.identity["n"] == 40
    with pytest.raises(ValueError):
        load_packed(seed40, n=41)


def test_existing_identical_dataset_is_reused_and_a_different_one_refused(seed40):
    _, reused = write_dataset(PdfDatasetSpec(n=40, preset="seed", seed=3, image_size=32), seed40)
    assert reused
    with pytest.raises(UsageError, match="different dataset"):
        write_dataset(PdfDatasetSpec(n=40, preset="seed", seed=9, image_size=32), seed40)


def test_ensure_dataset_builds_once_under_concurrency(tmp_path, monkeypatch):
    import xfer.data.pdf.generate as generate

    builds = []
    real_build = generate._build
    monkeypatch.setattr(generate, "_build", lambda *a, **k: (builds.append(1), real_build(*a, **k)))
    spec = PdfDatasetSpec(n=16, preset="seed", image_size=32)
    paths = []
    threads = [threading.Thread(target=lambda: paths.append(ensure_dataset(tmp_path, spec, workers=1)))
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(builds) == 1 and len(set(paths)) == 1 and len(paths) == 4
    assert load_packed(paths[0]).images.shape[0] == 16


def test_a_killed_build_is_never_used_and_is_rebuilt(tmp_path):
    spec = PdfDatasetSpec(n=16, preset="seed", image_size=32)
    target = tmp_path / spec.key
    leftover = tmp_path / f".{spec.key}.partial-123-abcdef12"
    (leftover / "images").mkdir(parents=True)
    (target / "packed").mkdir(parents=True)  # a folder with no dataset.json: incomplete
    (target / "metadata.json").write_text("{}")
    with pytest.raises(FileNotFoundError):
        load_packed(target)
    path = ensure_dataset(tmp_path, spec, workers=1)
    assert path == target and not leftover.exists()
    assert load_packed(path).images.shape[0] == 16


def test_a_failed_build_leaves_nothing_behind(tmp_path, monkeypatch):
    import xfer.data.pdf.generate as generate

    def explode(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(generate, "_render_chunk", explode)
    with pytest.raises(RuntimeError):
        write_dataset(PdfDatasetSpec(n=16, image_size=32), tmp_path / "out", workers=1)
    assert list(tmp_path.iterdir()) == []


# --- the families as the study's table gives them ---------------------------------------------

# The PDF study's table (shared/studies/000): each family's parameter names, in the table's
# order (lower case; chi2's "Degrees of freedom" is df), and the values its text selects.
STUDY_TABLE = {
    "beta": {"alpha": 1.5, "beta": 0.5},
    "chi2": {"df": 3.0},
    "exponential": {"scale": 0.5},
    "gamma": {"alpha": 1.5, "beta": 0.5},
    "laplace": {"location": 0.0, "scale": 0.5},
    "normal": {"location": 0.0, "scale": 0.5},
    "uniform": {"a": 0.0, "b": 1.0},
    "weibull": {"scale": 0.5, "shape": 1.0},
}


def _scipy(name: str, values, gamma_beta: str):
    """The family as scipy.stats writes it, from the study's parameters in the table's order."""
    from scipy import stats

    a = values
    return {"beta": lambda: stats.beta(a[0], a[1]),
            "chi2": lambda: stats.chi2(a[0]),
            "exponential": lambda: stats.expon(scale=a[0]),
            # beta a rate: density x^(alpha-1) e^(-beta x), scipy's scale 1/beta; else beta is the scale
            "gamma": lambda: stats.gamma(a[0], scale=1 / a[1] if gamma_beta == "rate" else a[1]),
            "laplace": lambda: stats.laplace(loc=a[0], scale=a[1]),
            "normal": lambda: stats.norm(loc=a[0], scale=a[1]),
            "uniform": lambda: stats.uniform(a[0], a[1] - a[0]),
            "weibull": lambda: stats.weibull_min(c=a[1], scale=a[0])}[name]()  # (scale, shape)


def test_seed_parameters_and_parameter_names_are_the_study_table():
    assert FAMILY_NAMES == tuple(STUDY_TABLE)
    for name, table in STUDY_TABLE.items():
        assert SEED_PARAMETERS[name] == tuple(table.values()), name
        for reading in GAMMA_BETA_READINGS:
            assert family(name, reading).param_names == tuple(table), name


@pytest.mark.parametrize("gamma_beta", GAMMA_BETA_READINGS)
@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_density_quantile_and_sampler_equal_scipy_with_the_study_parameters(name, gamma_beta):
    from scipy import stats

    fam = family(name, gamma_beta)
    varied = PRESETS["varied"](name, np.random.default_rng(7))
    for values in (SEED_PARAMETERS[name], varied):
        dist = _scipy(name, values, gamma_beta)
        x = np.sort(fam.sample(np.random.default_rng(0), 2000, *values))
        inside = x[(x > dist.ppf(0)) & (x < dist.ppf(1))]  # beta's and gamma's pdf is infinite at 0
        assert np.allclose(fam.pdf(inside, *values), dist.pdf(inside), rtol=1e-9, atol=0), values
        p = np.array([0.001, 0.01, 0.3, 0.5, 0.99, 0.999])
        assert np.allclose(fam.ppf(p, *values), dist.ppf(p), rtol=1e-9), values
        # the sampler draws from the same distribution: a KS test at a generous level
        assert stats.kstest(x, dist.cdf).pvalue > 1e-4, values


def test_the_two_gamma_readings_are_the_study_table_read_two_ways():
    # beta a rate: gamma(1.5, 0.5) is chi2(3); beta a scale: chi2(3) shrunk 4x
    x = np.linspace(0.05, 8, 50)
    rate, scale = family("gamma", "rate"), family("gamma", "scale")
    chi2 = family("chi2")
    assert np.allclose(rate.pdf(x, 1.5, 0.5), chi2.pdf(x, 3.0), rtol=1e-12)
    assert np.allclose(scale.pdf(x / 4, 1.5, 0.5) / 4, chi2.pdf(x, 3.0), rtol=1e-12)
    # weibull with shape 1 is the exponential of the same scale
    assert np.allclose(family("weibull").pdf(x, 0.5, 1.0), family("exponential").pdf(x, 0.5), rtol=1e-12)


def test_an_unknown_gamma_reading_is_a_usage_error():
    with pytest.raises(UsageError, match="gamma-beta"):
        family("gamma", "bogus")
    with pytest.raises(UsageError, match="gamma-beta"):
        PdfDatasetSpec(n=8, gamma_beta="bogus").validate()


def test_dataset_records_its_gamma_reading_and_tick_labels(tmp_path):
    out, _ = write_dataset(PdfDatasetSpec(n=16, preset="seed", image_size=32, gamma_beta="scale",
                                          tick_labels=False), tmp_path / "d", workers=1)
    dataset = json.loads((out / "dataset.json").read_text())
    assert (dataset["gamma_beta"], dataset["tick_labels"]) == ("scale", False)
    metadata = json.loads((out / "metadata.json").read_text())
    assert {e["gamma_beta"] for e in metadata.values()} == {"scale"}
    gamma = next(e for e in metadata.values() if e["label"] == "gamma")
    weibull = next(e for e in metadata.values() if e["label"] == "weibull")
    assert (list(gamma["parameters"]), gamma["values_parameters"]) == (["alpha", "beta"], [1.5, 0.5])
    assert (list(weibull["parameters"]), weibull["values_parameters"]) == (["scale", "shape"], [0.5, 1.0])
    # gamma(1.5, scale 0.5) draws chi2(3) / 4: its observations are a quarter of chi2's in size
    chi2 = [v for e in metadata.values() if e["label"] == "chi2" for v in e["values_support"]]
    assert 2 < np.median(chi2) / np.median(gamma["values_support"]) < 8
    # no tick labels: white left of and below the frame, where tick marks and labels would be
    pixels = _packed(out)
    outside = np.concatenate([pixels[:, :, :3].reshape(len(pixels), -1, 3),
                              pixels[:, -2:].reshape(len(pixels), -1, 3)], axis=1)
    assert (outside == 255).all()
