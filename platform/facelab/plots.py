"""Plots saved next to a run, for the things a person would rather look at than read."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd


def _pyplot():
    """matplotlib's pyplot on the file-only Agg backend, imported when a plot is drawn: task modules
    import this one, and Ray workers that only prepare data or predict never draw (the import cost
    each new worker process about 0.4 s here; scikit-learn's metrics, for the confusion matrix,
    another 0.75 s)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def confusion_matrix_png(y_true: Sequence, y_pred: Sequence, labels: Sequence[str], path: Path, title: str = "") -> Path:
    """Row-normalised confusion matrix with counts."""
    from sklearn.metrics import confusion_matrix

    cm = confusion_matrix(list(y_true), list(y_pred), labels=list(labels))
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    plt = _pyplot()
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


MAX_TUNE_PANELS = 6


def _varied_parameters(results: pd.DataFrame, group: str) -> list[str]:
    """The numeric config columns the sweep varied (at least two trials set them), `group` excluded."""
    return [c for c in results.columns if c.startswith("config/") and c != group
            and pd.api.types.is_numeric_dtype(results[c]) and results[c].notna().sum() > 1 and results[c].nunique() > 1]


def best_trial(results: pd.DataFrame, metric: str, mode: str):
    """The index of the trial with the best `metric` ("max" or "min" is better)."""
    return results[metric].idxmax() if mode == "max" else results[metric].idxmin()


