"""2-D embeddings of a trained model's early, middle and late features, plus a number for them.

The probe-regimes study asks *where* pretraining helps: does a linear probe on ImageNet
features already separate the classes, and which stage does fine-tuning change? After ``fit``
the trainer calls :func:`embed_stages` on (a subsample of) the test set: one forward pass
records three stages' features, each is embedded in 2-D (t-SNE, UMAP, or both on the same
features: method ``"tsne+umap"``, as the study shows both) and scored with the silhouette
coefficient, both in feature space and in 2-D, so a figure is never the only evidence.
``xfer.report.trial_figures.plot_stages`` draws one figure per stage and method.

The stages, per model (module names as in ``model.named_modules()``). The middle stage is the
input of ``train_layers="last_block"`` (see ``xfer.models``), i.e. what a last-block
fine-tune starts from; the late stage is what the head sees; the early stage ends the first
downsampling stage after the stem (stride 4, except small_cnn and inception):

=============== ================ ================ ================ ==================================
model           early            middle           late             shapes at 224 px (299 inception)
=============== ================ ================ ================ ==================================
resnet*         ``layer1``       ``layer3``       ``layer4``       C×56², C×14², C×7²
vgg19           ``features.9``   ``features.27``  ``features.36``  max-pools 2, 4, 5: 128×56², 512×14²,
                                                                   512×7²
alexnet         ``features.2``   ``features.5``   ``features.12``  max-pools 1, 2, 3: 64×27², 192×13²,
                                                                   256×6²
efficientnet_b0 ``features.2``   ``features.5``   ``features.8``   24×56², 112×14², 1280×7²
inception_v3    ``Mixed_5d``     ``Mixed_6e``     ``Mixed_7c``     288×35², 768×17², 2048×8²
small_cnn       ``features.0.1`` ``features.0``   ``features.1``   first conv's ReLU (full size),
                                                                   conv blocks 1 and 2: 32, 32, 64 C
=============== ================ ================ ================ ==================================

(resnet C: 64/256/512 for resnet10/18, 256/1024/2048 for resnet50/152.) Each stage's output
is globally average-pooled to N×C: spatial layout is discarded, which is what a GAP head sees.

Cost, measured on 2 CPU cores (scikit-learn 1.9): the forward pass is one inference pass over
the subsample. t-SNE (Barnes-Hut, O(n log n) per iteration, 1,000 iterations) takes ~5 s for
2,000 points, nearly independent of the feature width (64 or 2,048), so ~15 s for the three
stages; the exact k-NN search it starts with is O(n²·C) but only ~0.1 s at that size. End to
end, :func:`embed_stages` on 2,000 of 3,000 32-px images with resnet18 took 19 s. The
silhouette score is O(n²·C) time and holds an n×n distance matrix: 32 MB at 2,000 points,
which is why ``max_points`` caps n (it grows 4× per doubling). UMAP (umap-learn 0.5.12, exact
k-NN below 4,096 points) takes 6-8 s per stage for 2,000 points on the same 2 cores, after a
one-off ~15-20 s per process in which numba compiles its kernels; ``"tsne+umap"`` shares the
forward pass and the feature silhouettes, so it costs the two embeddings' time and no more.
"""

from __future__ import annotations

import importlib
from typing import Callable

import numpy as np
import torch
from torch import nn

from xfer.errors import UsageError, choice_error
from xfer.models import MODEL_NAMES

STAGES = ("early", "middle", "late")
METHODS = ("tsne", "umap")
# What ``embed_stages(method=...)`` and TrialConfig.embeddings accept: one method, or both.
METHOD_CHOICES = METHODS + ("tsne+umap",)
MIN_EMBED_POINTS = 4  # below this t-SNE has no neighbourhoods to preserve (perplexity >= 2)

