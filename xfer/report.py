"""The sweep report: ``report.md``, its PNG figures, ``frontier.csv`` and ``configurations.csv``.

Files in, files out: the inputs are the DataFrames and dicts that ``xfer.tracking.runs`` reads
(no MLflow here), the numbers come from ``xfer.frontier``. Figures use matplotlib's object API
on the Agg canvas (no pyplot), so importing this module changes no global backend.

Figures, after the studies' own: the frontier (cost, log axis, vs test accuracy); accuracy,
training time and training MACs vs dataset size; learning curves and confusion matrices of the
best configuration of each condition. The summary states only numbers from the tables.
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
from xfer import report_sections as sections
from xfer.figures import draw_confusion
from xfer.frontier import ACCURACY

DPI = 150
_MARKERS = {"scratch": "o", "pretrained": "^"}
_OTHER_MARKERS = ("s", "D", "v", "P", "X")
# Label offsets tried in turn, in points from the marker. Up-left first: no point lies up-left of
# a frontier point (it would dominate it) and the step line leaves a point rightwards and below.
_LABEL_OFFSETS = ((-4, 4), (6, 0), (-6, 0), (0, 9), (0, -9), (6, 10), (6, -10), (-6, -10),
                  (-10, 20), (10, 20), (10, -20), (-10, -20), (-20, 32), (20, 32), (20, -32), (-20, -32))
FILE_NAMES = ("report.md", "frontier.csv", "configurations.csv", "frontier.png", "size.png",
              "learning_curves.png", "confusion_matrices.png",
              *sections.FILE_NAMES)  # everything write_report may write
LABEL_ALL_POINTS_UP_TO = 15  # more points than this: only frontier points get a label


# --- entry points --------------------------------------------------------------------------------

def detail_run_ids(runs: pd.DataFrame, *, cost: str = fr.DEFAULT_COST, config_columns=None) -> list[str]:
    """The runs whose learning curves and confusion matrices the report shows: for the best
    configuration of each condition, the seed closest to its mean accuracy."""
    return list(_best_runs(fr.analyse(runs, cost, None, config_columns)).values())


def group_run_ids(runs: pd.DataFrame, *, cost: str = fr.DEFAULT_COST, config_columns=None
                  ) -> dict[str, str]:
    """Group label (``model condition``) -> the run standing for the best configuration of
    each model and condition: whose ROC curves and feature embeddings the report shows."""
    best = _best_per_model(fr.analyse(runs, cost, None, config_columns))
    if "representative_run_id" not in best:
        return {}
    return {sections.group_label(row): row["representative_run_id"] for _, row in best.iterrows()}


def _best_per_model(analysis: fr.Analysis) -> pd.DataFrame:
    keys = ["model", "condition"] if "model" in analysis.points else ["condition"]
    return fr.best_per_group(analysis.points, keys, analysis.cost)


def write_report(runs: pd.DataFrame, failed: pd.DataFrame, histories: dict[str, pd.DataFrame],
                 confusions: dict[str, dict], out_dir: str | Path, *, cost: str = fr.DEFAULT_COST,
                 target_accuracy: float | None = None, audit: dict | None = None,
                 title: str = "Sweep report", config_columns=None,
                 rocs: dict[str, dict] | None = None, embeddings: dict[str, dict] | None = None) -> Path:
    """Write the report into ``out_dir`` and return the path of ``report.md``.

    ``runs``: finished runs, one row each; ``failed``: the runs that did not finish (listed,
    never plotted), with ``status`` and ``error``; ``histories``: run id -> per-epoch DataFrame;
    ``confusions``: run id -> {"classes", "matrix"}; ``audit``: the dataset's audit.json, for
    the accuracy ceiling and the confusable pairs; ``rocs`` and ``embeddings``: run id -> the
    run's ``roc_curve.json`` / ``embeddings.json`` (for the runs of :func:`group_run_ids`). Raises UsageError (before writing anything)
    for an unknown cost, a target outside (0, 1] or no usable run.
    """
    analysis = fr.analyse(runs, cost, target_accuracy, config_columns)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name in FILE_NAMES:  # a figure this sweep cannot draw must not survive from an older report
        (out / name).unlink(missing_ok=True)
    ceiling = (audit or {}).get("bayes_accuracy_ceiling")
    _csv(analysis.frontier, out / "frontier.csv")
    _csv(analysis.points, out / "configurations.csv")
    figures = {"frontier": plot_frontier(analysis, out / "frontier.png", ceiling=ceiling,
                                         target=target_accuracy)}
    if "dataset_size" in analysis.points:
        figures["size"] = plot_by_size(analysis, out / "size.png", ceiling=ceiling)
    best_runs, names = _best_runs(analysis), _best_names(analysis)
    curves = {c: histories[r] for c, r in best_runs.items() if r in histories}
    if curves:
        figures["curves"] = plot_learning_curves(curves, out / "learning_curves.png", names=names)
    matrices = {c: confusions[r] for c, r in best_runs.items() if r in confusions}
    if matrices:
        pairs = [tuple(p["classes"]) for p in (audit or {}).get("confusable", [])]
        figures["confusion"] = plot_confusions(matrices, pairs, out / "confusion_matrices.png", names=names)
    best = _best_per_model(analysis)
    labels = {r: sections.group_label(row) for _, row in best.iterrows()
              for r in [row.get("representative_run_id")] if isinstance(r, str)}
    classes = next(iter(confusions.values()))["classes"] if confusions else []
    extra = sections.pretraining_gain(analysis.points)
    extra += sections.roc_section({labels[r]: c for r, c in (rocs or {}).items() if r in labels}, out)
    extra += sections.separation_section(
        best, {labels[r]: e for r, e in (embeddings or {}).items() if r in labels}, classes, out)
    path = out / "report.md"
    path.write_text(_markdown(analysis, failed, figures, title, ceiling, target_accuracy, audit,
                              weights=_weights_lines(runs), extra=extra))
    return path


def _best_runs(analysis: fr.Analysis) -> dict[str, str]:
    if "representative_run_id" not in analysis.best:  # a table without run ids has no details
        return {}
    return dict(zip(analysis.best["condition"], analysis.best["representative_run_id"]))


def _best_names(analysis: fr.Analysis) -> dict[str, str]:
    return {row["condition"]: f"{row['config']}, test accuracy {row[ACCURACY]:.3f}"
            for _, row in analysis.best.iterrows()}


_CSV_LEAD = ("scope", "condition", "config", "label", ACCURACY, f"{ACCURACY}_std", f"{ACCURACY}_min",
             f"{ACCURACY}_max", "n_runs", "seeds", "accuracy_spread", "spread_source",
             "not_distinguishable_from", *fr.COST_METRICS)


def _csv(table: pd.DataFrame, path: Path) -> None:
    """The table with the columns a reader looks for first; run ids ';'-joined."""
    table = table.copy()
    if "run_ids" in table:
        table["run_ids"] = table["run_ids"].map(";".join)
    lead = [c for c in _CSV_LEAD if c in table]
    table[lead + [c for c in table.columns if c not in lead]].to_csv(path, index=False)


# --- figures -------------------------------------------------------------------------------------

def _style(conditions) -> dict[str, dict]:
    """One colour per condition, one marker per init (the part before '/')."""
    colours = [f"C{i}" for i in range(10)]
    inits = list(dict.fromkeys(c.split("/")[0] for c in conditions))
    markers = {init: _MARKERS.get(init, _OTHER_MARKERS[i % len(_OTHER_MARKERS)])
               for i, init in enumerate(inits)}
    return {c: {"color": colours[i % 10], "marker": markers[c.split("/")[0]]}
            for i, c in enumerate(conditions)}


def _figure(width_in: float, height_in: float) -> Figure:
    figure = Figure(figsize=(width_in, height_in), dpi=DPI)
    FigureCanvasAgg(figure)
    return figure


def _save(figure: Figure, path: Path) -> Path:
    figure.savefig(path, dpi=DPI)
    return path


def plot_frontier(analysis: fr.Analysis, path: Path, *, ceiling: float | None = None,
                  target: float | None = None) -> Path:
    return _save(frontier_figure(analysis, ceiling=ceiling, target=target), path)


def frontier_figure(analysis: fr.Analysis, *, ceiling: float | None = None,
                    target: float | None = None) -> Figure:
    """Cost (log) vs test accuracy: every configuration (bars: seed min-max), the frontier of
    each condition (thin steps) and the overall one (thick grey), the ceiling and the target."""
    cost, points, front = analysis.cost, analysis.points, analysis.frontier
    style = _style(sorted(points["condition"].unique()))
    figure = _figure(10, 6)
    figure.subplots_adjust(left=0.08, right=0.70, bottom=0.11, top=0.92)  # fixed: labels are placed in pixels
    ax = figure.add_subplot()
    overall = front[front["scope"] == "all"]
    ax.step(overall[cost], overall[ACCURACY], where="post", color="0.75", lw=5, zorder=1,
            solid_capstyle="round", label="overall frontier")
    for condition, s in style.items():
        mine = points[points["condition"] == condition]
        repeated = mine[mine["n_runs"] > 1]
        ax.errorbar(repeated[cost], repeated[ACCURACY], fmt="none", ecolor=s["color"], lw=1, capsize=3,
                    yerr=[repeated[ACCURACY] - repeated[f"{ACCURACY}_min"],
                          repeated[f"{ACCURACY}_max"] - repeated[ACCURACY]], zorder=3)
        ax.scatter(mine[cost], mine[ACCURACY], marker=s["marker"], color=s["color"], s=36, zorder=4,
                   edgecolor="white", linewidth=0.5, label=f"{condition} ({len(mine)} configs)")
        line = front[front["scope"] == condition]
        ax.step(line[cost], line[ACCURACY], where="post", color=s["color"], lw=1, ls="--", zorder=2)
    noisy = overall[overall["not_distinguishable_from"] != ""]
    if len(noisy):
        ax.scatter(noisy[cost], noisy[ACCURACY], s=160, facecolor="none", edgecolor="black", lw=0.8,
                   zorder=5, label="within seed noise of\nanother frontier point")
    for level, text, ls in ((ceiling, "Bayes ceiling (audit)", "-."), (target, "target", ":")):
        if level is not None:
            ax.axhline(level, color="black", lw=1, ls=ls, label=f"{text} {level:.3g}", zorder=1)
    _limits(ax, points[cost], points[[f"{ACCURACY}_min", f"{ACCURACY}_max"]], [ceiling, target])
    ax.set_xscale("log")
    _log_axis(ax.xaxis)
    ax.set_xlabel(f"{fr.COST_UNITS[cost]}, log scale")
    ax.set_ylabel("test accuracy (mean over seeds)")
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


def plot_by_size(analysis: fr.Analysis, path: Path, *, ceiling: float | None = None) -> Path:
    """Three panels against dataset size, one line per condition through its best configuration
    at each size: test accuracy (bars: seed min-max), training time and training MACs."""
    best, points = _best_by_size(analysis), analysis.points
    style = _style(sorted(points["condition"].unique()))
    figure = _figure(15, 4.8)
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
            yerr = ([line[ACCURACY] - line[f"{ACCURACY}_min"], line[f"{ACCURACY}_max"] - line[ACCURACY]]
                    if column == ACCURACY else None)
            ax.errorbar(line["dataset_size"], line[column], yerr=yerr, marker=s["marker"], color=s["color"],
                        capsize=3, lw=1.5, label=condition)
        if column == ACCURACY and ceiling is not None:
            ax.axhline(ceiling, color="black", ls="-.", lw=1, label=f"Bayes ceiling {ceiling:.3g}")
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
    panels[0].set_title("Test accuracy vs dataset size")
    panels[1].set_title("Training time vs dataset size")
    panels[2].set_title("Training MACs vs dataset size")
    handles, labels = panels[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", bbox_to_anchor=(0.5, 0.05), ncol=len(labels),
                  fontsize=9, frameon=False)
    figure.text(0.5, 0.01, "lines: the most accurate configuration of each condition at each size; "
                "faint markers: every configuration", ha="center", fontsize=8, color="0.35")
    return _save(figure, path)


def plot_learning_curves(curves: dict[str, pd.DataFrame], path: Path, *,
                         names: dict[str, str] | None = None) -> Path:
    """Train (solid) and validation (dashed) accuracy and loss per epoch, one colour per
    condition; ``names`` says which configuration each condition's curves come from."""
    style = _style(sorted(curves))
    figure = _figure(12, 4.5 + 0.2 * len(curves))
    figure.subplots_adjust(left=0.06, right=0.98, bottom=0.2, top=0.86 - 0.045 * len(curves), wspace=0.22)
    panels = figure.subplots(1, 2)
    for ax, metric in zip(panels, ("accuracy", "loss")):
        for condition, history in sorted(curves.items()):
            s = style[condition]
            for split, ls in (("train", "-"), ("val", "--")):
                if f"{split}_{metric}" in history:
                    ax.plot(history.index, history[f"{split}_{metric}"], ls=ls, marker=s["marker"],
                            markersize=4, color=s["color"], label=f"{condition} {split}")
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.set_title(f"{metric.capitalize()} per epoch")
        ax.grid(True, alpha=0.3)
    source = "\n".join(f"{c}: {(names or {}).get(c, c)}" for c in sorted(curves))
    figure.suptitle(f"Learning curves of the best configuration per condition\n{source}", fontsize=9)
    handles, labels = panels[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=min(len(labels), 6), fontsize=9, frameon=False)
    return _save(figure, path)


