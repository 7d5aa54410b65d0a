"""Train facelab's emotion and age-gender models at their default configs on one GPU and score
their test splits exactly as `facelab submit` + `facelab score` do: the GPU evidence of issue 23.

    python3 scripts/gpu_runs.py --data .gpudata --out OUT [--only emotion|age-gender]
    .venv/bin/python scripts/gpu_runs.py --data ../shared/data --out /tmp/g --tiny   # CPU smoke run

- emotion: `EmotionTask.default_config` (the seed's VGG: base 64, 3 blocks, fc 1024; SGD with
  Nesterov momentum, LR halved on a PublicTest plateau, up to 100 epochs, stopped 15 epochs
  after the best) on real FER-2013: train = Training, early stopping and the kept epoch by
  PublicTest accuracy, test = the PrivateTest sample (60 per emotion); reported: accuracy on
  that balanced sample, macro-F1 and `accuracy_at_train_prior` (FerFormat.score).
- age-gender: `AgeGenderTask.default_config` (ResNet-18 width 64 at 112 px, AdamW, warm-up +
  cosine, 40 epochs, the kept epoch by validation age MAE) on real UTKFace with the format's
  seeded 70/15/15 split; reported: UTKFaceFormat.score (age MAE, gender and race accuracy,
  slices) and gender accuracy under / from 10 years (the README's one-liner).

What is facelab's and what is this script's: the model, `prepare` (decode and augmentation),
loss, `train_step`, optimizer, scheduler and `evaluate` are the tasks' own recipes; the epoch
logic (scheduler stepping, early stopping, the epoch record) is facelab.torch_train's helpers;
the test split is predicted by the task's own batch predictor (mirror TTA from the config)
from a model folder written as `fit_torch` writes it (model.pt, config.json), and the
submission is written and scored by the task's format. Only the driver differs from
`facelab train`: the GPU machine has no Ray (its cp312 wheel is 76 MiB, more than a whole
64 MiB `run` call may carry), so instead of a Ray Train TorchTrainer fed by Ray Data this is a
plain single-process torch loop on one GPU, fed by a torch DataLoader whose workers (14 by
default) call the recipe's `prepare` on batches of rows as Ray Data's `map_batches` would; the
best epoch's weights are kept in memory instead of Ray checkpoints; training steps run in fp32
(`--bf16` for bf16 autocast, under which age-gender diverged), channels-last, cudnn benchmark, and validation
(which picks the kept epoch and steps the LR) and the test predictions run in fp32 (TF32
matmuls) as `facelab submit` does. It runs without Ray: the task modules import Ray only where
they use it, and this script never does.

Data (`--data`): a folder holding `fer2013.npz` / `utkface.npz` (scripts/pack_gpu_data.py:
every original JPEG byte for byte, unpacked into `--work`) or the folders `fer2013/` and
`utkface/` (read in place). `--tiny`: about 300 images of each and 1 epoch (a CPU smoke run).

Time: `--time-budget-s` (default 450) caps the wall time from the script's start: a task stops
training before an epoch that would end past its deadline, keeping its best epoch so far (the
record says `stop: time budget`). With both tasks in one process, age-gender (run first) gets
25% of the budget and emotion the rest. Prediction and scoring take some seconds after it.

Output (`--out`, at most 7 files so they all come back from a `run` call): metrics.json
(rewritten after every task), and per task `<task>_history.csv` (rewritten every epoch),
`<task>_history.png` (facelab.plots.history_png) and `<task>_submission.csv`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

SCRIPTS = Path(__file__).resolve().parent
for folder in (SCRIPTS.parent / "platform", SCRIPTS):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

from pack_gpu_data import DATASETS, LABELS_CSV, copy_subset, pack_path, unpack  # noqa: E402

TASK_DATA = {task: name for name, task in DATASETS.items()}  # task -> data folder name
ORDER = ("age-gender", "emotion")  # the short run first: its result is in before the long one starts
AGE_GENDER_SHARE = 0.25  # of the time budget, when both tasks run in one process
TINY_IMAGES = 300
PREDICT_BATCH = 256


# --- Ray, which this script does not need ----------------------------------------------------

def ray_version() -> str:
    """'ray <version>', or 'not installed' (the GPU machine may lack it; nothing here uses it)."""
    try:
        import ray
    except ImportError:
        return "not installed"
    return f"ray {ray.__version__}"


# --- data --------------------------------------------------------------------------------------

def data_folder(data: Path, task: str, work: Path, subset: int | None) -> Path:
    """The task's data folder: unpacked from `<data>/<name>.npz`, else `<data>/<name>/` in place
    (copied when only a subset is wanted)."""
    name = TASK_DATA[task]
    packed, folder = pack_path(data, name), Path(data) / name
    if packed.is_file():
        return unpack(packed, work / name, subset)
    if not (folder / LABELS_CSV).is_file():
        sys.exit(f"{data}: neither {packed.name} nor {name}/{LABELS_CSV} (pack with scripts/pack_gpu_data.py)")
    return copy_subset(folder, work / name, subset) if subset else folder.resolve()


def split_frames(task: str, root: Path) -> dict[str, pd.DataFrame]:
    """train / val / test rows as the task's format reads them (columns `_row`, `file`, `path`
    and the labels), without Ray Data."""
    if task == "emotion":
        from facelab.formats.fer import _labelled_rows, _parse_batch

        return {split: _parse_batch(_labelled_rows(root, split), root).reset_index(drop=True)
                for split in ("train", "val", "test")}
    from facelab.formats.utkface import _parse_batch, labels_table, split_names

    table = labels_table(root).to_pandas()
    split = split_names(table["file"].tolist())
    return {s: _parse_batch(table[split == s], root).reset_index(drop=True) for s in ("train", "val", "test")}


class PreparedBatches:
    """A map-style torch Dataset whose items are whole batches: the rows at the sampled indices
    through the recipe's `prepare` (as Ray Data's map_batches does for fit_torch), non-numeric
    columns dropped, as tensors."""

    def __init__(self, frame: pd.DataFrame, recipe, config: dict, train: bool):
        self.columns = {c: frame[c].to_numpy() for c in frame.columns if not c.startswith("_")}
        self.recipe, self.config, self.train = recipe, config, train
        self.rows = len(frame)

    def __len__(self) -> int:
        return self.rows

    def __getitem__(self, indices):
        import torch

        from facelab.torch_train import _prepared_batch

        batch = {c: v[np.asarray(indices)] for c, v in self.columns.items()}
        out = _prepared_batch(batch, self.recipe, self.config, self.train)
        return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in out.items()}


def _worker_init(_):
    import cv2
    import torch

    cv2.setNumThreads(1)
    torch.set_num_threads(1)


def shm_limited(workers: int, batch_bytes: int, loaders: int = 2, prefetch: int = 4) -> tuple[int, int]:
    """(workers, prefetch) such that the batches waiting in shared memory (each worker holds
    `prefetch` of them, per loader) take at most 40% of /dev/shm's free space: a small /dev/shm
    (a container's 64 MB default) would otherwise kill the workers mid-epoch."""
    try:
        free = shutil.disk_usage("/dev/shm").free
    except OSError:
        return workers, prefetch
    room = int(0.4 * free // max(1, loaders * batch_bytes))
    if workers and room < workers * prefetch:
        prefetch = max(1, room // workers)
        workers = min(workers, max(1, room // prefetch))
    return workers, prefetch


def loader(frame: pd.DataFrame, recipe, config: dict, train: bool, batch_size: int, workers: int, pin: bool,
           prefetch: int = 4):
    from torch.utils.data import BatchSampler, DataLoader, RandomSampler, SequentialSampler

    dataset = PreparedBatches(frame, recipe, config, train)
    order = RandomSampler(dataset) if train else SequentialSampler(dataset)  # train reshuffled every epoch
    return DataLoader(dataset, batch_size=None, sampler=BatchSampler(order, batch_size, drop_last=False),
                      num_workers=workers, pin_memory=pin, persistent_workers=workers > 0,
                      prefetch_factor=prefetch if workers else None, worker_init_fn=_worker_init if workers else None,
                      multiprocessing_context="fork" if workers else None)


# --- training ----------------------------------------------------------------------------------

def on_device(batches, dev):
    for batch in batches:
        yield {k: v.to(dev, non_blocking=True) for k, v in batch.items()}


def clean(value):
    """JSON-safe numbers (NaN and infinities as null)."""
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    if isinstance(value, (np.floating, np.integer)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def train(task, config: dict, frames: dict[str, pd.DataFrame], model_dir: Path, out: Path, *, dev, workers: int,
          bf16: bool, deadline: float, seed: int) -> dict:
    """The recipe trained epoch by epoch as facelab.torch_train's loop does (scheduler stepped on
    the validation metrics, early stopping on `early_stop_patience`), the best epoch by the
    task's metric kept; writes the model folder and the history. Returns the run's record."""
    import torch

    from facelab import plots
    from facelab.torch_train import CONFIG_FILE, MODEL_FILE, _mean_across_workers, _stalled, _step_scheduler

    torch.manual_seed(seed)
    recipe, metric, mode = task.recipe, task.metric, task.mode
    cuda = dev.type == "cuda"
    model = recipe.build_model(config).to(dev)
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    optimizer = recipe.optimizer(model, config)
    scheduler = recipe.scheduler(optimizer, config)
    batch, eval_batch = int(config["batch_size"]), int(config.get("eval_batch_size") or config["batch_size"])
    workers, prefetch = shm_limited(workers, max(batch, eval_batch) * 3 * int(config["image_size"]) ** 2)
    train_batches = loader(frames["train"], recipe, config, True, batch, workers, cuda, prefetch)
    val_batches = loader(frames["val"], recipe, config, False, eval_batch, workers, cuda, prefetch)
    print(f"[{task.name}] {workers} DataLoader workers, prefetch {prefetch}", flush=True)
    autocast = torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16 and cuda)

    history, best, best_state, stop = [], None, None, "epochs"
    started, name = time.monotonic(), task.name.replace("-", "_")
    for epoch in range(1, int(config["epochs"]) + 1):
        if history and time.monotonic() + history[-1]["epoch_seconds"] > deadline:
            stop = "time budget"
            break
        began = time.monotonic()
        model.train()
        totals, count = {"train_loss": 0.0}, 0
        with autocast:
            for b in on_device(train_batches, dev):
                for key, value in recipe.train_step(model, b, optimizer, config).items():
                    totals[key] = totals.get(key, 0.0) + float(value)
                count += 1
        losses = _mean_across_workers(totals, count, dev)
        model.eval()
        with torch.no_grad():  # fp32: the metrics that pick the kept epoch and step the LR
            metrics = {k: float(v) for k, v in recipe.evaluate(model, on_device(val_batches, dev), config).items()}
        _step_scheduler(scheduler, metrics, metric)
        record = {"epoch": epoch, **losses, "lr": float(optimizer.param_groups[0]["lr"]), **metrics,
                  "epoch_seconds": time.monotonic() - began}
        history.append(record)
        if best is None or (metrics[metric] > best[metric] if mode == "max" else metrics[metric] < best[metric]):
            best = record
            best_state = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()}
        pd.DataFrame(history).to_csv(out / f"{name}_history.csv", index=False)
        print(f"[{task.name}] epoch {epoch}: " + ", ".join(f"{k} {v:.4g}" for k, v in record.items() if k != "epoch")
              + f" (best epoch {best['epoch']})", flush=True)
        if _stalled(history, metric, mode, config.get("early_stop_patience")):
            stop = "early stop"
            break
    seconds = time.monotonic() - started
    del model, optimizer, train_batches, val_batches
    if cuda:
        torch.cuda.empty_cache()

    model_dir.mkdir(parents=True, exist_ok=True)  # as fit_torch's export_checkpoint writes it
    torch.save(best_state, model_dir / MODEL_FILE)
    (model_dir / CONFIG_FILE).write_text(json.dumps(config, indent=2, default=str))
    frame = pd.DataFrame(history)
    frame.to_csv(out / f"{name}_history.csv", index=False)
    plots.history_png(frame, out / f"{name}_history.png", metric=metric, best_epoch=int(best["epoch"]), mode=mode)
    return {"epochs_run": len(history), "best_epoch": int(best["epoch"]), "stop": stop, "train_seconds": seconds,
            "dataloader": {"workers": workers, "prefetch": prefetch},
            "median_epoch_seconds": float(np.median(frame["epoch_seconds"])), "best": best}


# --- test predictions and scores ---------------------------------------------------------------

def predict(task, model_dir: Path, frame: pd.DataFrame) -> pd.DataFrame:
    """The task's batch predictor over the test rows, batch by batch (what `facelab submit`'s
    Ray Data actor pool runs)."""
    predictor = task.predictor_class(str(model_dir))
    parts = []
    for start in range(0, len(frame), PREDICT_BATCH):
        rows = frame.iloc[start:start + PREDICT_BATCH]
        parts.append(pd.DataFrame(predictor({c: rows[c].to_numpy() for c in ("_row", "file", "path")})))
    return pd.concat(parts, ignore_index=True).sort_values("_row").reset_index(drop=True)


def under_from_10(submission: Path, root: Path) -> dict[str, float]:
    """Gender accuracy under 10 years and from 10 up (the README's one-liner)."""
    merged = pd.read_csv(submission).merge(pd.read_csv(root / LABELS_CSV), on="file", suffixes=("_p", ""))
    right, child = merged["gender_p"] == merged["gender"], merged["age"] < 10
    return {"gender_accuracy_under_10": float(right[child].mean()) if child.any() else float("nan"),
            "gender_accuracy_from_10": float(right[~child].mean()) if (~child).any() else float("nan"),
            "n_under_10": float(child.sum()), "n_from_10": float((~child).sum())}


HEADLINE = {"emotion": ("accuracy", "f1_macro", "accuracy_at_train_prior", "n"),
            "age-gender": ("age_mae", "gender_accuracy", "race_accuracy", "gender_accuracy_under_10",
                           "gender_accuracy_from_10", "n")}


def run_task(task_name: str, args, dev, work: Path, deadline: float) -> dict:
    from facelab.tasks import get_task

    task = get_task(task_name)
    config = dict(task.default_config)
    if args.epochs:
        config["epochs"] = args.epochs
    root = data_folder(args.data, task_name, work, args.subset)
    frames = split_frames(task_name, root)
    print(f"[{task_name}] data {root}: " + ", ".join(f"{s} {len(f)}" for s, f in frames.items()), flush=True)
    model_dir = work / "models" / task_name
    record = train(task, config, frames, model_dir, args.out, dev=dev, workers=args.workers, bf16=args.bf16,
                   deadline=deadline, seed=args.seed)
    began = time.monotonic()
    predictions = predict(task, model_dir, frames["test"])
    submission = task.format.write_submission(task.predictions_frame(predictions),
                                              args.out / f"{task_name.replace('-', '_')}_submission.csv", data=root)
    scores = task.format.score(submission, root)  # `facelab score --truth <the data folder>`
    if task_name == "age-gender":
        scores.update(under_from_10(submission, root))
    record.update(test={k: scores[k] for k in HEADLINE[task_name] if k in scores}, test_all=scores,
                  predict_seconds=time.monotonic() - began, config=config,
                  rows={s: len(f) for s, f in frames.items()}, data=str(root))
    print(f"[{task_name}] test: " + ", ".join(f"{k} {v:.4f}" for k, v in record["test"].items()), flush=True)
    return record


def main(argv: list[str] | None = None) -> int:
    started = time.monotonic()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True,
                        help="a folder with fer2013.npz / utkface.npz, or with fer2013/ and utkface/")
    parser.add_argument("--out", type=Path, required=True, help="metrics.json, histories, curves and submissions")
    parser.add_argument("--only", choices=ORDER, help="one task (the two packs do not fit one run call together)")
    parser.add_argument("--work", type=Path, help="where data is unpacked and models written (default: a temp folder)")
    parser.add_argument("--time-budget-s", type=float, default=450.0, help="wall-time cap from the start (default 450)")
    parser.add_argument("--workers", type=int, default=max(0, min(14, (os.cpu_count() or 1) - 2)),
                        help="DataLoader worker processes calling the recipe's prepare (default: CPUs - 2, at most 14)")
    parser.add_argument("--epochs", type=int, help="override the default config's epochs")
    parser.add_argument("--subset", type=int, help="about N images per data set (seeded, as pack_gpu_data --subset)")
    parser.add_argument("--tiny", action="store_true", help=f"--subset {TINY_IMAGES} --epochs 1: a CPU smoke run")
    # fp32 by default: under bf16 autocast the default age-gender config diverged at epoch 2 on the
    # H200 (reports/gpu-2026-12-04/age_gender_bf16_log.txt) while fp32 trained normally.
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast for the training steps on CUDA")
    parser.add_argument("--no-bf16", dest="bf16", action="store_false", help="fp32 training (the default)")
    parser.add_argument("--device", help="cuda or cpu (default: cuda when available)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.tiny:
        args.subset, args.epochs = args.subset or TINY_IMAGES, args.epochs or 1
    args.out.mkdir(parents=True, exist_ok=True)
    work = args.work or Path(tempfile.mkdtemp(prefix="facelab-gpu-runs-"))

    ray = ray_version()
    import torch

    dev = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    tasks = [args.only] if args.only else list(ORDER)
    report = {"argv": sys.argv[1:] if argv is None else argv, "device": torch.cuda.get_device_name(dev)
              if dev.type == "cuda" else platform.processor() or "cpu", "torch": torch.__version__, "ray": ray,
              "python": platform.python_version(), "bf16_autocast": bool(args.bf16 and dev.type == "cuda"),
              "dataloader_workers": args.workers, "time_budget_s": args.time_budget_s, "tasks": {}}
    print(f"device {report['device']}, torch {torch.__version__}, {ray}, workers {args.workers}", flush=True)
    end = started + args.time_budget_s
    for task_name in tasks:
        share = AGE_GENDER_SHARE if task_name == "age-gender" and len(tasks) > 1 else 1.0
        deadline = time.monotonic() + share * (end - time.monotonic())
        report["tasks"][task_name] = run_task(task_name, args, dev, work, deadline)
        report["wall_seconds"] = time.monotonic() - started
        (args.out / "metrics.json").write_text(json.dumps(clean(report), indent=2))
    print(json.dumps(clean({t: r["test"] for t, r in report["tasks"].items()}), indent=2))
    print(f"wall {report['wall_seconds']:.0f} s; metrics in {args.out / 'metrics.json'}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
