"""The audit's empirical check: can a linear classifier tell two families' plots apart?

The analytic audit (``audit``) reasons about densities and axes; this check looks at pixels.
For every pair of classes it renders fresh images with xfer's own generator (``sample_image`` +
``render_plot``, the dataset's preset, image size, gamma reading and tick-label setting), trains
a logistic regression on half of them and scores it on the other half. A pair the analytic
audit calls identical must score at chance; a pair it calls separable must score high. A
disagreement means one of the two is wrong about what the renderer draws (the reason this
check exists: the first audit took tick labels to be invisible, and pixels said otherwise).

Images. ``per_class`` images per family from the seed stream ``seed + AUDIT_SEED_OFFSET``:
pool seeds are below 2^31 and default test seeds below 2^32, so the audit never re-draws a
dataset image. Each image becomes two maps, box-downsampled to at most ``FEATURE_PX`` px a side:
its grayscale ink (frame, ticks, labels and curve: what tells a scale-only pair apart) and the
curve's silhouette, the area under the curve (the curve's colour filled downwards). The
silhouette is there because a thin line is a poor input for a linear model: the random sample
extremes move the line by a pixel or two from image to image, so on ink alone laplace vs
normal without tick labels scores ~0.93 at 160 images per class (and ~0.8 at 64), below the
0.9 that calls a pair separable; on both maps, >= 0.98. Identical pairs stay at chance: no
map of a picture can tell apart two classes that draw the same pictures.

Verdicts. ``separable``: accuracy >= 0.9; ``chance``: the Wilson interval contains 0.5;
otherwise ``partial``. The intervals are Bonferroni-corrected over the pairs (28 for eight
families: each at 1 - 0.05/28), so that on a dataset whose identical pairs are truly at chance
the check flags a false disagreement with probability ~5% at most, not 5% per pair.

Cost: ``per_class`` x 8 renders (~1.6 ms each at any size) and 28 fits (~30 ms each at 160
images per class): a few seconds at the default 160 per class, on one core.
"""

from __future__ import annotations

import math
import time
import warnings

import numpy as np

from xfer.errors import UsageError

DEFAULT_PER_CLASS = 160  # 80 train + 80 scored per class: 160 scored per pair, CI ~ +-0.12 at chance
MIN_PER_CLASS = 4  # two to train and two to score, per class
FEATURE_PX = 64  # box-downsample images to at most this many px a side
AUDIT_SEED_OFFSET = 2 ** 32  # the audit's seed stream: seed + 2^32, above every pool and default test seed
SEPARABLE_ACCURACY = 0.9
CHANCE_ACCURACY = 0.5
FAMILYWISE_CONFIDENCE = 0.95
C_REGULARISATION = 1.0  # sklearn's default inverse L2 strength; pixels are in [0, 1]
METHOD = ("logistic regression (L2, C = 1, liblinear dual) per pair of classes on each image's "
          "grayscale ink and curve silhouette, box-downsampled to {px} px, {n} freshly rendered "
          "images per class (seed stream seed + 2^32): first half trains, second half is scored; "
          "Wilson intervals Bonferroni-corrected over the pairs (family-wise {conf:.0%}); "
          "separable: accuracy >= {separable}, chance: the interval contains 0.5, else partial")


def check_per_class(per_class) -> int:
    if not isinstance(per_class, int) or isinstance(per_class, bool) or per_class < MIN_PER_CLASS:
        raise UsageError(f"--per-class must be an integer >= {MIN_PER_CLASS} (half the images train, "
                         f"half are scored), got {per_class!r}")
    return per_class


def pixel_features(pixels: np.ndarray, max_px: int = FEATURE_PX) -> np.ndarray:
    """One RGB uint8 plot -> its ink (1 - gray) and its curve's silhouette, box-downsampled to
    <= ``max_px`` a side, flattened: 2 x 64 x 64 = 8,192 features.

    Downsampling comes first, with Pillow's box filter on the uint8 image (~0.2 ms at 256 px;
    numpy's reshape-mean in float takes ~1.8 ms, as long as the rendering): both maps are
    linear in the RGB values, so box-filtering first gives the same maps, to uint8 rounding."""
    from PIL import Image

    from xfer.data.pdf.render import LINE_COLOR

    factor = math.ceil(pixels.shape[0] / max_px)
    small = Image.fromarray(pixels).reduce(factor) if factor > 1 else pixels
    rgb = np.asarray(small, dtype=np.float32) / 255.0
    ink = 1.0 - rgb.mean(-1)
    # the curve alone: its colour is blue far above red; black, gray and white are not. Any
    # blend of the line with white or black has blue - red in [0, line's], so this is linear.
    curve = np.clip((rgb[..., 2] - rgb[..., 0]) * (255.0 / (LINE_COLOR[2] - LINE_COLOR[0])), 0, 1)
    silhouette = np.clip(np.cumsum(curve, axis=0), 0, 1)  # 1 from the curve down to the frame
    return np.concatenate([ink.ravel(), silhouette.ravel()])