def tune_results_png(results: pd.DataFrame, metric: str, path: Path, *, mode: str = "max",
                     group: str = "config/model") -> Path:
    """Every trial's score by model family (when the sweep chose one) and against each numeric
    hyper-parameter the sweep varied (log axis where it spans 20x or more), the best trial
    (by `mode`) starred in every panel."""
    panels = ([group] if group in results else []) + _varied_parameters(results, group)
    panels = panels[:MAX_TUNE_PANELS] or [None]
    best = best_trial(results, metric, mode)
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels) + 0.8, 3.6), squeeze=False, sharey=True)
    for ax, column in zip(axes[0], panels):
        if column is None or column == group:
            names = sorted(results[column].astype(str).unique()) if column else ["all trials"]
            where = results[column].astype(str).map(names.index) if column else pd.Series(0, index=results.index)
            x = where + np.random.default_rng(0).uniform(-0.15, 0.15, len(results))
            ax.set_xticks(range(len(names)), names)
        else:
            x = results[column]
            positive = x.dropna()
            if (positive > 0).all() and positive.max() / positive.min() >= 20:
                ax.set_xscale("log")
            ax.set_xlabel(column.removeprefix("config/"))
            ax.tick_params(axis="x", labelsize=8, labelrotation=30)
        ax.scatter(x, results[metric], alpha=0.7, label="trials")
        ax.scatter([x[best]], [results.loc[best, metric]], marker="*", s=250, color="gold", edgecolor="black", zorder=3,
                   label=f"best ({mode})")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(metric)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(f"Tune trials ({len(results)})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def history_png(history: pd.DataFrame, path: Path, *, metric: str, best_epoch: int | None = None,
                mode: str = "max") -> Path:
    """Per-epoch training curves: the training loss, the validation metric (best epoch marked),
    and every other validation number, one panel each."""
    others = [c for c in history.columns if c not in ("epoch", "train_loss", "lr", metric)
              and pd.api.types.is_numeric_dtype(history[c])]
    panels = ["train_loss", metric, *others]
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.2), squeeze=False)
    for ax, column in zip(axes[0], panels):
        ax.plot(history["epoch"], history[column], marker="o", ms=3)
        if column == metric and best_epoch is not None and best_epoch in set(history["epoch"]):
            ax.scatter([best_epoch], history.loc[history["epoch"] == best_epoch, column].iloc[:1], marker="*", s=180,
                       color="gold", edgecolor="black", zorder=3, label=f"best ({mode})")
            ax.legend(fontsize=8)
        ax.set_xlabel("epoch")
        ax.set_title(column)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def roc_png(curves: dict[str, tuple[np.ndarray, np.ndarray]], path: Path, title: str = "",
            marks: Sequence[float] = (1e-6, 1e-5, 1e-4)) -> Path:
    """ROC curves on a log-scale FPR axis from (positive, negative) distances per named system
    (smaller distance = same); the TPR at each FPR in `marks` is written in the legend."""
    from sklearn.metrics import roc_curve

    from facelab.metrics import tpr_at_fpr

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    floor = 1.0
    for name, (positive, negative) in curves.items():
        y = np.concatenate([np.ones(len(positive)), np.zeros(len(negative))])
        fpr, tpr, _ = roc_curve(y, -np.concatenate([positive, negative]))
        floor = min(floor, 0.5 / len(negative))
        at = tpr_at_fpr(positive, negative, marks)
        label = f"{name}: " + ", ".join(f"{at[k]:.3f}" for k in at if k.startswith("tpr@"))
        ax.step(np.maximum(fpr, 0.5 / len(negative)), tpr, where="post", label=label)
    for mark in marks:
        ax.axvline(mark, color="grey", lw=0.6, ls=":")
    ax.set_xscale("log")
    ax.set_xlim(min(floor, min(marks) / 2), 1)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("false positive rate (log scale; FPR 0 drawn at 1/(2 negatives))")
    ax.set_ylabel("true positive rate")
    ax.set_title(title or "ROC")
    ax.legend(fontsize=7, loc="lower right", title="TPR at FPR " + ", ".join(f"{m:.0e}" for m in marks),
              title_fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def pr_curves_png(results: dict[str, dict], path: Path, title: str = "") -> Path:
    """Precision-recall curves of detectors: `results` maps a name to facelab.metrics.face_detection's
    output (its `curve` and `ap50`); the AP is written in the legend."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for name, result in results.items():
        curve = result["curve"]
        recall, precision = np.concatenate([[0.0], curve["recall"]]), np.concatenate([[1.0], curve["precision"]])
        ax.plot(recall, precision, drawstyle="steps-post", label=f"{name}: AP {result['ap50']:.3f}")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title(title or "precision-recall")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def image_rows_png(rows: Sequence[Sequence[np.ndarray]], columns: Sequence[str], path: Path,
                   captions: Sequence[Sequence[str]] | None = None, title: str = "") -> Path:
    """A grid of RGB images, one row per example and one titled column per kind (e.g.
    blurred / restored / original), with an optional caption under each image."""
    n, k = len(rows), len(columns)
    plt = _pyplot()
    fig, axes = plt.subplots(n, k, figsize=(2.6 * k, 2.6 * n + 0.4), squeeze=False)
    for i, images in enumerate(rows):
        for j, image in enumerate(images):
            ax = axes[i][j]
            ax.imshow(np.asarray(image, np.uint8))
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(columns[j])
            if captions is not None and captions[i][j]:
                ax.set_xlabel(captions[i][j], fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def grouped_bars_png(groups: dict[str, dict[str, float | None]], path: Path, *, title: str = "",
                     ylabel: str = "") -> Path:
    """Bars side by side per group (missing values are left out), each labelled with its value."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(2.2 * len(groups) + 2, 4))
    names = list(dict.fromkeys(name for bars in groups.values() for name in bars))
    width = 0.8 / max(1, len(names))
    for j, name in enumerate(names):
        xs = [i + (j - (len(names) - 1) / 2) * width for i, bars in enumerate(groups.values()) if bars.get(name) is not None]
        ys = [bars[name] for bars in groups.values() if bars.get(name) is not None]
        drawn = ax.bar(xs, ys, width, label=name)
        ax.bar_label(drawn, fmt="%.2f", fontsize=7)
    ax.set_xticks(range(len(groups)), list(groups), fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)
