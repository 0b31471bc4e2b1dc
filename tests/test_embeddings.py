"""xfer.embeddings: stage features come from the right modules and leave the model as it was;
the silhouette score tells separated clusters from noise; embeddings, figures and the result
dict are deterministic, small and strict JSON; a fit embeds its test set with both methods.

CPU only, no downloads. Structure checks build on the meta device (milliseconds even for
vgg19); forward passes run at 32-64 px on a handful of images. t-SNE runs on <= 60 points.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch

from xfer.batches import BatchPrep
from xfer.embeddings import (METHOD_CHOICES, STAGES, embed_2d, embed_stages, methods_of, separation,
                             stage_features, stage_modules, stages_by_method, stratified_subsample)
from xfer.errors import UsageError
from xfer.models import MODEL_NAMES, create_model, set_train_mode
from xfer.report.trial_figures import plot_embedding, plot_stages
from xfer.train import TrialConfig, fit

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# Pooled channel counts per stage for the models that run a forward pass below.
FORWARD_DIMS = {"resnet10": (64, 256, 512), "small_cnn": (32, 32, 64),
                "efficientnet_b0": (24, 112, 1280)}


def _prep(size: int) -> BatchPrep:
    return BatchPrep([0.5] * 3, [0.25] * 3, size, device=torch.device("cpu"))


def _images(n: int, size: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=generator)


def _clusters(n_per_class: int, n_classes: int, dim: int, spread: float, seed: int = 0):
    """Gaussian blobs: centres ``spread`` apart (in units of the within-class std)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_classes, dim)) * spread
    labels = np.repeat(np.arange(n_classes), n_per_class)
    return (centres[labels] + rng.normal(size=(len(labels), dim))).astype(np.float32), labels


# --- stage_modules ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", MODEL_NAMES)
def test_stage_modules_name_real_modules_of_every_model(name):
    with torch.device("meta"):
        model = create_model(name, 3)
    modules = stage_modules(name)
    assert tuple(modules) == STAGES
    named = dict(model.named_modules())
    for stage, module_name in modules.items():
        assert module_name in named, f"{name} {stage}: no module {module_name}"
    # early, middle, late in forward order: named_modules lists parents before children, so
    # compare the position of each stage's last descendant.
    order = list(named)
    ends = [max(i for i, key in enumerate(order) if key == m or key.startswith(m + "."))
            for m in modules.values()]
    assert ends == sorted(ends) and len(set(ends)) == 3


def test_unknown_model_lists_the_valid_ones():
    with pytest.raises(UsageError, match="unknown model 'resnet34'.*resnet152.*vgg19"):
        stage_modules("resnet34")


# --- stage_features --------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(FORWARD_DIMS))
@pytest.mark.slow  # over 4 s of CPU
def test_stage_features_pool_each_stage_and_leave_the_model_as_it_was(name):
    torch.manual_seed(0)
    size = 64 if name != "small_cnn" else 32
    model = create_model(name, 3, train_layers="last_block")
    set_train_mode(model, "last_block")  # a mix: frozen parts in eval, the rest in train
    modes = {key: module.training for key, module in model.named_modules()}
    assert len(set(modes.values())) == 2
    images = _images(5, size)

    features = stage_features(model, name, images, _prep(size), batch_size=2)

    assert list(features) == list(STAGES)
    for stage, dim in zip(STAGES, FORWARD_DIMS[name]):
        assert features[stage].shape == (5, dim) and features[stage].dtype == np.float32
        assert np.isfinite(features[stage]).all()
    assert {key: module.training for key, module in model.named_modules()} == modes
    assert all(not module._forward_hooks for module in model.modules())
    # Eval mode: a batch of 2 and a batch of 5 give the same features (train-mode BatchNorm
    # would normalise each batch by its own statistics).
    whole = stage_features(model, name, images, _prep(size), batch_size=5)
    for stage in STAGES:
        np.testing.assert_allclose(features[stage], whole[stage], rtol=1e-4, atol=1e-5)


def test_late_features_are_the_global_average_of_the_late_module():
    torch.manual_seed(0)
    model = create_model("resnet10", 3).eval()
    images, prep = _images(4, 64), _prep(64)
    features = stage_features(model, "resnet10", images, prep)
    with torch.no_grad():
        x = prep(images)
        x = model.maxpool(model.relu(model.bn1(model.conv1(x))))
        late = model.layer4(model.layer3(model.layer2(model.layer1(x)))).mean(dim=(2, 3))
    np.testing.assert_allclose(features["late"], late.numpy(), rtol=1e-4, atol=1e-5)


