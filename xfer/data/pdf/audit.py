"""Separability audit: which families' plots no classifier can tell apart, and the resulting
Bayes-optimal accuracy ceiling. Computed from the distributions, never by training a model.

Why plots can be identical. A plot shows f(x) at sampled x, and both axes autoscale. So two
distributions draw the same picture when they are the same distribution (gamma with shape 1 is
the exponential), and also when one is a location/scale transform of the other: autoscaling
undoes any x -> a x + b, and the y axis is rescaled to the curve's own range.

Method. Each image's distribution is reduced to its *canonical curve*: the density on a grid of
G points across the range the x axis will show (from the quantile 1/(m+1) to m/(m+1), where
the smallest and largest of m observations fall on average), min-max scaled to [0, 1] as the y
axis scales it. Two images are indistinguishable when their canonical curves differ by less
than one pixel of the axes' height (root-mean-square). The ceiling is then the Bayes accuracy
under the empirical class posterior: for each image, P(class | plot) is the share of each class
among the images whose plots are indistinguishable from it, and the optimal classifier picks
the largest share. With exactly identical groups (the ``seed`` preset) this is the exact
Bayes accuracy: sum over groups of the largest class count, over n.

Cost: O(U^2 G) for U distinct parameter sets (8 for ``seed``; n for ``varied``, ~1 s at 10k).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from xfer.data.pdf.families import FAMILY_NAMES, family
from xfer.errors import UsageError

GRID_POINTS = 64
AXES_HEIGHT_FRACTION = 0.77  # matplotlib's default subplot: top 0.88 - bottom 0.11
SAME_DISTRIBUTION_RMS = 1e-6  # raw densities this close are the same distribution
_ROW_BLOCK = 1024  # distance rows per block: 1024 x U float32 stays small at U = 10k

METHOD = ("canonical density curves (quantile range 1/(m+1)..m/(m+1), min-max scaled as "
          "autoscaled axes show them); pairs closer than one pixel of axes height (RMS) are "
          "indistinguishable; ceiling = Bayes accuracy under the empirical class posterior "
          "among indistinguishable images")


def _curves(names: list[str], values: list[list[float]], observations: int,
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Canonical curves (U x G) plus each distribution's x range (U x 2), vectorised per family."""
    p_lo, p_hi = 1 / (observations + 1), observations / (observations + 1)
    t = np.linspace(0.0, 1.0, GRID_POINTS)
    curves = np.zeros((len(names), GRID_POINTS))
    ranges = np.zeros((len(names), 2))
    names_arr = np.array(names)
    for fam_name in sorted(set(names)):
        rows = np.flatnonzero(names_arr == fam_name)
        params = np.array([values[r] for r in rows], dtype=float)
        columns = [params[:, j:j + 1] for j in range(params.shape[1])]  # (k, 1) each
        fam = family(fam_name)
        lo, hi = fam.ppf(p_lo, *columns), fam.ppf(p_hi, *columns)
        with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
            density = fam.pdf(lo + t * (hi - lo), *columns)
        curves[rows] = _minmax(np.broadcast_to(density, (len(rows), GRID_POINTS)))
        ranges[rows] = np.hstack([np.broadcast_to(lo, (len(rows), 1)), np.broadcast_to(hi, (len(rows), 1))])
    return curves, ranges, t


def _minmax(density: np.ndarray) -> np.ndarray:
    density = np.where(np.isfinite(density), density, np.nan)
    top = np.nanmax(density, axis=1, keepdims=True)
    bottom = np.nanmin(density, axis=1, keepdims=True)
    span = top - bottom
    flat = span <= 1e-12 * np.maximum(1.0, np.abs(top))
    scaled = np.where(flat, 0.5, (density - bottom) / np.where(flat, 1.0, span))
    return np.nan_to_num(scaled, nan=1.0)  # a singularity draws at the top of the axes