def plot_confusions(matrices: dict[str, dict], confusable: list[tuple[str, str]], path: Path, *,
                    names: dict[str, str] | None = None) -> Path:
    """Row-normalised confusion matrices (counts printed), one panel per condition; the pairs
    the audit calls indistinguishable are outlined in red, both cells."""
    figure = _figure(5.2 * len(matrices), 5.6)
    figure.subplots_adjust(left=0.12, right=0.98, bottom=0.2, top=0.9, wspace=0.35)
    panels = np.atleast_1d(figure.subplots(1, len(matrices)))
    for ax, (condition, content) in zip(panels, sorted(matrices.items())):
        draw_confusion(ax, content["matrix"], content["classes"], confusable)
        ax.set_title(f"{condition}\n{(names or {}).get(condition, '')}", fontsize=8)
    if confusable:
        figure.text(0.5, 0.01, "red outline: a pair the dataset audit calls indistinguishable; "
                    "colour: share of the true class", ha="center", fontsize=8, color="0.35")
    return _save(figure, path)


# --- report.md -----------------------------------------------------------------------------------

_AS_GIVEN = ("lr", "weight_decay", "label_smoothing", "dataset_size", "batch_size", "n_runs")


def _number(value, digits: int = 3, as_given: bool = False) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    if isinstance(value, (float, np.floating)) and as_given:
        return f"{value:g}"
    if isinstance(value, (float, np.floating)):
        return f"{value:.{digits}f}" if abs(value) < 1e4 else f"{value:.3g}"
    return str(value)


