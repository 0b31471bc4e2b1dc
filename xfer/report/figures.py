"""The report's figures: the cost-accuracy frontier, accuracy/time/MACs vs dataset size,
learning curves, confusion matrices, one-vs-rest ROC curves and the grid of feature embeddings.
matplotlib's object API on the Agg canvas (no pyplot), so importing this module changes no global
backend. Every accuracy carries its 95% interval as an error bar. The sections of report.md that
show a figure call these; nothing here decides what a report contains.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogFormatterSciNotation, NullFormatter, NullLocator
from matplotlib.transforms import Bbox

from xfer import frontier as fr
from xfer.frontier import ACCURACY, CI_HIGH, CI_LOW
from xfer.report.trial_figures import class_colours, draw_confusion

DPI = 150
_MARKERS = {"scratch": "o", "pretrained": "^"}
_OTHER_MARKERS = ("s", "D", "v", "P", "X")
# Label offsets tried in turn, in points from the marker. Up-left first: no point lies up-left of
# a frontier point (it would dominate it) and the step line leaves a point rightwards and below.
_LABEL_OFFSETS = ((-4, 4), (6, 0), (-6, 0), (0, 9), (0, -9), (6, 10), (6, -10), (-6, -10),
                  (-10, 20), (10, 20), (10, -20), (-10, -20), (-20, 32), (20, 32), (20, -32), (-20, -32))
LABEL_ALL_POINTS_UP_TO = 15  # more points than this: only frontier points get a label
STAGES = ("early", "middle", "late")  # xfer.embeddings.STAGES, without importing torch here
METHOD_NAMES = {"tsne": "t-SNE", "umap": "UMAP"}


# --- figures -------------------------------------------------------------------------------------

def condition_style(conditions) -> dict[str, dict]:
    """One colour per condition, one marker per init (the part before '/')."""
    colours = [f"C{i}" for i in range(10)]
    inits = list(dict.fromkeys(c.split("/")[0] for c in conditions))
    markers = {init: _MARKERS.get(init, _OTHER_MARKERS[i % len(_OTHER_MARKERS)])
               for i, init in enumerate(inits)}
    return {c: {"color": colours[i % 10], "marker": markers[c.split("/")[0]]}
            for i, c in enumerate(conditions)}


def new_figure(width_in: float, height_in: float) -> Figure:
    figure = Figure(figsize=(width_in, height_in), dpi=DPI)
    FigureCanvasAgg(figure)
    return figure


def save_figure(figure: Figure, path: Path) -> Path:
    figure.savefig(path, dpi=DPI)
    return path


def plot_frontier(analysis: fr.Analysis, path: Path, *, ceiling: float | None = None,
                  target: float | None = None, ceilings=None) -> Path:
    return save_figure(frontier_figure(analysis, ceiling=ceiling, target=target, ceilings=ceilings), path)


def _ceiling_levels(ceiling: float | None, ceilings) -> list[tuple[float, str, bool]]:
    """(level, label, configured) per ceiling line: ``ceilings`` as the audit gives them
    (``xfer.report.card.ceiling_levels``), else the one ``ceiling``."""
    if ceilings:
        return list(ceilings)
    return [] if ceiling is None else [(ceiling, "Bayes ceiling (audit)", True)]


def _draw_ceilings(ax, levels) -> None:
    """The dataset's own ceiling dash-dotted black; the other rendering's, for comparison, a
    faint grey dotted line."""
    for level, text, configured in levels:
        head, _, tail = text.partition(" (")  # "name (why)": the level after the name, why below
        ax.axhline(level, color="black" if configured else "0.55", lw=1, ls="-." if configured else ":",
                   label=f"{head} {level:.3g}" + (f"\n({tail}" if tail else ""), zorder=1)


def frontier_figure(analysis: fr.Analysis, *, ceiling: float | None = None,
                    target: float | None = None, ceilings=None) -> Figure:
    """Cost (log) vs test accuracy: every configuration (bars: its 95% interval), the frontier of
    each condition (thin dashes) and the overall one (thick grey) through the configurations that
    validation accuracy puts on it, the ceiling(s) and the target. Membership is decided on
    validation, so a frontier line may dip on test: that dip is the selection's noise, shown.
    ``ceilings``: [(level, label, configured)], the audit's ceiling under this dataset's
    rendering and the other one's; default: ``ceiling`` alone."""
    cost, points, front = analysis.cost, analysis.points, analysis.frontier
    style = condition_style(sorted(points["condition"].unique()))
    figure = new_figure(10, 6)
    figure.subplots_adjust(left=0.08, right=0.70, bottom=0.11, top=0.92)  # fixed: labels are placed in pixels
    ax = figure.add_subplot()
    overall = front[front["scope"] == "all"]
    ax.plot(overall[cost], overall[ACCURACY], color="0.75", lw=5, zorder=1, solid_capstyle="round",
            label="overall frontier\n(chosen on validation)")
    for condition, s in style.items():
        mine = points[points["condition"] == condition]
        bars = mine[mine[CI_LOW].notna() & mine[CI_HIGH].notna()]
        ax.errorbar(bars[cost], bars[ACCURACY], fmt="none", ecolor=s["color"], lw=1, capsize=3, alpha=0.8,
                    yerr=_error_bars(bars), zorder=3)
        ax.scatter(mine[cost], mine[ACCURACY], marker=s["marker"], color=s["color"], s=36, zorder=4,
                   edgecolor="white", linewidth=0.5, label=f"{condition} ({len(mine)} configs)")
        line = front[front["scope"] == condition]
        ax.plot(line[cost], line[ACCURACY], color=s["color"], lw=1, ls="--", zorder=2)
    noisy = overall[overall["not_separable_from"] != ""]
    if len(noisy):
        ax.scatter(noisy[cost], noisy[ACCURACY], s=160, facecolor="none", edgecolor="black", lw=0.8,
                   zorder=5, label="not separable on the test set\nfrom another frontier point")
    levels = _ceiling_levels(ceiling, ceilings)
    _draw_ceilings(ax, levels)
    if target is not None:
        ax.axhline(target, color="black", lw=1, ls=":", label=f"target {target:.3g}", zorder=1)
    _limits(ax, points[cost], points[[ACCURACY, CI_LOW, CI_HIGH]], [*(lv[0] for lv in levels), target])
    ax.set_xscale("log")
    _log_axis(ax.xaxis)
    ax.set_xlabel(f"{fr.COST_UNITS[cost]}, log scale")
    ax.set_ylabel("test accuracy (mean over seeds), bars: 95% interval")
    ax.set_title(f"Cost vs test accuracy: {len(points)} configurations, {len(analysis.runs)} runs")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, frameon=False)
    # frontier points first, cheapest first: they get the best places
    on_front = points["config"].isin(front["config"])
    chosen = points if len(points) <= LABEL_ALL_POINTS_UP_TO else points[on_front]
    chosen = chosen.assign(_front=on_front[chosen.index])
    chosen = chosen.sort_values(["_front", cost], ascending=[False, True])
    skipped = _place_labels(figure, ax, chosen[cost], chosen[ACCURACY], chosen["label"],
                            points[cost], points[ACCURACY])
    note = ("labels: configurations on a frontier" if len(chosen) < len(points)
            else "labels: every configuration")
    if skipped:
        note += f"; {len(skipped)} left out for space (see frontier.csv)"
    ax.text(1.02, 0.0, note, transform=ax.transAxes, fontsize=7, color="0.35", va="bottom", wrap=True)
    return figure