def render_features(spec, per_class: int) -> np.ndarray:
    """(families, per_class, features): fresh images of every family, from the audit's seed
    stream, drawn exactly as the dataset ``spec`` (a PdfDatasetSpec) draws its own."""
    from xfer.data.pdf.families import FAMILY_NAMES
    from xfer.data.pdf.generate import sample_image
    from xfer.data.pdf.render import render_plot

    seed = spec.seed + AUDIT_SEED_OFFSET
    features = []
    for family_index in range(len(FAMILY_NAMES)):
        rows = []
        for index in range(per_class):
            _, x, y = sample_image(spec, family_index, index, seed=seed)
            rows.append(pixel_features(render_plot(x, y, spec.image_size, tick_labels=spec.tick_labels)))
        features.append(np.stack(rows))
    return np.stack(features)


def pair_confidence(n_pairs: int) -> float:
    """Each pair's interval confidence: Bonferroni over the pairs, for FAMILYWISE_CONFIDENCE."""
    return 1 - (1 - FAMILYWISE_CONFIDENCE) / max(1, n_pairs)


def verdict(accuracy: float, ci_low: float, ci_high: float) -> str:
    if accuracy >= SEPARABLE_ACCURACY:
        return "separable"
    return "chance" if ci_low <= CHANCE_ACCURACY <= ci_high else "partial"


def pair_accuracies(features: np.ndarray, classes: list[str], expected: dict | None = None) -> list[dict]:
    """Every pair's held-out accuracy, interval, verdict and (given ``expected``, a dict
    (a, b) -> "separable" | "chance" | "partial") whether it agrees with the analytic audit."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    from xfer.stats import wilson_interval

    n_pairs = len(classes) * (len(classes) - 1) // 2
    confidence = pair_confidence(n_pairs)
    per_class = features.shape[1]
    train = per_class // 2
    labels_train = np.r_[np.zeros(train), np.ones(train)]
    labels_test = np.r_[np.zeros(per_class - train), np.ones(per_class - train)]
    pairs = []
    for a in range(len(classes)):
        for b in range(a + 1, len(classes)):
            # random_state: liblinear's dual solver shuffles; fixed, the same images give the same result
            model = LogisticRegression(C=C_REGULARISATION, solver="liblinear", dual=True, max_iter=1000,
                                       random_state=0)
            with warnings.catch_warnings():
                # an identical pair has no signal to converge to: the warning is the expected outcome
                warnings.simplefilter("ignore", ConvergenceWarning)
                model.fit(np.concatenate([features[a, :train], features[b, :train]]), labels_train)
            scored = np.concatenate([features[a, train:], features[b, train:]])
            correct = int((model.predict(scored) == labels_test).sum())
            low, high = wilson_interval(correct, len(labels_test), confidence)
            accuracy = correct / len(labels_test)
            pair = {"classes": [classes[a], classes[b]], "accuracy": round(accuracy, 4),
                    "ci_low": round(low, 4), "ci_high": round(high, 4),
                    "verdict": verdict(accuracy, low, high)}
            if expected is not None:
                # a family the dataset lacks has no analytic look-alike: expected separable
                pair["expected"] = expected.get((classes[a], classes[b]), "separable")
                pair["agrees"] = pair["verdict"] == pair["expected"]
            pairs.append(pair)
    return pairs


def empirical_check(spec, per_class: int = DEFAULT_PER_CLASS, expected: dict | None = None) -> dict:
    """The audit's ``empirical`` section for the dataset ``spec`` (a PdfDatasetSpec)."""
    from xfer.data.pdf.families import FAMILY_NAMES

    check_per_class(per_class)
    started = time.perf_counter()
    features = render_features(spec, per_class)
    pairs = pair_accuracies(features, list(FAMILY_NAMES), expected)
    side = int(math.isqrt(features.shape[2] // 2))
    return {
        "method": METHOD.format(px=side, n=per_class, conf=FAMILYWISE_CONFIDENCE,
                                separable=SEPARABLE_ACCURACY),
        "per_class": per_class,
        "image_size": spec.image_size,
        "feature_px": side,
        "confidence": round(pair_confidence(len(pairs)), 6),
        "seconds": round(time.perf_counter() - started, 3),
        "pairs": pairs,
        "disagreements": [p for p in pairs if p.get("agrees") is False],
    }
