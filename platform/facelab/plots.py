"""Plots saved next to a run, for the things a person would rather look at than read."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.metrics import confusion_matrix  # noqa: E402


def confusion_matrix_png(y_true: Sequence, y_pred: Sequence, labels: Sequence[str], path: Path, title: str = "") -> Path:
    """Row-normalised confusion matrix with counts."""
    cm = confusion_matrix(list(y_true), list(y_pred), labels=list(labels))
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(1.2 * len(labels) + 2, 1.1 * len(labels) + 1.5))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(j, i, f"{cm[i, j]}\n{norm[i, j]:.0%}", ha="center", va="center",
                    color="white" if norm[i, j] > 0.5 else "black", fontsize=8)
    ax.set_title(title or "confusion matrix")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def tune_results_png(results: pd.DataFrame, metric: str, path: Path, group: str = "config/model") -> Path:
    """Every trial's score, grouped by model family, best trial marked."""
    fig, ax = plt.subplots(figsize=(7, 4))
    groups = sorted(results[group].astype(str).unique()) if group in results else ["all"]
    for i, name in enumerate(groups):
        rows = results[results[group].astype(str) == name] if group in results else results
        ax.scatter(np.full(len(rows), i) + np.random.default_rng(i).uniform(-0.15, 0.15, len(rows)), rows[metric], alpha=0.7, label=name)
    best = results[metric].idxmax()
    ax.scatter([groups.index(str(results.loc[best, group])) if group in results else 0], [results.loc[best, metric]],
               marker="*", s=250, color="gold", edgecolor="black", zorder=3, label="best")
    ax.set_xticks(range(len(groups)), groups)
    ax.set_ylabel(metric)
    ax.set_title(f"Tune trials ({len(results)})")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)