def _table(rows: pd.DataFrame, columns: dict[str, str]) -> str:
    """A markdown table of ``rows``' columns (key) under their headers (value)."""
    present = {c: h for c, h in columns.items() if c in rows}
    lines = ["| " + " | ".join(present.values()) + " |", "|" + "---|" * len(present)]
    for _, row in rows.iterrows():
        lines.append("| " + " | ".join(_number(row[c], as_given=c in _AS_GIVEN).replace("|", "\\|")
                                       for c in present) + " |")
    return "\n".join(lines)


def _accuracy_text(row) -> str:
    text = f"{row[ACCURACY]:.3f}"
    if row["n_runs"] > 1:
        text += f" ± {row[f'{ACCURACY}_std']:.3f} over {row['n_runs']} seeds"
    return text


def _with_display_columns(points: pd.DataFrame) -> pd.DataFrame:
    table = points.copy()
    table["test_accuracy_text"] = table.apply(_accuracy_text, axis=1)
    if "epochs_run" in table:
        table["epochs_text"] = [f"{r:g}" if "epochs" not in table or r == e else f"{r:g} of {e:g}"
                                for r, e in zip(table["epochs_run"], table.get("epochs", table["epochs_run"]))]
    return table


def _weights_lines(runs: pd.DataFrame) -> list[str]:
    """Which weights each pretrained condition started from: a report must never leave a reader
    assuming ImageNet when the weights came from xfer's own offline source task."""
    if "weights" not in runs or "init" not in runs:
        return []
    pretrained = runs[runs["init"] == "pretrained"]
    columns = [c for c in ("weights", "weights_origin", "weights_sha256") if c in pretrained]
    lines = []
    for _, row in pretrained[columns].drop_duplicates().iterrows():
        origin = row.get("weights_origin", "")
        sha = str(row.get("weights_sha256", ""))[:12]
        lines.append(f"- pretrained: `{row['weights']}`" + (f" (sha256 {sha}…)" if sha else "")
                     + (f": {origin}" if isinstance(origin, str) and origin else ""))
    return lines


