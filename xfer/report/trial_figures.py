"""A trial's own figures, logged with its run: ``confusion_matrix.png`` and one
``embedding_<stage>.png`` per stage and method; and the two pieces the report's figures share
with them (the class colours, a confusion matrix on an axis). matplotlib's object API (no
pyplot, no screen), imported inside each function: importing this module costs nothing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

MAX_ANNOTATED_CLASSES = 20  # above this, cell counts and every class name would be unreadable


def class_colours(n_classes: int) -> np.ndarray:
    """One RGBA colour per class: tab10/tab20's distinct colours, a continuous map beyond 20
    (where no legend is drawn: too many to read)."""
    from matplotlib import colormaps

    if n_classes <= 10:
        return colormaps["tab10"](np.arange(n_classes))
    if n_classes <= 20:
        return colormaps["tab20"](np.arange(n_classes))
    return colormaps["turbo"](np.linspace(0, 1, n_classes))


def draw_confusion(ax, matrix, classes: list[str], confusable=()) -> None:
    """Counts with row-normalised shading (rows: true class) on ``ax``. Both cells of each
    ``confusable`` class pair (from the dataset's audit) are outlined in red: errors there are
    expected, not a defect of the model."""
    from matplotlib.patches import Rectangle

    counts = np.asarray(matrix, dtype=float)
    rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    labels = list(classes) if len(classes) == len(counts) else [str(i) for i in range(len(counts))]
    ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    if len(counts) > MAX_ANNOTATED_CLASSES:  # CIFAR-100: shading only, every 10th class named
        ticks = list(range(0, len(labels), 10))
        ax.set_xticks(ticks, [labels[t] for t in ticks], rotation=90, fontsize=5)
        ax.set_yticks(ticks, [labels[t] for t in ticks], fontsize=5)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        return
    for (i, j), n in np.ndenumerate(counts):
        ax.text(j, i, f"{n:.0f}", ha="center", va="center", fontsize=7,
                color="white" if rates[i, j] > 0.6 else "black")
    for a, b in confusable:
        if a in labels and b in labels:
            i, j = labels.index(a), labels.index(b)
            for r, c in ((i, j), (j, i)):
                ax.add_patch(Rectangle((c - 0.5, r - 0.5), 1, 1, fill=False, edgecolor="red", lw=2))
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=7)
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")


def plot_confusion_matrix(matrix, classes: list[str], path: Path, title: str = "",
                          confusable=()) -> Path:
    """One confusion matrix as a PNG: a trial's ``confusion_matrix.png`` artifact."""
    from matplotlib.figure import Figure

    size = max(3.2, 0.5 * min(len(matrix), MAX_ANNOTATED_CLASSES) + 1.6)
    figure = Figure(figsize=(size, size * 0.9), dpi=110)
    draw_confusion(figure.subplots(), matrix, classes, confusable)
    if title:
        figure.axes[0].set_title(title, fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
    return path


def plot_embedding(points: np.ndarray, labels: np.ndarray, classes: list[str], path: Path | str,
                   *, title: str = "") -> Path:
    """A scatter of N×2 ``points`` coloured by class (``labels`` index ``classes``), as a PNG
    at 150 dpi; a legend when there are at most 20 classes. Returns the path."""
    from matplotlib.figure import Figure

    points, labels = np.asarray(points, dtype=float), np.asarray(labels)
    colours = class_colours(len(classes))
    figure = Figure(figsize=(5.2, 4.4))
    ax = figure.subplots()
    for index, name in enumerate(classes):
        mask = labels == index
        if mask.any():
            ax.scatter(points[mask, 0], points[mask, 1], s=4, color=colours[index], label=name,
                       linewidths=0)
    if len(classes) <= 20:
        ax.legend(fontsize=6, markerscale=2.5, loc="center left", bbox_to_anchor=(1.0, 0.5),
                  frameon=False)
    ax.set_xticks([])  # t-SNE/UMAP axes have no units
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=8)
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path, dpi=150)
    return path


def plot_stages(result: dict, classes: list[str], out_dir: Path | str) -> list[Path]:
    """``embedding_<stage>.png`` in ``out_dir`` for each stage of an
    ``xfer.embeddings.embed_stages`` result (its first method), and
    ``embedding_<stage>_<method>.png`` for each further method, titled with model, stage,
    module, method and both silhouettes."""
    # imported here: xfer.embeddings imports torch, which the report's figures never need
    from xfer.embeddings import stages_by_method

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    def fmt(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    paths = []
    for index, (method, stages) in enumerate(stages_by_method(result).items()):
        suffix = f"_{method}" if index else ""
        for stage, entry in stages.items():
            title = (f"{result.get('model', '')} {stage} ({entry['module']}, C={entry['dim']}), "
                     f"{method}, n={result['n']}\nsilhouette: features "
                     f"{fmt(entry['silhouette_features'])}, 2-D {fmt(entry['silhouette_2d'])}")
            paths.append(plot_embedding(np.asarray(entry["points"]), np.asarray(entry["labels"]),
                                        classes, out_dir / f"embedding_{stage}{suffix}.png",
                                        title=title))
    return paths