_RESNET_STAGES = {"early": "layer1", "middle": "layer3", "late": "layer4"}
_STAGE_MODULES = {
    "alexnet": {"early": "features.2", "middle": "features.5", "late": "features.12"},
    "vgg19": {"early": "features.9", "middle": "features.27", "late": "features.36"},
    "efficientnet_b0": {"early": "features.2", "middle": "features.5", "late": "features.8"},
    "inception_v3": {"early": "Mixed_5d", "middle": "Mixed_6e", "late": "Mixed_7c"},
    "small_cnn": {"early": "features.0.1", "middle": "features.0", "late": "features.1"},
    **{name: _RESNET_STAGES for name in ("resnet10", "resnet18", "resnet50", "resnet152")},
    # timm's EfficientNet-Lite: the same cuts as efficientnet_b0 (24, 112 and 1280 channels)
    **{name: {"early": "blocks.1", "middle": "blocks.4", "late": "bn2"}
       for name in ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")},
}


def stage_modules(model_name: str) -> dict[str, str]:
    """``{"early": module_name, "middle": ..., "late": ...}`` for ``model_name`` (table above)."""
    if model_name not in MODEL_NAMES:
        raise choice_error("model", model_name, MODEL_NAMES)
    return dict(_STAGE_MODULES[model_name])


# --- features --------------------------------------------------------------------------------

def _model_device(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def stage_features(model: nn.Module, model_name: str, images_u8: torch.Tensor,
                   prep: Callable[[torch.Tensor], torch.Tensor], *, batch_size: int = 256,
                   device: torch.device | str | None = None) -> dict[str, np.ndarray]:
    """Each stage's output, globally average-pooled: ``{stage: N×C float32}``.

    One inference pass over ``images_u8`` (N×3×H×W uint8, any device; batches are moved to
    ``device``, by default the model's) in eval mode. ``prep`` turns a uint8 batch into the
    model input (``xfer.batches.BatchPrep``, without augmentation). Pooling happens inside
    the hook, so only N×C per stage is kept, and in-place ops downstream cannot alter it.
    The hooks are removed and every sub-module's train/eval flag is restored afterwards
    (``set_train_mode`` leaves frozen parts in eval under a training parent).
    """
    names = stage_modules(model_name)
    if images_u8.ndim != 4 or images_u8.dtype != torch.uint8:
        raise ValueError(f"images_u8 must be an N×3×H×W uint8 tensor, got "
                         f"{images_u8.dtype} of shape {tuple(images_u8.shape)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    modules = dict(model.named_modules())
    missing = [name for name in names.values() if name not in modules]
    if missing:
        raise ValueError(f"model has no module {', '.join(missing)}: is it a {model_name}?")
    device = torch.device(device) if device is not None else _model_device(model)

    chunks: dict[str, list[torch.Tensor]] = {stage: [] for stage in names}

    def hook_for(stage: str):
        def hook(module: nn.Module, inputs: object, output: object) -> None:
            if not isinstance(output, torch.Tensor):
                raise TypeError(f"{names[stage]} returned {type(output).__name__}, not a tensor")
            pooled = output.mean(dim=tuple(range(2, output.ndim))) if output.ndim > 2 else output
            chunks[stage].append(pooled.float())  # stays on the device: no sync per batch
        return hook

    modes = {module: module.training for module in model.modules()}
    handles = [modules[name].register_forward_hook(hook_for(stage))
               for stage, name in names.items()]
    try:
        model.eval()
        with torch.inference_mode():
            for start in range(0, len(images_u8), batch_size):
                batch = images_u8[start:start + batch_size].to(device, non_blocking=True)
                model(prep(batch))  # the output (a tensor, or a namedtuple in train) is unused
    finally:
        for handle in handles:
            handle.remove()
        for module, training in modes.items():
            module.train(training)
    return {stage: (torch.cat(chunks[stage]).cpu().numpy() if chunks[stage]
                    else np.zeros((0, 0), np.float32)) for stage in names}


# --- embedding and score ---------------------------------------------------------------------

def _standardise(features: np.ndarray) -> np.ndarray:
    """Zero mean, unit variance per column (constant columns stay 0), in float64: without it
    a few high-variance channels would decide every distance."""
    x = np.asarray(features, dtype=np.float64)
    std = x.std(axis=0)
    return (x - x.mean(axis=0)) / np.where(std > 0, std, 1.0)


def embed_2d(features: np.ndarray, *, method: str = "tsne", seed: int = 0) -> np.ndarray:
    """N×C features → N×2 points, deterministic for a ``seed``; features are standardised first.

    ``tsne``: scikit-learn's Barnes-Hut t-SNE, PCA init (stable global layout), perplexity
    ``min(30, max(2, (n-1)/3))`` so small n stays valid. ``umap``: umap-learn, 15 neighbours
    (n - 1 below 16 points), single-threaded: a fixed seed needs that, and ``n_jobs=1`` says so
    instead of umap overriding it with a warning. Fewer than 4 points raise
    ``ValueError``: there is no neighbourhood to embed, and a made-up layout would be read
    as a result.
    """
    if method not in METHODS:
        raise choice_error("embedding method", method, METHODS)
    if np.ndim(features) != 2:
        raise ValueError(f"features must be N×C, got shape {np.shape(features)}")
    x = _standardise(features)
    n = len(x)
    if n < MIN_EMBED_POINTS:
        raise ValueError(f"embedding needs at least {MIN_EMBED_POINTS} points, got {n}")
    if method == "umap":
        try:
            umap = importlib.import_module("umap")
        except ImportError:  # a dependency of xfer; an environment can lack it
            raise UsageError("embedding method 'umap' needs umap-learn, a dependency of xfer "
                             "missing here: pip install umap-learn (or reinstall xfer), or use "
                             "method 'tsne'") from None
        reducer = umap.UMAP(n_components=2, n_neighbors=min(15, n - 1), random_state=seed,
                            n_jobs=1)
        return np.asarray(reducer.fit_transform(x), dtype=np.float32)

    from sklearn.manifold import TSNE

    tsne = TSNE(n_components=2, perplexity=min(30.0, max(2.0, (n - 1) / 3)),
                init="pca" if x.shape[1] >= 2 else "random",  # PCA to 2-D needs 2 columns
                learning_rate="auto", random_state=seed)
    return tsne.fit_transform(x).astype(np.float32)


def separation(features: np.ndarray, labels: np.ndarray) -> float:
    """Mean silhouette coefficient of the classes, in [-1, 1], on standardised features.

    ~1: tight, far-apart classes; ~0: overlapping; < 0: points closer to another class.
    Euclidean distances shrink in contrast as C grows, so compare the same stage across runs
    (pretrained vs scratch), not stages of different width. NaN when undefined: fewer than 2
    classes, or no more points than classes. O(n²·C) time, n×n memory.
    """
    from sklearn.metrics import silhouette_score

    y = np.asarray(labels)
    x = _standardise(features)
    if len(x) != len(y):
        raise ValueError(f"{len(x)} feature rows but {len(y)} labels")
    n_classes = len(np.unique(y))
    if n_classes < 2 or len(y) <= n_classes:
        return float("nan")
    return float(silhouette_score(x, y, metric="euclidean"))


# --- the trainer's entry points --------------------------------------------------------------

def stratified_subsample(labels: np.ndarray, max_points: int, seed: int) -> np.ndarray:
    """Sorted indices of at most ``max_points`` items, each class keeping its share (largest
    remainder rounding, so every count is within 1 of proportional). Deterministic per seed."""
    y = np.asarray(labels)
    n = len(y)
    if max_points < 1:
        raise ValueError(f"max_points must be >= 1, got {max_points}")
    if n <= max_points:
        return np.arange(n)
    classes, counts = np.unique(y, return_counts=True)
    exact = max_points * counts / n
    quota = np.floor(exact).astype(int)
    short = max_points - quota.sum()
    quota[np.argsort(-(exact - quota), kind="stable")[:short]] += 1
    rng = np.random.default_rng(seed)
    picked = [rng.permutation(np.flatnonzero(y == c))[:k] for c, k in zip(classes, quota)]
    return np.sort(np.concatenate(picked))


def methods_of(method: str) -> tuple[str, ...]:
    """``"tsne+umap"`` -> ``("tsne", "umap")``; ``"tsne"`` -> ``("tsne",)``. UsageError for a
    value outside ``METHOD_CHOICES``."""
    if method not in METHOD_CHOICES:
        raise choice_error("embedding method", method, METHOD_CHOICES)
    return tuple(method.split("+"))


def stages_by_method(result: dict) -> dict[str, dict[str, dict]]:
    """``{method: {stage: {"points", "labels", "silhouette_2d", "silhouette_features", ...}}}``
    from an :func:`embed_stages` result of either layout (one method, or several)."""
    methods = result.get("methods") or [result.get("method", "tsne")]
    out: dict[str, dict[str, dict]] = {}
    for index, method in enumerate(methods):
        out[method] = {}
        for stage, entry in result.get("stages", {}).items():
            own = {k: v for k, v in entry.items() if k != "by_method"}
            if index:
                own.update(entry.get("by_method", {}).get(method, {}))
            out[method][stage] = own
    return out


def _json_float(value: float) -> float | None:
    return None if np.isnan(value) else round(float(value), 4)


def embed_stages(model: nn.Module, model_name: str, images_u8: torch.Tensor, labels,
                 classes: list[str], prep: Callable[[torch.Tensor], torch.Tensor], *,
                 method: str = "tsne", seed: int = 0, max_points: int = 2000,
                 batch_size: int = 256) -> dict:
    """Features, 2-D embedding and silhouette per stage for a stratified subsample of
    ``images_u8`` (seeded, at most ``max_points``). ``method`` is one of ``METHOD_CHOICES``;
    ``"tsne+umap"`` embeds the same features both ways. Returns a strict-JSON dict::

        {"model", "method", "methods", "seed", "n", "classes",
         "stages": {stage: {"module", "dim", "silhouette_features", "silhouette_2d",
                            "points": [[x, y], ...], "labels": [...],
                            "by_method": {method: {"silhouette_2d", "points"}}}}}

    ``method`` is the first method and ``methods`` all of them (``["tsne", "umap"]``). Each
    stage's ``points`` and ``silhouette_2d`` are the first method's, so a single-method result
    reads as it always did; ``by_method`` holds the others' (absent with one method). What
    does not depend on the method (features, silhouette_features, labels) is stored once.
    :func:`stages_by_method` reads either layout. Silhouettes are rounded to 4 decimals and
    ``None`` where undefined (one class). Cost: one inference pass over n images plus three
    embeddings per method (module docstring).
    """
    methods = methods_of(method)
    y = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels)
    if len(y) != len(images_u8):
        raise ValueError(f"{len(images_u8)} images but {len(y)} labels")
    keep = stratified_subsample(y, max_points, seed)
    y = y[keep]
    images = images_u8[torch.as_tensor(keep, device=images_u8.device)]
    features = stage_features(model, model_name, images, prep, batch_size=batch_size)
    modules = stage_modules(model_name)
    stages = {}
    for stage in STAGES:
        embedded = {}
        for name in methods:
            points = embed_2d(features[stage], method=name, seed=seed)
            embedded[name] = {"silhouette_2d": _json_float(separation(points, y)),
                              "points": np.round(points.astype(np.float64), 4).tolist()}
        stages[stage] = {
            "module": modules[stage],
            "dim": int(features[stage].shape[1]),
            "silhouette_features": _json_float(separation(features[stage], y)),
            **embedded[methods[0]],
            "labels": [int(v) for v in y],
        }
        if len(methods) > 1:
            stages[stage]["by_method"] = {name: embedded[name] for name in methods[1:]}
    return {"model": model_name, "method": methods[0], "methods": list(methods), "seed": seed,
            "n": len(keep), "classes": list(classes), "stages": stages}