def _pairwise_rms(curves: np.ndarray, rows: slice) -> np.ndarray:
    """RMS distance of curves[rows] to every curve, via |a|^2 + |b|^2 - 2ab (a BLAS matmul)."""
    block = curves[rows]
    sq = (block ** 2).sum(1)[:, None] + (curves ** 2).sum(1)[None, :] - 2 * block @ curves.T
    return np.sqrt(np.clip(sq, 0, None) / curves.shape[1])


def _raw_rms(name_a: str, values_a, name_b: str, values_b, observations: int) -> float:
    """Distance between the two densities on a common x grid (no autoscaling): ~0 only for
    the same distribution written two ways."""
    fam_a, fam_b = family(name_a), family(name_b)
    p_lo, p_hi = 1 / (observations + 1), observations / (observations + 1)
    lo = min(fam_a.ppf(p_lo, *values_a), fam_b.ppf(p_lo, *values_b))
    hi = max(fam_a.ppf(p_hi, *values_a), fam_b.ppf(p_hi, *values_b))
    x = np.linspace(lo, hi, GRID_POINTS)
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        fa, fb = fam_a.pdf(x, *values_a), fam_b.pdf(x, *values_b)
        # outside a support the formulas are not densities: the density there is 0
        fa = np.where(_inside(fam_a, x, values_a), fa, 0.0)
        fb = np.where(_inside(fam_b, x, values_b), fb, 0.0)
    keep = np.isfinite(fa) & np.isfinite(fb)
    scale = max(np.abs(fa[keep]).max(initial=0), np.abs(fb[keep]).max(initial=0), 1e-12)
    return float(np.sqrt(np.mean(((fa[keep] - fb[keep]) / scale) ** 2)))


def _inside(fam, x: np.ndarray, values) -> np.ndarray:
    return (x >= fam.ppf(0.0, *values)) & (x <= fam.ppf(1.0, *values))


def audit_entries(labels: list[str], values: list[list[float]], observations: int,
                  image_size: int) -> dict:
    """The audit of a dataset given each image's family and parameter values."""
    if not labels:
        raise UsageError("cannot audit an empty dataset")
    classes = sorted(set(labels), key=FAMILY_NAMES.index)
    # identical (family, parameters) images share one curve: 8 curves for the `seed` preset
    keys = [(lab, tuple(np.round(v, 12))) for lab, v in zip(labels, values)]
    unique = list(dict.fromkeys(keys))
    index_of = {k: i for i, k in enumerate(unique)}
    weight = np.bincount([index_of[k] for k in keys], minlength=len(unique)).astype(float)
    u_class = np.array([classes.index(lab) for lab, _ in unique])
    curves, _, _ = _curves([lab for lab, _ in unique], [list(v) for _, v in unique], observations)
    threshold = 1.0 / (AXES_HEIGHT_FRACTION * image_size)

    n_cls = len(classes)
    posterior_hits = np.zeros((len(unique), n_cls))  # weighted neighbours per class
    closest = np.full((n_cls, n_cls), np.inf)  # min canonical distance between classes
    closest_pair = {}
    affected = np.zeros((n_cls, n_cls))  # images of class a with a class-b look-alike
    onehot = np.eye(n_cls)[u_class] * weight[:, None]
    for start in range(0, len(unique), _ROW_BLOCK):
        rows = slice(start, min(start + _ROW_BLOCK, len(unique)))
        dist = _pairwise_rms(curves, rows)
        near = dist < threshold
        posterior_hits[rows] = near.astype(float) @ onehot
        for local, u in enumerate(range(rows.start, rows.stop)):
            a = u_class[u]
            for b in range(n_cls):
                if b == a:
                    continue
                members = u_class == b
                j = np.argmin(np.where(members, dist[local], np.inf))
                if dist[local, j] < closest[a, b]:
                    closest[a, b] = dist[local, j]
                    closest_pair[(a, b)] = (u, j)
                if near[local, members].any():
                    affected[a, b] += weight[u]

    ceiling = float((posterior_hits.max(1) / posterior_hits.sum(1) * weight).sum() / weight.sum())

    counts = np.bincount(u_class, weights=weight, minlength=n_cls)
    confusable = []
    for a in range(n_cls):
        for b in range(a + 1, n_cls):
            if affected[a, b] == 0 and affected[b, a] == 0:
                continue
            ua, ub = closest_pair[(a, b)]
            (name_a, va), (name_b, vb) = unique[ua], unique[ub]
            raw = _raw_rms(name_a, list(va), name_b, list(vb), observations)
            if raw < SAME_DISTRIBUTION_RMS:
                reason = (f"same distribution: {_describe(name_a, va)} is {_describe(name_b, vb)}")
            else:
                reason = (f"same shape up to location and scale, which autoscaled axes remove: "
                          f"{_describe(name_a, va)} vs {_describe(name_b, vb)}")
            confusable.append({
                "classes": [classes[a], classes[b]],
                "reason": reason,
                "distance": float(closest[a, b]),
                "affected_fraction": float((affected[a, b] + affected[b, a]) / (counts[a] + counts[b])),
            })
    confusable.sort(key=lambda c: (c["distance"], c["classes"]))
    return {
        "confusable": confusable,
        "bayes_accuracy_ceiling": round(ceiling, 6),
        "method": METHOD,
        "distance_threshold": threshold,
        "distance_unit": "RMS difference of canonical curves, as a fraction of the axes height",
        "n": len(labels),
        "distinct_distributions": len(unique),
    }


