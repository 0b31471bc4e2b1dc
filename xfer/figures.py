"""Small matplotlib figures shared by trials' artifacts and the report (Agg backend, no screen)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def plot_confusion_matrix(matrix, classes: list[str], path: Path, title: str = "",
                          confusable: list[tuple[str, str]] | None = None) -> Path:
    """Counts with row-normalised shading (rows: true class). Cells of ``confusable`` class
    pairs (from the dataset's audit) are outlined: errors there are expected, not a defect."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    counts = np.asarray(matrix, dtype=float)
    share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    k = len(counts)
    labels = classes if len(classes) == k else [str(i) for i in range(k)]
    size = max(3.2, 0.5 * k + 1.6)
    fig, ax = plt.subplots(figsize=(size, size * 0.9), dpi=110)
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(k):
        for j in range(k):
            ax.text(j, i, f"{int(counts[i, j])}", ha="center", va="center", fontsize=7,
                    color="white" if share[i, j] > 0.6 else "black")
    index = {name: i for i, name in enumerate(labels)}
    for a, b in confusable or []:
        if a in index and b in index:
            for i, j in ((index[a], index[b]), (index[b], index[a])):
                ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="tab:red", lw=1.5))
    ax.set_xticks(range(k), labels, rotation=45, ha="right", fontsize=7)
    ax.set_yticks(range(k), labels, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if confusable:
        title = (title + "\n" if title else "") + "red: pairs the audit finds indistinguishable"
    if title:
        ax.set_title(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