def test_hooks_are_removed_when_the_forward_fails():
    model = create_model("small_cnn", 3)
    bad_prep = lambda batch: batch.float()[:, :2]  # two channels: the first conv fails
    with pytest.raises(RuntimeError):
        stage_features(model, "small_cnn", _images(2, 32), bad_prep)
    assert all(not module._forward_hooks for module in model.modules())
    assert model.training


def test_stage_features_refuses_a_model_that_is_not_the_named_one():
    with torch.device("meta"):
        model = create_model("small_cnn", 3)
    with pytest.raises(ValueError, match="no module layer1"):
        stage_features(model, "resnet18", _images(2, 32), _prep(32))


# --- separation ------------------------------------------------------------------------------

def test_separation_is_high_for_separated_clusters_and_near_zero_for_random_labels():
    features, labels = _clusters(40, 4, 32, spread=4.0)
    assert separation(features, labels) > 0.5
    shuffled = np.random.default_rng(1).permutation(labels)
    assert abs(separation(features, shuffled)) < 0.05
    # The scale of one channel does not decide the score: features are standardised.
    loud = features.copy()
    loud[:, 0] *= 1e4
    assert separation(loud, labels) == pytest.approx(separation(features, labels), abs=1e-6)


def test_separation_is_nan_when_undefined():
    features, labels = _clusters(5, 2, 4, spread=3.0)
    assert np.isnan(separation(features, np.zeros(10, int)))  # one class
    assert np.isnan(separation(features[:2], labels[[0, 5]]))  # n == number of classes
    with pytest.raises(ValueError, match="labels"):
        separation(features, labels[:3])


# --- embed_2d --------------------------------------------------------------------------------

@pytest.mark.slow  # over 4 s of CPU
def test_tsne_is_deterministic_per_seed_and_keeps_clusters_apart():
    features, labels = _clusters(15, 3, 16, spread=5.0)
    first = embed_2d(features, seed=3)
    assert first.shape == (45, 2) and first.dtype == np.float32 and np.isfinite(first).all()
    np.testing.assert_array_equal(first, embed_2d(features, seed=3))
    assert separation(first, labels) > 0.5


def test_embed_2d_small_inputs():
    features, _ = _clusters(2, 2, 3, spread=3.0)
    assert embed_2d(features, seed=0).shape == (4, 2)  # perplexity 2 < n
    assert embed_2d(features[:, :1], seed=0).shape == (4, 2)  # 1 column: random init
    with pytest.raises(ValueError, match="at least 4 points"):
        embed_2d(features[:3])
    with pytest.raises(ValueError, match="N×C"):
        embed_2d(features[:, 0])


def test_unknown_method_lists_the_valid_ones():
    with pytest.raises(UsageError, match="'pca'.*tsne, umap"):
        embed_2d(np.zeros((8, 2)), method="pca")


def test_umap_without_umap_learn_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "umap", None)  # `import umap` raises ImportError
    with pytest.raises(UsageError, match=r"needs umap-learn, a dependency of xfer missing here: "
                                         r"pip install umap-learn"):
        embed_2d(np.random.default_rng(0).normal(size=(10, 3)), method="umap")


@pytest.mark.slow  # over 4 s of CPU
def test_umap_is_installed_deterministic_per_seed_and_keeps_clusters_apart():
    # umap-learn is a dependency (pinned in constraints.txt). The first UMAP call in a process
    # compiles numba kernels: ~15-20 s on 2 cores; later calls on 45 points take ~0.1 s.
    import umap  # noqa: F401  (fails here, not deep inside a run, when the install lacks it)

    features, labels = _clusters(15, 3, 16, spread=5.0)
    first = embed_2d(features, method="umap", seed=3)
    assert first.shape == (45, 2) and first.dtype == np.float32 and np.isfinite(first).all()
    np.testing.assert_array_equal(first, embed_2d(features, method="umap", seed=3))
    assert separation(first, labels) > 0.5
    assert embed_2d(features[:4], method="umap", seed=0).shape == (4, 2)  # the smallest n