def _describe(name: str, values) -> str:
    params = ", ".join(f"{p} {v:.3g}" for p, v in zip(family(name).param_names, values))
    return f"{name}({params})"


def audit_dataset(root: str | Path, write: bool = True, require_complete: bool = True) -> dict:
    """Audit the dataset folder ``root`` (its metadata.json) and write ``audit.json``."""
    root = Path(root)
    meta_path, dataset_path = root / "metadata.json", root / "dataset.json"
    if not root.is_dir():
        raise UsageError(f"{root} is not a folder")
    if not meta_path.is_file() or (require_complete and not dataset_path.is_file()):
        raise UsageError(f"{root} is not a complete PDF-plot dataset (expected metadata.json and "
                         "dataset.json, as written by `xfer data pdf`)")
    try:
        metadata = json.loads(meta_path.read_text())
        labels = [e["label"] for e in metadata.values()]
        values = [e["values_parameters"] for e in metadata.values()]
        observations = max(len(e["values_support"]) for e in metadata.values())
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise UsageError(f"{meta_path} is not PDF-plot metadata ({type(exc).__name__}: {exc})") from None
    unknown = sorted(set(labels) - set(FAMILY_NAMES))
    if unknown:
        raise UsageError(f"{meta_path} has unknown families {unknown} (valid: {', '.join(FAMILY_NAMES)})")
    image_size = json.loads(dataset_path.read_text())["image_size"] if dataset_path.is_file() else None
    if image_size is None:
        from PIL import Image

        first = next(iter(metadata))
        with Image.open(root / "images" / f"{first}.png") as image:
            image_size = image.size[1]
    # at least the 100 observations the generator uses: the audit's x range is the expected
    # extremes, and a PNG whose metadata lost points must not shrink it
    result = audit_entries(labels, values, max(observations, 2), image_size)
    if write:
        (root / "audit.json").write_text(json.dumps(result, indent=2))
    return result


def format_audit(audit: dict) -> str:
    lines = [f"Bayes accuracy ceiling: {audit['bayes_accuracy_ceiling']:.4f} "
             f"({audit['n']} images, {audit['distinct_distributions']} distinct distributions)"]
    if not audit["confusable"]:
        lines.append("No confusable pairs: every family's plots are distinguishable.")
    for pair in audit["confusable"]:
        a, b = pair["classes"]
        lines.append(f"  {a} ~ {b}: distance {pair['distance']:.2e}, "
                     f"{pair['affected_fraction']:.0%} of their images affected. {pair['reason']}")
    lines.append(f"threshold: {audit['distance_threshold']:.2e} ({audit['distance_unit']})")
    return "\n".join(lines)