def _error_bars(rows: pd.DataFrame) -> np.ndarray:
    """Matplotlib's asymmetric yerr from the 95% interval columns (never negative: a seed
    interval is centred on the mean, a Wilson one contains the accuracy)."""
    return np.clip(np.vstack([rows[ACCURACY] - rows[CI_LOW], rows[CI_HIGH] - rows[ACCURACY]]), 0, None)


def _limits(ax, x, y, levels) -> None:
    """Log-x margins of a factor 2; y spans the data and the reference levels, within [0, 1.02]."""
    x = np.asarray(x, float)
    ax.set_xlim(x.min() / 2, x.max() * 2)
    values = np.concatenate([np.asarray(y, float).ravel(), [v for v in levels if v is not None]])
    low, high = np.nanmin(values), np.nanmax(values)
    pad = max(0.03, 0.08 * (high - low))
    ax.set_ylim(max(0.0, low - pad), min(1.02, high + pad))


def _log_axis(axis, plain: bool = False) -> None:
    """Log-axis labels that never collide. Matplotlib labels every minor tick (2, 3, 4, 6 x 10^k)
    on short spans; past about one decade those run into each other, so only 2 and 5 x 10^k keep
    a label up to three decades, and none beyond (the decades are enough). ``plain``: 20 rather
    than 2x10^1, for seconds."""
    sci = FuncFormatter(lambda value, _: f"{value:g}") if plain else LogFormatterSciNotation(labelOnlyBase=False)
    if plain:
        axis.set_major_formatter(sci)
    low, high = sorted(axis.get_view_interval())
    decades = math.log10(high / low) if low > 0 else 0.0
    if decades <= 1.2:
        if plain:
            axis.set_minor_formatter(sci)
        return

    def two_and_five(value, position):
        mantissa = round(value / 10 ** math.floor(math.log10(value) + 1e-9))
        return sci(value, position) if decades <= 3 and mantissa in (2, 5) else ""

    axis.set_minor_formatter(FuncFormatter(two_and_five))


