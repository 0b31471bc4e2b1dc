"""Small matplotlib figures shared by trials' artifacts and the report (Agg backend, no screen)."""

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