@pytest.mark.slow  # numba's compilation: ~17 s of CPU
def test_tsne_and_umap_embed_the_same_features_in_one_run(blobs):
    # A whole fit, here beside the UMAP test above: they share the process's numba compilation
    # (~17 s on 2 cores), which each paid in its own file before.
    config = TrialConfig(data=str(blobs), model="small_cnn", epochs=1, batch_size=16, lr=0.05,
                         device="cpu", embeddings="tsne+umap")
    result = fit(config, lambda m: None)  # all 16 test images
    embedded = result["embeddings"]
    assert embedded["method"] == "tsne" and embedded["methods"] == ["tsne", "umap"]
    for stage in embedded["stages"].values():
        umap = stage["by_method"]["umap"]
        assert len(umap["points"]) == len(stage["points"]) == len(stage["labels"]) == result["n_test"]
        assert umap["points"] != stage["points"]
    json.dumps(result["embeddings"], allow_nan=False)


def test_methods_of():
    assert methods_of("tsne") == ("tsne",) and methods_of("umap") == ("umap",)
    assert methods_of("tsne+umap") == ("tsne", "umap")
    assert METHOD_CHOICES == ("tsne", "umap", "tsne+umap")
    with pytest.raises(UsageError, match=r"unknown embedding method 'umap\+tsne' \(valid: tsne, umap, tsne\+umap\)"):
        methods_of("umap+tsne")


# --- figures ---------------------------------------------------------------------------------

@pytest.mark.parametrize("n_classes", [3, 25])  # with a legend, and too many classes for one
def test_plot_embedding_writes_a_png(tmp_path, n_classes):
    rng = np.random.default_rng(0)
    labels = np.arange(60) % n_classes
    path = plot_embedding(rng.normal(size=(60, 2)), labels, [f"c{i}" for i in range(n_classes)],
                          tmp_path / "e.png", title="t")
    assert path == tmp_path / "e.png"
    assert path.read_bytes()[:8] == PNG_MAGIC and path.stat().st_size > 2000


# --- stratified subsample and embed_stages ---------------------------------------------------

def test_stratified_subsample_keeps_class_shares_and_is_seeded():
    labels = np.array([0] * 70 + [1] * 20 + [2] * 7 + [3] * 3)
    rng = np.random.default_rng(5)
    labels = rng.permutation(labels)
    keep = stratified_subsample(labels, 31, seed=0)
    assert len(keep) == 31 and len(np.unique(keep)) == 31 and np.all(np.diff(keep) > 0)
    counts = np.bincount(labels[keep], minlength=4)
    assert np.all(np.abs(counts - 31 * np.array([70, 20, 7, 3]) / 100) < 1)
    np.testing.assert_array_equal(keep, stratified_subsample(labels, 31, seed=0))
    assert not np.array_equal(keep, stratified_subsample(labels, 31, seed=1))
    np.testing.assert_array_equal(stratified_subsample(labels, 500, seed=0), np.arange(100))


@pytest.mark.slow  # over 4 s of CPU
def test_embed_stages_is_strict_json_respects_max_points_and_plots(tmp_path):
    torch.manual_seed(0)
    model = create_model("small_cnn", 3)
    labels = torch.tensor([0] * 30 + [1] * 20 + [2] * 10)
    images = _images(60, 32)
    classes = ["circle", "square", "triangle"]

    result = embed_stages(model, "small_cnn", images, labels, classes, _prep(32),
                          max_points=30, seed=1, batch_size=16)

    decoded = json.loads(json.dumps(result, allow_nan=False))
    assert decoded == result
    assert result["method"] == "tsne" and result["n"] == 30 and result["model"] == "small_cnn"
    assert result["methods"] == ["tsne"]
    assert all("by_method" not in entry for entry in result["stages"].values())
    assert list(result["stages"]) == list(STAGES)
    for stage, dim in zip(STAGES, FORWARD_DIMS["small_cnn"]):
        entry = result["stages"][stage]
        assert entry["module"] == stage_modules("small_cnn")[stage] and entry["dim"] == dim
        assert len(entry["points"]) == 30 and all(len(p) == 2 for p in entry["points"])
        assert np.bincount(entry["labels"]).tolist() == [15, 10, 5]
        for key in ("silhouette_features", "silhouette_2d"):
            assert -1 <= entry[key] <= 1
    assert model.training  # restored
    again = embed_stages(model, "small_cnn", images, labels, classes, _prep(32),
                         max_points=30, seed=1, batch_size=16)
    assert again == result

    paths = plot_stages(result, classes, tmp_path / "figs")
    assert [p.name for p in paths] == [f"embedding_{s}.png" for s in STAGES]
    assert all(p.read_bytes()[:8] == PNG_MAGIC for p in paths)