def _place_labels(figure: Figure, ax, xs, ys, texts, all_x, all_y) -> list[str]:
    """Greedy label placement: each label takes the first offset whose box stays inside the axes
    and overlaps no marker and no earlier label. O(labels x offsets) draws of one text. Returns
    the labels that found no place."""
    renderer = figure.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    radius = 4 * DPI / 72  # marker half-size in pixels: s=36 is 6 pt across, plus 1 pt
    taken = [Bbox.from_bounds(px - radius, py - radius, 2 * radius, 2 * radius)
             for px, py in ax.transData.transform(np.column_stack([all_x, all_y]))]
    skipped = []
    for x, y, text in zip(xs, ys, texts):
        for dx, dy in _LABEL_OFFSETS:
            far = abs(dx) > 10 or abs(dy) > 10
            label = ax.annotate(text, (x, y), xytext=(dx, dy), textcoords="offset points", fontsize=7,
                                ha="left" if dx > 0 else "right" if dx < 0 else "center",
                                va="center" if dy == 0 else "bottom" if dy > 0 else "top",
                                color="0.15", zorder=6,
                                bbox={"boxstyle": "square,pad=0.1", "facecolor": "white",
                                      "edgecolor": "none", "alpha": 0.75},
                                arrowprops={"arrowstyle": "-", "lw": 0.5, "color": "0.6",
                                            "shrinkA": 0, "shrinkB": 4} if far else None)
            box = label.get_window_extent(renderer)
            inside = frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1
            if inside and not any(box.overlaps(t) for t in taken):
                taken.append(box.expanded(1.04, 1.15))
                break
            label.remove()
        else:
            skipped.append(text)
    return skipped


def _best_by_size(analysis: fr.Analysis) -> pd.DataFrame:
    return fr.best_per_group(analysis.points, ["condition", "dataset_size"], analysis.cost)