def _markdown(analysis: fr.Analysis, failed: pd.DataFrame, figures: dict[str, Path], title: str,
              ceiling: float | None, target: float | None, audit: dict | None,
              weights: list[str] | None = None, extra: list[str] | None = None) -> str:
    cost = analysis.cost
    points = _with_display_columns(analysis.points)
    by_size = "dataset_size" in points and points["dataset_size"].nunique() > 1
    lines = [f"# {title}", "", "## Summary", ""]
    lines += [f"- {s}" for s in summary(analysis, failed, ceiling)]
    if weights:
        lines += ["", "## Pretrained weights", "", *weights]
    lines += ["", f"## Cost vs accuracy (cost: `{cost}`)", "", "![frontier](frontier.png)", "",
              f"The overall frontier: no other configuration is at most as costly in `{cost}` "
              f"[{fr.COST_UNITS[cost]}] and at least as accurate. Test accuracy is the mean over seeds, "
              "± its standard deviation.", ""]
    overall = _with_display_columns(analysis.frontier[analysis.frontier["scope"] == "all"])
    lines += [_table(overall, {"config": "configuration", "condition": "condition", cost: cost,
                               "test_accuracy_text": "test accuracy",
                               "not_distinguishable_from": "within seed noise of"}), ""]
    lines += _noise_lines(analysis)
    if analysis.target is not None or analysis.common is not None:
        lines += ["", "## Cheapest configuration reaching a target accuracy", ""]
        if analysis.target is not None:
            lines += [f"- {s}" for s in analysis.target.sentences]
        if analysis.common is not None:
            lines += [f"- {_common_sentence(analysis.common)}"]
    if "size" in figures:
        lines += ["", "## Accuracy, time and MACs vs dataset size", "", "![by size](size.png)"]
    group = ["condition", "dataset_size"] if by_size else ["condition"]
    best = _with_display_columns(fr.best_per_group(analysis.points, group, cost))
    lines += ["", "## Best configuration per condition" + (" and dataset size" if by_size else ""), "",
              _table(best, {"condition": "condition", "dataset_size": "images", "model": "model",
                            "epochs_text": "epochs", "batch_size": "batch size", "lr": "lr",
                            "train_accuracy": "train acc", "val_accuracy": "val acc",
                            "test_accuracy_text": "test acc", "test_loss": "test loss",
                            cost: cost, "config": "configuration"})]
    per_model = _with_display_columns(fr.best_per_group(analysis.points, ["model", *group]
                                                        if "model" in points else group, cost))
    lines += ["", "## Test metrics per model and condition (best configuration of each)", "",
              _table(per_model, {"model": "model", "condition": "condition", "dataset_size": "images",
                                 "test_accuracy_text": "accuracy", "test_precision_macro": "precision (macro)",
                                 "test_recall_macro": "recall (macro)", "test_f1_macro": "F1 (macro)",
                                 "test_auc_roc_ovr": "AUC-ROC (OvR)"})]
    lines += ["", "## Training time per model", "",
              "Mean over every finished run; accuracy and recall of the most accurate one; "
              "\"× s / epoch\" is relative to the fastest row.", "",
              _table(training_time(analysis.runs, by_size), {
                  "model": "model", "condition": "condition", "dataset_size": "images", "runs": "runs",
                  "train_time_s": "mean train_time_s", "time_per_epoch_s": "mean s / epoch",
                  "relative_time_per_epoch": "× s / epoch", "wall_time_s": "mean wall_time_s",
                  "best_test_accuracy": "best test acc", "best_test_recall_macro": "its recall (macro)"})]
    lines += extra or []
    if "curves" in figures:
        lines += ["", "## Learning curves", "", "Best configuration of each condition (the seed closest "
                  "to its mean): train solid, validation dashed.", "", "![learning curves](learning_curves.png)"]
    if "confusion" in figures:
        lines += ["", "## Confusion matrices", "", "![confusion matrices](confusion_matrices.png)"]
        for pair in (audit or {}).get("confusable", []):
            lines.append(f"- audit: {' ~ '.join(pair['classes'])}: {pair.get('reason', '')}")
    repeated = points[points["n_runs"] > 1]
    if len(repeated):
        lines += ["", "## Seed spread", "", _table(repeated, {
            "config": "configuration", "n_runs": "runs", "seeds": "seeds", ACCURACY: "mean",
            f"{ACCURACY}_std": "std", f"{ACCURACY}_min": "min", f"{ACCURACY}_max": "max"})]
    lines += ["", "## Runs left out", ""] + _left_out_lines(analysis, failed)
    lines += ["", "Files: `frontier.csv` (every frontier, scope `all` and one per condition), "
              "`configurations.csv` (every configuration).", ""]
    return "\n".join(lines)