@pytest.mark.slow  # over 3 s of CPU
def test_embed_stages_reports_none_for_an_undefined_silhouette():
    torch.manual_seed(0)
    model = create_model("small_cnn", 2)
    result = embed_stages(model, "small_cnn", _images(6, 32), np.zeros(6, int), ["only", "other"],
                          _prep(32))
    assert all(entry["silhouette_features"] is None and entry["silhouette_2d"] is None
               for entry in result["stages"].values())
    json.dumps(result, allow_nan=False)


@pytest.mark.slow  # over 4 s of CPU
def test_tsne_and_umap_share_the_features_and_keep_the_single_method_layout(tmp_path):
    torch.manual_seed(0)
    model = create_model("small_cnn", 3)
    labels = torch.tensor([0] * 10 + [1] * 10 + [2] * 10)
    images = _images(30, 32)
    classes = ["circle", "square", "triangle"]

    both = embed_stages(model, "small_cnn", images, labels, classes, _prep(32), method="tsne+umap",
                        seed=1)
    tsne = embed_stages(model, "small_cnn", images, labels, classes, _prep(32), seed=1)

    assert json.loads(json.dumps(both, allow_nan=False)) == both
    assert both["method"] == "tsne" and both["methods"] == ["tsne", "umap"]
    for stage in STAGES:
        entry, alone = both["stages"][stage], tsne["stages"][stage]
        # The first method's points sit where a t-SNE-only result has them: old readers work.
        assert {k: v for k, v in entry.items() if k != "by_method"} == alone
        assert set(entry["by_method"]) == {"umap"}
        umap = entry["by_method"]["umap"]
        assert set(umap) == {"points", "silhouette_2d"} and len(umap["points"]) == 30
        assert umap["points"] != entry["points"] and -1 <= umap["silhouette_2d"] <= 1
    views = stages_by_method(both)
    assert list(views) == ["tsne", "umap"]
    assert views["umap"]["late"]["points"] == both["stages"]["late"]["by_method"]["umap"]["points"]
    assert views["umap"]["late"]["silhouette_features"] == both["stages"]["late"]["silhouette_features"]
    assert stages_by_method(tsne) == {"tsne": tsne["stages"]}
    old = {k: v for k, v in tsne.items() if k != "methods"}  # written before issue 15
    assert stages_by_method(old) == {"tsne": tsne["stages"]}

    paths = plot_stages(both, classes, tmp_path)
    assert [p.name for p in paths] == ([f"embedding_{s}.png" for s in STAGES]
                                       + [f"embedding_{s}_umap.png" for s in STAGES])
    assert all(p.read_bytes()[:8] == PNG_MAGIC for p in paths)

    # The report's grid: one row per (group, method), the caption names both methods.
    import pandas as pd
    from PIL import Image

    from xfer.report.sections import separation_section

    best = pd.DataFrame([{"model": "small_cnn", "condition": c, "test_accuracy": 0.5,
                          "test_accuracy_ci_low": 0.4, "test_accuracy_ci_high": 0.6,
                          **{f"silhouette_{s}_{k}": 0.1 for s in STAGES for k in ("features", "2d")}}
                         for c in ("pretrained", "scratch")])
    groups = {"small_cnn pretrained": both, "small_cnn scratch": old}
    lines = separation_section(best, groups, classes, tmp_path)
    text = "\n".join(lines)
    assert "![embeddings](embeddings.png)" in text and "t-SNE and UMAP" in text
    with Image.open(tmp_path / "embeddings.png") as image:  # 3 rows: 2 + 1, of 2.7 in at 150 dpi
        assert image.size[1] == pytest.approx(3 * 2.7 * 150, abs=2)
    single = separation_section(best, {"small_cnn scratch": old}, classes, tmp_path)
    assert "t-SNE of the test-set features" in "\n".join(single)