def plot_by_size(analysis: fr.Analysis, path: Path, *, ceiling: float | None = None, ceilings=None) -> Path:
    """Three panels against dataset size, one line per condition through its best configuration
    (by validation accuracy) at each size: test accuracy (bars: its 95% interval), training time
    and training MACs."""
    best, points = _best_by_size(analysis), analysis.points
    style = condition_style(sorted(points["condition"].unique()))
    figure = new_figure(15, 4.8)
    figure.subplots_adjust(left=0.05, right=0.98, bottom=0.24, top=0.88, wspace=0.28)
    panels = figure.subplots(1, 3)
    columns = ((ACCURACY, "test accuracy"), ("train_time_s", "training time [s]"),
               ("train_macs", "training MACs"))
    for ax, (column, name) in zip(panels, columns):
        if column not in best:
            ax.set_axis_off()
            ax.set_title(f"{name}: not logged")
            continue
        for condition, s in style.items():
            line = best[best["condition"] == condition].sort_values("dataset_size")
            mine = points[points["condition"] == condition]
            ax.scatter(mine["dataset_size"], mine[column], marker=s["marker"], color=s["color"], s=14,
                       alpha=0.25)
            yerr = _error_bars(line.fillna({CI_LOW: line[ACCURACY], CI_HIGH: line[ACCURACY]})) \
                if column == ACCURACY else None
            ax.errorbar(line["dataset_size"], line[column], yerr=yerr, marker=s["marker"], color=s["color"],
                        capsize=3, lw=1.5, label=condition)
        if column == ACCURACY:
            _draw_ceilings(ax, _ceiling_levels(ceiling, ceilings))
        sizes = sorted(points["dataset_size"].unique())
        if len(sizes) > 1:
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(NullFormatter())
        if len(sizes) <= 8:  # the sizes themselves, as numbers, are the useful ticks
            ax.set_xticks(sizes, [f"{size:g}" for size in sizes])
            ax.xaxis.set_minor_locator(NullLocator())
        if column != ACCURACY:
            ax.set_yscale("log")
            _log_axis(ax.yaxis, plain=column == "train_time_s")
        ax.set_xlabel("dataset size (images)")
        ax.set_ylabel(name + (", log scale" if column != ACCURACY else ""))
        ax.grid(True, alpha=0.3)
    panels[0].set_title("Test accuracy (95% interval) vs dataset size")
    panels[1].set_title("Training time vs dataset size")
    panels[2].set_title("Training MACs vs dataset size")
    handles, labels = panels[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", bbox_to_anchor=(0.5, 0.05), ncol=len(labels),
                  fontsize=9, frameon=False)
    figure.text(0.5, 0.01, "lines: the configuration of each condition with the best validation accuracy "
                "at each size; faint markers: every configuration", ha="center", fontsize=8, color="0.35")
    return save_figure(figure, path)


def plot_learning_curves(curves: dict[str, pd.DataFrame], path: Path, *,
                         names: dict[str, str] | None = None,
                         models: dict[str, str] | None = None) -> Path:
    """Train (solid) and validation (dashed) accuracy and loss per epoch, one colour per
    condition; ``names`` says which configuration each curve comes from. ``models``: curve key
    (``model condition``) -> model; given, one row of panels per model, so that a sweep of
    several architectures shows each one's curves, not only the best's."""
    rows = sorted(set(models.values())) if models else [None]
    condition = {key: key[len(models[key]) + 1:] if models else key for key in curves}
    style = condition_style(sorted(set(condition.values())))
    source = "\n".join(f"{c}: {(names or {}).get(c, c)}" for c in sorted(curves))
    top = 0.6 + 0.17 * len(curves)  # inches above the panels: the title, one line per curve
    height = 3.6 * len(rows) + 0.9 + top
    figure = new_figure(12, height)
    figure.subplots_adjust(left=0.06, right=0.98, bottom=0.9 / height, top=1 - top / height,
                           wspace=0.22, hspace=0.45)
    panels = np.atleast_2d(figure.subplots(len(rows), 2))
    for row, model in zip(panels, rows):
        mine = {k: h for k, h in curves.items() if models is None or models[k] == model}
        for ax, metric in zip(row, ("accuracy", "loss")):
            for key, history in sorted(mine.items()):
                s = style[condition[key]]
                for split, ls in (("train", "-"), ("val", "--")):
                    if f"{split}_{metric}" in history:
                        ax.plot(history.index, history[f"{split}_{metric}"], ls=ls, marker=s["marker"],
                                markersize=4, color=s["color"], label=f"{condition[key]} {split}")
            ax.set_xlabel("epoch")
            ax.set_ylabel(metric)
            ax.set_title(f"{model + ': ' if model else ''}{metric} per epoch")
            ax.grid(True, alpha=0.3)
    best = "model and condition" if models else "condition"
    figure.suptitle(f"Learning curves of the best configuration per {best}\n{source}", fontsize=9)
    labels = {}  # one legend entry per condition and split, across the rows
    for ax in panels[:, 0]:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            labels.setdefault(label, handle)
    figure.legend(list(labels.values()), list(labels), loc="lower center", ncol=min(len(labels), 6),
                  fontsize=9, frameon=False)
    return save_figure(figure, path)


