"""Separability audit: which families' plots no classifier can tell apart, the Bayes-optimal
accuracy ceiling, and an empirical check of both on rendered pixels.

Three categories of class pairs:
- identical: the same density (gamma(1.5, rate 0.5) is chi2(3)). Every rendering draws the
  same picture, so no classifier beats chance on them.
- scale-only: the same curve once the axes autoscale, but a different density (gamma(1.5,
  scale 0.5) is chi2(3) shrunk 4x). Autoscaling undoes any x -> a x + b, so the curve is the
  same; the tick labels (and tick spacing) show the axis ranges, so they tell the pair apart.
  Confusable only when the dataset is drawn without tick labels.
- the empirical check (``separability``): a logistic regression per pair on freshly rendered
  pixels, whose verdicts must agree with the two analytic categories.

Method. Each image's distribution is reduced to its *canonical curve*: the density on a grid of
G points across the range the x axis will show (from the quantile 1/(m+1) to m/(m+1), where
the smallest and largest of m observations fall on average), min-max scaled to [0, 1] as the y
axis scales it; and to its *axis limits*: that x range and the density's range over it, with
the renderer's 5% margins. Two images look the same without tick labels when their canonical
curves differ by less than one pixel of the axes' height (root-mean-square); with tick labels,
when in addition all four axis limits agree within one pixel of their axis. The ceiling is the
Bayes accuracy under the empirical class posterior: for each image, P(class | plot) is the
share of each class among the images whose plots look the same as it, and the optimal
classifier picks the largest share. With exactly identical groups (the ``seed`` preset) this
is the exact Bayes accuracy: sum over groups of the largest class count, over n. Both ceilings
(with and without tick labels) are computed; ``bayes_accuracy_ceiling`` is the dataset's own.

Cost: O(U^2 G) for U distinct parameter sets (8 for ``seed``: milliseconds; n for ``varied``:
~2-3 s at 10k on one core), plus the empirical check (~4 s at its default size at 256 px, see
``separability``; ``benchmarks/audit_speed.py`` measures both).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from xfer.data.pdf.families import DEFAULT_GAMMA_BETA, FAMILY_NAMES, check_gamma_beta, family
from xfer.data.pdf.render import AXES_HEIGHT_FRACTION, AXES_WIDTH_FRACTION, axis_limits
from xfer.data.pdf.separability import DEFAULT_PER_CLASS, SEPARABLE_ACCURACY, empirical_check
from xfer.errors import UsageError

GRID_POINTS = 64
SAME_DISTRIBUTION_RMS = 1e-6  # raw densities this close are the same distribution
CHANCE_MARGIN = 0.05  # a pair whose (balanced) Bayes ceiling is below 0.55 is expected at chance
_ROW_BLOCK = 1024  # distance rows per block: 1024 x U float64 stays small at U = 10k

METHOD = ("canonical density curves (quantile range 1/(m+1)..m/(m+1), min-max scaled as "
          "autoscaled axes show them); without tick labels, pairs closer than one pixel of axes "
          "height (RMS) are indistinguishable; with tick labels, their four axis limits must also "
          "agree within one pixel; ceiling = Bayes accuracy under the empirical class posterior "
          "among indistinguishable images")


def _curves(names: list[str], values: list[list[float]], observations: int, gamma_beta: str,
            ) -> tuple[np.ndarray, np.ndarray]:
    """Canonical curves (U x G) and axis limits (U x 4: x low, x high, y low, y high),
    vectorised per family."""
    p_lo, p_hi = 1 / (observations + 1), observations / (observations + 1)
    t = np.linspace(0.0, 1.0, GRID_POINTS)
    curves = np.zeros((len(names), GRID_POINTS))
    limits = np.zeros((len(names), 4))
    names_arr = np.array(names)
    for fam_name in sorted(set(names)):
        rows = np.flatnonzero(names_arr == fam_name)
        params = np.array([values[r] for r in rows], dtype=float)
        columns = [params[:, j:j + 1] for j in range(params.shape[1])]  # (k, 1) each
        fam = family(fam_name, gamma_beta)
        lo = np.broadcast_to(fam.ppf(p_lo, *columns), (len(rows), 1))
        hi = np.broadcast_to(fam.ppf(p_hi, *columns), (len(rows), 1))
        with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
            density = np.broadcast_to(fam.pdf(lo + t * (hi - lo), *columns), (len(rows), GRID_POINTS))
        curves[rows] = _minmax(density)
        finite = np.where(np.isfinite(density), density, np.nan)
        x_limits = axis_limits(lo[:, 0], hi[:, 0])
        y_limits = axis_limits(np.nanmin(finite, axis=1), np.nanmax(finite, axis=1))
        limits[rows] = np.column_stack([*x_limits, *y_limits])
    return curves, limits


def _minmax(density: np.ndarray) -> np.ndarray:
    density = np.where(np.isfinite(density), density, np.nan)
    top = np.nanmax(density, axis=1, keepdims=True)
    bottom = np.nanmin(density, axis=1, keepdims=True)
    span = top - bottom
    flat = span <= 1e-12 * np.maximum(1.0, np.abs(top))
    scaled = np.where(flat, 0.5, (density - bottom) / np.where(flat, 1.0, span))
    return np.nan_to_num(scaled, nan=1.0)  # a singularity draws at the top of the axes


def _pairwise_sq(curves: np.ndarray, rows: slice) -> np.ndarray:
    """Summed squared distance of curves[rows] to every curve, |a|^2 + |b|^2 - 2ab: one BLAS
    matmul and in-place updates (at U = 10k the block's temporaries dominate the cost).
    float64: in float32 the cancellation error (~1e-7 of |a|^2) would rival the threshold
    itself at 256 px. May be a hair below 0 where two curves coincide."""
    block = curves[rows]
    sq = block @ curves.T
    sq *= -2.0
    sq += (block ** 2).sum(1)[:, None]
    sq += (curves ** 2).sum(1)[None, :]
    return sq


def _limits_close(limits_a: np.ndarray, limits_b: np.ndarray, image_size: int) -> np.ndarray:
    """Row by row: all four axis limits agree within one pixel of their axis (the mean of the
    two images' data units per pixel), so the tick marks and labels land on the same pixels."""
    close = np.ones(len(limits_a), dtype=bool)
    for low, axis_px in ((0, AXES_WIDTH_FRACTION * image_size), (2, AXES_HEIGHT_FRACTION * image_size)):
        span_a = limits_a[:, low + 1] - limits_a[:, low]
        span_b = limits_b[:, low + 1] - limits_b[:, low]
        tolerance = (span_a + span_b) / 2 / axis_px
        for col in (low, low + 1):
            close &= np.abs(limits_a[:, col] - limits_b[:, col]) < tolerance
    return close


def _raw_rms(name_a: str, values_a, name_b: str, values_b, observations: int, gamma_beta: str) -> float:
    """Distance between the two densities on a common x grid (no autoscaling): ~0 only for
    the same distribution written two ways."""
    fam_a, fam_b = family(name_a, gamma_beta), family(name_b, gamma_beta)
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


# The look-alike relations between images of different classes: "identical" (curve and axis
# limits alike: the same picture in every rendering), "scale_only" (curve alike, limits not:
# only tick labels differ), "curve" (curve alike: the same picture without tick labels).


def _ceiling(hits: np.ndarray, weight: np.ndarray) -> float:
    return float((hits.max(1) / hits.sum(1) * weight).sum() / weight.sum())


def _pair_ceiling(hits: np.ndarray, weight: np.ndarray, u_class: np.ndarray, a: int, b: int) -> float:
    """Bayes accuracy between classes a and b alone with equal priors, as the empirical check
    draws them: each class's neighbour counts are divided by its size."""
    rows = (u_class == a) | (u_class == b)
    counts = np.array([weight[u_class == a].sum(), weight[u_class == b].sum()])
    share = hits[rows][:, [a, b]] / counts
    best = share.max(1) / share.sum(1)
    return float((best * weight[rows] / counts[(u_class[rows] == b).astype(int)]).sum() / 2)


def _look_alikes(curves: np.ndarray, limits: np.ndarray, weight: np.ndarray, u_class: np.ndarray,
                 n_cls: int, image_size: int) -> tuple[dict, tuple]:
    """Every image's look-alikes, in blocks of rows: the weighted count per class of images
    drawing the same picture with and without tick labels ({"with", "without"}: U x classes,
    each image its own look-alike), and the look-alike pairs across classes as arrays (image,
    look-alike, curve distance, axis limits close). Look-alikes are sparse (mostly a class's
    own images), so all but the distance matrix works on the pairs."""
    threshold_sq = (1.0 / (AXES_HEIGHT_FRACTION * image_size)) ** 2 * GRID_POINTS
    hits = {"with": np.zeros((len(curves), n_cls)), "without": np.zeros((len(curves), n_cls))}
    cross = []
    for start in range(0, len(curves), _ROW_BLOCK):
        rows = slice(start, min(start + _ROW_BLOCK, len(curves)))
        sq = _pairwise_sq(curves, rows)
        local, other = np.nonzero(sq < threshold_sq)
        image = rows.start + local
        close = _limits_close(limits[image], limits[other], image_size)
        key, size = local * n_cls + u_class[other], (rows.stop - rows.start) * n_cls
        hits["without"][rows] = np.bincount(key, weight[other], size).reshape(-1, n_cls)
        hits["with"][rows] = np.bincount(key, weight[other] * close, size).reshape(-1, n_cls)
        keep = u_class[image] != u_class[other]
        dist = np.sqrt(np.clip(sq[local[keep], other[keep]], 0, None) / GRID_POINTS)
        cross.append((image[keep], other[keep], dist, close[keep]))
    return hits, tuple(np.concatenate(parts) for parts in zip(*cross))


def _by_class_pair(cross: tuple, weight: np.ndarray, u_class: np.ndarray, n_cls: int) -> dict:
    """Per relation: (images of class a with a class-b look-alike, weighted; the closest such
    pair's distance; its (image, look-alike))."""
    image, other, dist, close = cross
    found = {}
    for relation, mask in (("identical", close), ("scale_only", ~close), ("curve", np.ones_like(close))):
        i, j, d = image[mask], other[mask], dist[mask]
        a, b = u_class[i], u_class[j]
        affected, closest, closest_pair = np.zeros((n_cls, n_cls)), np.full((n_cls, n_cls), np.inf), {}
        first = np.unique(i * n_cls + b, return_index=True)[1]  # each image once per other class
        np.add.at(affected, (a[first], b[first]), weight[i[first]])
        order = np.lexsort((d, a * n_cls + b))
        groups = a[order] * n_cls + b[order]
        for k in order[np.r_[True, groups[1:] != groups[:-1]]] if len(order) else []:
            closest[a[k], b[k]] = d[k]
            closest_pair[(a[k], b[k])] = (i[k], j[k])
        found[relation] = (affected, closest, closest_pair)
    return found


def _pair_entries(relation: str, found: dict, unique: list, classes: list[str], counts: np.ndarray,
                  limits: np.ndarray, observations: int, image_size: int, gamma_beta: str) -> list[dict]:
    """The class pairs with look-alikes under ``relation``, each described by its closest pair
    of images; ``category`` says which kind of look-alike that closest pair is."""
    affected, closest, closest_pair = found[relation]
    entries = []
    for a in range(len(classes)):
        for b in range(a + 1, len(classes)):
            if affected[a, b] == 0 and affected[b, a] == 0:
                continue
            ab = (a, b) if closest[a, b] <= closest[b, a] else (b, a)
            ua, ub = closest_pair[ab] if ab == (a, b) else closest_pair[ab][::-1]
            (name_a, va), (name_b, vb) = unique[ua], unique[ub]
            raw = _raw_rms(name_a, list(va), name_b, list(vb), observations, gamma_beta)
            described = f"{_describe(name_a, va, gamma_beta)} vs {_describe(name_b, vb, gamma_beta)}"
            if raw < SAME_DISTRIBUTION_RMS:
                category, reason = "identical", f"same distribution: {described.replace(' vs ', ' is ')}"
            elif relation == "identical" or (relation == "curve"
                                             and _alike(limits[ua], limits[ub], image_size)):
                category, reason = "identical", f"same curve and axis ranges within one pixel: {described}"
            else:
                shape = ("same shape up to location and scale, which autoscaled axes remove"
                         if closest[ab] < SAME_DISTRIBUTION_RMS else
                         "curves within one pixel once the axes autoscale, axis ranges apart")
                category, reason = "scale_only", f"{shape}; only the tick labels tell them apart: {described}"
            entries.append({
                "classes": [classes[a], classes[b]],
                "reason": reason,
                "distance": float(closest[ab]),
                "raw_distance": raw,
                "affected_fraction": float((affected[a, b] + affected[b, a]) / (counts[a] + counts[b])),
                "category": category,
            })
    entries.sort(key=lambda c: (c["distance"], c["classes"]))
    return entries


def _analyse(labels: list[str], values: list[list[float]], observations: int, image_size: int,
             gamma_beta: str, tick_labels: bool) -> tuple[dict, dict]:
    """The analytic audit, and each pair's expected empirical verdict under the configured
    rendering: (audit dict, {(a, b): "separable" | "chance" | "partial"})."""
    if not labels:
        raise UsageError("cannot audit an empty dataset")
    check_gamma_beta(gamma_beta)
    classes = sorted(set(labels), key=FAMILY_NAMES.index)
    n_cls = len(classes)
    # identical (family, parameters) images share one curve: 8 curves for the `seed` preset
    keys = [(lab, tuple(np.round(v, 12))) for lab, v in zip(labels, values)]
    unique = list(dict.fromkeys(keys))
    index_of = {k: i for i, k in enumerate(unique)}
    weight = np.bincount([index_of[k] for k in keys], minlength=len(unique)).astype(float)
    u_class = np.array([classes.index(lab) for lab, _ in unique])
    counts = np.bincount(u_class, weights=weight, minlength=n_cls)
    curves, limits = _curves([lab for lab, _ in unique], [list(v) for _, v in unique],
                             observations, gamma_beta)
    hits, cross = _look_alikes(curves, limits, weight, u_class, n_cls, image_size)
    found = _by_class_pair(cross, weight, u_class, n_cls)

    def entries(relation: str) -> list[dict]:
        return _pair_entries(relation, found, unique, classes, counts, limits, observations,
                             image_size, gamma_beta)

    configured = "with" if tick_labels else "without"
    expected = {}
    for a in range(n_cls):
        for b in range(a + 1, n_cls):
            ceiling = _pair_ceiling(hits[configured], weight, u_class, a, b)
            expected[(classes[a], classes[b])] = (
                "separable" if ceiling >= SEPARABLE_ACCURACY
                else "chance" if ceiling < 0.5 + CHANCE_MARGIN else "partial")
    ceilings = {"with_tick_labels": round(_ceiling(hits["with"], weight), 6),
                "without_tick_labels": round(_ceiling(hits["without"], weight), 6)}
    audit = {
        "confusable": entries("identical" if tick_labels else "curve"),
        "bayes_accuracy_ceiling": ceilings[f"{configured}_tick_labels"],
        "method": METHOD,
        "tick_labels": tick_labels,
        "gamma_beta": gamma_beta,
        "ceilings": ceilings,
        "identical": [_category_entry(p) for p in entries("identical")],
        "scale_only": [_category_entry(p) for p in entries("scale_only")],
        "distance_threshold": 1.0 / (AXES_HEIGHT_FRACTION * image_size),
        "distance_unit": "RMS difference of canonical curves, as a fraction of the axes height",
        "axis_limit_tolerance": "one pixel of the axis (with tick labels)",
        "n": len(labels),
        "distinct_distributions": len(unique),
        "empirical": None,
    }
    return audit, expected


def _alike(limits_a: np.ndarray, limits_b: np.ndarray, image_size: int) -> bool:
    return bool(_limits_close(limits_a[None], limits_b[None], image_size)[0])


def _category_entry(pair: dict) -> dict:
    return {k: pair[k] for k in ("classes", "reason", "affected_fraction", "distance", "raw_distance")}


def audit_entries(labels: list[str], values: list[list[float]], observations: int, image_size: int,
                  gamma_beta: str = DEFAULT_GAMMA_BETA, tick_labels: bool = True) -> dict:
    """The analytic audit of a dataset given each image's family and parameter values (no
    empirical check: ``empirical`` is None)."""
    return _analyse(labels, values, observations, image_size, gamma_beta, tick_labels)[0]


def _describe(name: str, values, gamma_beta: str) -> str:
    params = ", ".join(f"{p} {v:.3g}" for p, v in zip(family(name, gamma_beta).param_names, values))
    reading = f" as a {gamma_beta}" if name == "gamma" else ""
    return f"{name}({params}{reading})"


def audit_dataset(root: str | Path, write: bool = True, require_complete: bool = True, *,
                  gamma_beta: str | None = None, tick_labels: bool | None = None,
                  preset: str | None = None, seed: int | None = None, image_size: int | None = None,
                  observations: int | None = None,
                  empirical_per_class: int = DEFAULT_PER_CLASS) -> dict:
    """Audit the dataset folder ``root`` (its metadata.json) and write ``audit.json``.

    The rendering settings come from the keyword arguments, else from dataset.json, else from
    the metadata (``gamma_beta``) and defaults (rate, tick labels on). A build passes them,
    since it audits before dataset.json exists. ``empirical_per_class`` images per family for
    the empirical check; 0 skips it (``empirical`` is then None), as does an unknown preset."""
    from xfer.data.pdf.generate import GENERATOR_VERSION, PdfDatasetSpec

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
        support_points = max(len(e["values_support"]) for e in metadata.values())
        readings = {e.get("gamma_beta", DEFAULT_GAMMA_BETA) for e in metadata.values()}
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise UsageError(f"{meta_path} is not PDF-plot metadata ({type(exc).__name__}: {exc})") from None
    unknown = sorted(set(labels) - set(FAMILY_NAMES))
    if unknown:
        raise UsageError(f"{meta_path} has unknown families {unknown} (valid: {', '.join(FAMILY_NAMES)})")
    dataset = json.loads(dataset_path.read_text()) if dataset_path.is_file() else {}
    version = dataset.get("generator_version", GENERATOR_VERSION)
    if version != GENERATOR_VERSION:
        raise UsageError(f"{root} was written by PDF generator version {version}, whose gamma and "
                         f"weibull parameters this version ({GENERATOR_VERSION}) reads differently; "
                         "write it again with `xfer data pdf`")
    gamma_beta = gamma_beta or dataset.get("gamma_beta") or (readings.pop() if len(readings) == 1
                                                             else DEFAULT_GAMMA_BETA)
    tick_labels = dataset.get("tick_labels", True) if tick_labels is None else tick_labels
    preset = preset or dataset.get("preset")
    seed = dataset.get("seed", 0) if seed is None else seed
    image_size = image_size or dataset.get("image_size") or _png_size(root, next(iter(metadata)))
    # at least the 100 observations the generator uses: the audit's x range is the expected
    # extremes, and a PNG whose metadata lost points must not shrink it
    observations = observations or dataset.get("observations") or max(support_points, 2)
    result, expected = _analyse(labels, values, observations, image_size, check_gamma_beta(gamma_beta),
                                bool(tick_labels))
    if empirical_per_class and preset is not None:
        spec = PdfDatasetSpec(n=len(FAMILY_NAMES), preset=preset, seed=seed, image_size=image_size,
                              observations=observations, gamma_beta=gamma_beta,
                              tick_labels=bool(tick_labels))
        result["empirical"] = empirical_check(spec, empirical_per_class, expected)
    if write:
        (root / "audit.json").write_text(json.dumps(result, indent=2))
    return result


def _png_size(root: Path, name: str) -> int:
    from PIL import Image

    with Image.open(root / "images" / f"{name}.png") as image:
        return image.size[1]


def _pair_line(pair: dict) -> str:
    a, b = pair["classes"]
    return f"  {a} ~ {b}: {pair['affected_fraction']:.0%} of their images. {pair['reason']}"


def format_audit(audit: dict) -> str:
    tick_labels = audit.get("tick_labels", True)
    ceilings = audit.get("ceilings") or {"with_tick_labels" if tick_labels else "without_tick_labels":
                                         audit["bayes_accuracy_ceiling"]}
    lines = [f"Bayes accuracy ceiling: {audit['bayes_accuracy_ceiling']:.4f} "
             f"({audit['n']} images, {audit['distinct_distributions']} distinct distributions, "
             f"gamma's beta read as a {audit.get('gamma_beta', DEFAULT_GAMMA_BETA)})"]
    for key, label, configured in (("with_tick_labels", "with tick labels:   ", tick_labels),
                                   ("without_tick_labels", "without tick labels:", not tick_labels)):
        if key in ceilings:
            mark = "  <- as this dataset is drawn" if configured else ""
            lines.append(f"  {label} {ceilings[key]:.4f}{mark}")
    for key, title in (("identical", "Identical (same density: no rendering tells them apart)"),
                       ("scale_only", "Scale-only (same curve once the axes autoscale: only tick "
                                      "labels tell them apart)")):
        pairs = audit.get(key, [])
        lines.append(f"{title}: {'none' if not pairs else ''}".rstrip())
        lines.extend(_pair_line(p) for p in pairs)
    confusable = ", ".join(" ~ ".join(p["classes"]) for p in audit["confusable"]) or "none"
    lines.append(f"Confusable as drawn ({'with' if tick_labels else 'without'} tick labels): {confusable}")
    lines.extend(_format_empirical(audit.get("empirical")))
    return "\n".join(lines)


def _format_empirical(empirical: dict | None) -> list[str]:
    if not empirical:
        return ["Empirical check: skipped"]
    pairs = empirical["pairs"]
    verdicts = {v: sum(p["verdict"] == v for p in pairs) for v in ("separable", "chance", "partial")}
    lines = [f"Empirical check (logistic regression on {empirical['feature_px']} px ink + curve silhouette, "
             f"{empirical['per_class']} fresh images per class, {empirical['seconds']:.1f} s): "
             f"{len(pairs)} pairs, " + ", ".join(f"{n} {v}" for v, n in verdicts.items())]
    separable = [p["accuracy"] for p in pairs if p["verdict"] == "separable"]
    if separable:
        lines.append(f"  separable pairs score {min(separable):.3f} to {max(separable):.3f}")
    for p in pairs:
        if p["verdict"] != "separable" or not p.get("agrees", True):
            mark = "" if p.get("agrees", True) else f"  DISAGREES: expected {p['expected']}"
            lines.append(f"  {' ~ '.join(p['classes'])}: accuracy {p['accuracy']:.3f} "
                         f"[{p['ci_low']:.3f}, {p['ci_high']:.3f}] {p['verdict']}{mark}")
    disagreements = empirical["disagreements"]
    lines.append("  every pair agrees with the analytic categories" if not disagreements else
                 f"  {len(disagreements)} disagreement(s) with the analytic categories")
    return lines