def _noise_lines(analysis: fr.Analysis) -> list[str]:
    source = analysis.points["spread_source"]
    if (source == "none").all():
        return ["No configuration was run with several seeds, so differences between frontier points "
                "carry no noise estimate."]
    pooled = fr.pooled_seed_std(analysis.points)
    repeated = int((source == "seeds").sum())
    lines = [f"Seed noise: {repeated} configuration{'s have' if repeated > 1 else ' has'} several seeds; "
             f"the pooled standard deviation of their test accuracy, {pooled:.3f}, stands in for "
             "the single-seed ones."]
    overall = analysis.noise[analysis.noise["scope"] == "all"]
    for _, pair in overall.iterrows():
        lines.append(f"- not distinguishable: {pair['costlier']} vs the cheaper {pair['cheaper']}: "
                     f"{pair['accuracy_difference']:+.3f} accuracy, noise {pair['noise']:.3f}")
    return lines


def _left_out_lines(analysis: fr.Analysis, failed: pd.DataFrame) -> list[str]:
    lines = []
    if analysis.dropped:
        lines.append(f"Finished runs without usable numbers: {fr.format_dropped(analysis.dropped)}.")
    if failed is None or failed.empty:
        return lines + ["Every run finished."]
    lines += [f"{_runs(len(failed))} did not finish:", "",
              _table(failed.assign(error=failed.get("error", pd.Series(index=failed.index, dtype=object))
                                   .fillna("").astype(str).map(_last_line).str.slice(0, 160)),
                     {"run_name": "run", "status": "status", "error": "error"})]
    return lines