def plot_confusions(matrices: dict[str, dict], confusable: list[tuple[str, str]], path: Path, *,
                    names: dict[str, str] | None = None) -> Path:
    """Row-normalised confusion matrices (counts printed), one panel per condition; the pairs
    the audit calls confusable under the dataset's rendering (its ``confusable``, never a
    hard-coded pair) are outlined in red, both cells."""
    figure = new_figure(5.2 * len(matrices), 5.6)
    figure.subplots_adjust(left=0.12, right=0.98, bottom=0.2, top=0.9, wspace=0.35)
    panels = np.atleast_1d(figure.subplots(1, len(matrices)))
    for ax, (condition, content) in zip(panels, sorted(matrices.items())):
        draw_confusion(ax, content["matrix"], content["classes"], confusable)
        ax.set_title(f"{condition}\n{(names or {}).get(condition, '')}", fontsize=8)
    if confusable:
        figure.text(0.5, 0.01, "red outline: a pair the dataset audit calls confusable as rendered; "
                    "colour: share of the true class", ha="center", fontsize=8, color="0.35")
    return save_figure(figure, path)


def plot_roc(curves: dict[str, dict], path: Path) -> Path:
    """``curves``: group label -> {"fpr", "tpr", "auc"} (macro-averaged one-vs-rest), each
    with points: one line per group and the chance diagonal."""
    figure = Figure(figsize=(6.0, 4.8), dpi=DPI)
    ax = figure.subplots()
    ax.plot([0, 1], [0, 1], color="0.7", lw=1, ls=":", label="chance")
    for label, curve in sorted(curves.items()):
        ax.plot(curve["fpr"], curve["tpr"], lw=1.5, label=f"{label} (AUC {curve.get('auc', math.nan):.3f})")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate (macro average over classes)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title("One-vs-rest ROC, test split, best configuration of each", fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
    return path


def embedding_methods(result: dict) -> list[str]:
    """The embedding methods of an ``embeddings.json`` (``xfer.embeddings.embed_stages``)."""
    return list(result.get("methods") or [result.get("method", "tsne")])


def _method_stages(result: dict, method: str) -> dict[str, dict]:
    """``{stage: entry}`` for one method of an ``embeddings.json``: the first method's points
    are each stage's own, the others' are in its ``by_method`` (the layout
    ``xfer.embeddings.embed_stages`` documents; as ``xfer.embeddings.stages_by_method``,
    without importing torch and scikit-learn into the report). A stage without the method's
    points is left out: its panel says "(none)"."""
    first = embedding_methods(result)[0]
    stages = {}
    for stage, entry in result.get("stages", {}).items():
        own = {k: v for k, v in entry.items() if k != "by_method"}
        if method != first:
            extra = entry.get("by_method", {}).get(method)
            if extra is None:
                continue
            own.update(extra)
        stages[stage] = own
    return stages


def _short(value) -> str:
    """A silhouette in a panel title; None (undefined, one class) as n/a."""
    return f"{value:.2f}" if isinstance(value, (int, float)) and math.isfinite(value) else "n/a"


def plot_embedding_grid(embeddings: dict[str, dict], classes: list[str], path: Path) -> Path:
    """One row per (group, method), groups sorted, methods in the run's order; one column per
    stage: each stage's 2-D points coloured by class, titled with both silhouettes."""
    rows = [(label, method) for label in sorted(embeddings) for method in embedding_methods(embeddings[label])]
    several = any(len(embedding_methods(e)) > 1 for e in embeddings.values())
    figure = Figure(figsize=(3.0 * len(STAGES), 2.7 * len(rows)), dpi=DPI)
    axes = np.atleast_2d(figure.subplots(len(rows), len(STAGES), squeeze=False))
    colours = class_colours(len(classes) or 1)
    for r, (label, method) in enumerate(rows):
        stages = _method_stages(embeddings[label], method)
        name = f"{label} ({METHOD_NAMES.get(method, method)})" if several else label
        for c, stage in enumerate(STAGES):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            entry = stages.get(stage)
            if not entry:
                ax.set_title(f"{name}: {stage} (none)", fontsize=7)
                continue
            points = np.asarray(entry["points"], dtype=float).reshape(-1, 2)
            classes_of_points = np.asarray(entry["labels"], dtype=int)
            ax.scatter(points[:, 0], points[:, 1], s=3, c=colours[classes_of_points % len(colours)],
                       linewidths=0)
            ax.set_title(f"{name}: {stage}\nsilhouette {_short(entry.get('silhouette_features'))}"
                         f" (2-D {_short(entry.get('silhouette_2d'))})", fontsize=7)
    figure.tight_layout()
    figure.savefig(path)
    return path
