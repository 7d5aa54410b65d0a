"""Learning curves of scripts/backbone_runs.sh: per task, each validation metric by epoch for the
model started from the backbone and the one from random init, from their stored histories.

    python scripts/backbone_curves.py STORE OUT     # reads OUT/runs.csv, writes OUT/<task>-curves.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from facelab.store import ModelStore  # noqa: E402

SKIP = {"epoch", "train_loss", "lr", "nodes", "worker_group", "val_loss"}


def curves(store: str, out: Path) -> list[Path]:
    runs = pd.read_csv(out / "runs.csv").drop_duplicates(["task", "start"], keep="last")
    written = []
    for task, group in runs.groupby("task"):
        histories = {row.start: pd.read_csv(ModelStore(store).load(task, row.run_id).model_dir / "history.csv")
                     for row in group.itertuples()}
        metrics = [c for c in next(iter(histories.values())).columns
                   if c not in SKIP and all(c in h for h in histories.values())]
        fig, axes = plt.subplots(1, len(metrics), figsize=(3.6 * len(metrics), 3.2), squeeze=False)
        for ax, metric in zip(axes[0], metrics):
            for start, history in histories.items():
                ax.plot(history["epoch"], history[metric], marker="o", label=start)
            ax.set_title(metric)
            ax.set_xlabel("epoch")
        axes[0][0].legend(title="start")
        fig.suptitle(f"{task}: validation by epoch")
        fig.tight_layout()
        path = out / f"{task}-curves.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("store")
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    for path in curves(args.store, args.out):
        print(path)


if __name__ == "__main__":
    main()