def _last_line(error: str) -> str:
    """A traceback's last line is the exception itself: the part a table has room for."""
    lines = [line.strip() for line in error.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def training_time(runs: pd.DataFrame, by_size: bool) -> pd.DataFrame:
    """Mean training time per model and condition (and size): over every finished run."""
    keys = [k for k in ("model", "condition") if k in runs] + (["dataset_size"] if by_size else [])
    if "train_time_s" not in runs or not keys:
        return pd.DataFrame()
    runs = runs.assign(time_per_epoch_s=runs["train_time_s"] / runs.get("epochs_run", np.nan))
    table = runs.groupby(keys, dropna=False).agg(
        runs=("train_time_s", "size"), train_time_s=("train_time_s", "mean"),
        time_per_epoch_s=("time_per_epoch_s", "mean"),
        **({"wall_time_s": ("wall_time_s", "mean")} if "wall_time_s" in runs else {})).reset_index()
    table["relative_time_per_epoch"] = table["time_per_epoch_s"] / table["time_per_epoch_s"].min()
    best = runs.sort_values(ACCURACY, ascending=False).groupby(keys, dropna=False).head(1)
    best = best[keys + [c for c in (ACCURACY, "test_recall_macro") if c in best]].rename(
        columns={ACCURACY: "best_test_accuracy", "test_recall_macro": "best_test_recall_macro"})
    return table.merge(best, on=keys, how="left")


# --- the generated summary -----------------------------------------------------------------------

def _runs(n: int) -> str:
    return f"{n} run" if n == 1 else f"{n} runs"


def _common_sentence(common: fr.TargetAnswer) -> str:
    return (f"At {fr.percent(common.target)}, the highest test accuracy every init reaches: "
            + " ".join(common.sentences))

def summary(analysis: fr.Analysis, failed: pd.DataFrame | None, ceiling: float | None) -> list[str]:
    """Factual sentences: counts, who wins at each size and by how much, who holds which budget
    on the overall frontier, the target answers and the ceiling. Only numbers from the tables."""
    runs, points, cost = analysis.runs, analysis.points, analysis.cost
    stopped = int(runs["stopped_early"].sum()) if "stopped_early" in runs else 0
    n_failed = 0 if failed is None else len(failed)
    sentences = [f"{_runs(len(runs))} finished ({stopped} stopped early by the scheduler) in "
                 f"{len(points)} configurations; {_runs(n_failed)} did not finish; conditions: "
                 f"{', '.join(sorted(points['condition'].unique()))}.", _milestone_sentence(runs)]
    sizes = sorted(points["dataset_size"].unique()) if "dataset_size" in points else [None]
    for size in sizes:
        here = points if size is None else points[points["dataset_size"] == size]
        sentences.append(_winner_sentence(here, cost, size))
    sentences.append(_budget_sentence(analysis.frontier[analysis.frontier["scope"] == "all"], cost))
    if analysis.target is not None:
        sentences += analysis.target.sentences
    if analysis.common is not None:
        sentences.append(_common_sentence(analysis.common))
    best = points.sort_values([ACCURACY, cost], ascending=[False, True]).iloc[0]
    if ceiling is not None:
        sentences.append(f"The dataset audit's Bayes accuracy ceiling is {fr.percent(ceiling)}; the best "
                         f"mean test accuracy is {fr.percent(best[ACCURACY])} ({best['config']}).")
    return [s for s in sentences if s]


def _milestone_sentence(runs: pd.DataFrame) -> str:
    """Say which runs were measured inside longer ones (``--epoch-milestones``)."""
    milestones = int(runs["milestone_of"].notna().sum()) if "milestone_of" in runs else 0
    if not milestones:
        return ""
    plural = milestones > 1
    return (f"{_runs(milestones)} of these {'are epoch milestones' if plural else 'is an epoch milestone'}: "
            "the result as of epoch m inside a longer run of the same configuration "
            "(--epoch-milestones), which, with an lr schedule that ignores the budget, is exactly "
            f"what the m-epoch run gives; {'their' if plural else 'its'} times and costs count up "
            "to epoch m.")


def _winner_sentence(points: pd.DataFrame, cost: str, size) -> str:
    best = fr.best_per_group(points, "condition", cost).sort_values([ACCURACY, cost], ascending=[False, True])
    where = f"At {size:g} images" if size is not None else "Overall"
    top = best.iloc[0]
    if len(best) == 1:
        return f"{where}, only {top['condition']} ran: best {_accuracy_text(top)} ({top['config']})."
    parts = []
    for _, other in best.iloc[1:].iterrows():
        gap = top[ACCURACY] - other[ACCURACY]
        noise = math.hypot(top["accuracy_spread"], other["accuracy_spread"])
        ratio = top[cost] / other[cost]
        at = f"the same {cost}" if abs(ratio - 1) < 0.005 else f"{ratio:.2g}x its {cost}"
        if gap == 0:
            parts.append(f"ties with {other['condition']} ({_accuracy_text(other)}), at {at}")
        else:
            verdict = "within seed noise" if gap < noise else f"{gap * 100:.1f} points"
            parts.append(f"beats the best of {other['condition']} ({_accuracy_text(other)}) by "
                         f"{verdict}, at {at}")
    return (f"{where}, the best {top['condition']} configuration ({_accuracy_text(top)}, {top['config']}) "
            + "; ".join(parts) + ".")


def _budget_sentence(overall: pd.DataFrame, cost: str) -> str:
    """Which condition holds the overall frontier over which range of cost."""
    overall = overall.sort_values(cost)
    segments, start = [], 0
    conditions = overall["condition"].tolist()
    for i in range(1, len(conditions) + 1):
        if i == len(conditions) or conditions[i] != conditions[start]:
            part = overall.iloc[start:i]
            if len(part) == 1:
                segments.append(f"{conditions[start]} at {cost} {part[cost].iloc[0]:.3g} "
                                f"(test accuracy {part[ACCURACY].iloc[0]:.3f})")
            else:
                segments.append(f"{conditions[start]} from {cost} {part[cost].iloc[0]:.3g} to "
                                f"{part[cost].iloc[-1]:.3g} (test accuracy {part[ACCURACY].iloc[0]:.3f} "
                                f"to {part[ACCURACY].iloc[-1]:.3f})")
            start = i
    return "Cheapest to costliest, the overall frontier is held by " + ", then ".join(segments) + "."
