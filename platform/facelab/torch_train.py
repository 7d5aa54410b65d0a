"""The one Ray Train mechanism every torch task trains through (contract: TRAIN_API.md).

A task supplies a `TorchRecipe` (model, per-batch preparation, loss, validation metrics,
optimizer, scheduler); `fit_torch` runs it as a `TorchTrainer` over Ray Data:

- preparation (decode, augment, to float arrays) runs in Ray Data `map_batches` tasks, never in
  the driver; the train split is sharded across the workers (`get_dataset_shard`,
  `iter_torch_batches`), the validation split is read whole by rank 0, which computes the
  metrics and broadcasts them so every worker steps its LR scheduler alike;
- the model is wrapped for DDP by `ray.train.torch.prepare_model`, one GPU per worker when the
  cluster has GPUs;
- every epoch rank 0 reports its metrics with a checkpoint (model, optimizer, scheduler, epoch
  and the history so far); a worker failure restarts the group from the latest checkpoint
  (`FailureConfig(max_failures)`), and a rerun with the same name and storage resumes too;
- the best checkpoint by the task's metric (kept by `CheckpointConfig`) becomes the model
  folder: `model.pt`, `config.json`, `history.csv`, `history.png`.

Inside a Tune trial (`in_tune=True`) the trainer reports every epoch to Tune through
`TuneReportCallback`, so ASHA can stop a bad trial early.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from facelab.formats.base import LAZY_STEP_CPUS

STATE_FILE = "state.pt"  # a checkpoint's state: tensors and plain values only, so every load is weights_only=True
MODEL_FILE = "model.pt"
CONFIG_FILE = "config.json"
# Rank 0 reports its worker group's placement group id with every epoch. A Train run stopped with
# its Tune trial (an ASHA stop kills the trial and its Train controller) leaves that group holding
# its CPUs until the driver exits (a group's lifetime is its job's); the sweep's driver frees it
# from this id (tasks/torch_task.py ReleaseWorkerGroups), with public APIs only.
WORKER_GROUP = "worker_group"
HISTORY_CSV = "history.csv"
VAL_KEEP_BYTES = 256 * 2**20  # validation batches kept between epochs up to this size (ValidationBatches)
HISTORY_PNG = "history.png"
# Ray Data preparation tasks take half a CPU so they still fit beside the workers on a small machine.
PREPARE_CPUS = LAZY_STEP_CPUS
SHUFFLE_ROWS = 256  # rows each train worker shuffles locally, on top of the blocks' random order


class TorchRecipe:
    """What a torch task contributes; one subclass per task, defined in the task's module.

    The config is a task's full config: the mechanism reads the keys of
    `facelab.task_config.TorchConfig` (`epochs`, `batch_size` per worker, `lr`, `weight_decay`,
    `eval_batch_size`, `num_workers`, `cpus_per_worker`, `early_stop_patience`: stop once the
    metric has not improved for that many epochs), the recipe its own.
    """

    def build_model(self, config: dict) -> torch.nn.Module:  # noqa: F821
        raise NotImplementedError

    def prepare(self, batch: dict[str, np.ndarray], config: dict, train: bool) -> dict[str, np.ndarray]:
        """Runs inside Ray Data (`map_batches`), never in the driver: decode, augment, to float
        arrays. Columns that are not numeric (paths, names) are dropped after this step, so
        the loss and evaluate only see tensors. Default: identity."""
        return batch

    def loss(self, model, batch: dict, config: dict):
        """The training loss of one batch (a dict of tensors on the model's device)."""
        raise NotImplementedError

    def train_step(self, model, batch: dict, optimizer, config: dict) -> dict[str, float]:
        """One optimisation step on one batch; returns the numbers to log, averaged over the
        epoch and the workers into the epoch's record (`train_loss` is required). Default: one
        optimizer on `loss`. Override it for several optimizers (a GAN): `optimizer()` then
        returns an `Optimizers` of them, checkpointed and restored as one."""
        optimizer.zero_grad(set_to_none=True)
        loss = self.loss(model, batch, config)
        loss.backward()
        optimizer.step()
        return {"train_loss": float(loss.detach())}

    def evaluate(self, model, batches, config: dict) -> dict[str, float]:
        """Metrics over the whole validation set (an iterable of torch batches, on the
        model's device; called in eval mode under `torch.no_grad`)."""
        raise NotImplementedError

    def optimizer(self, model, config: dict):
        import torch

        return torch.optim.AdamW(model.parameters(), lr=float(config["lr"]), weight_decay=float(config["weight_decay"]))

    def scheduler(self, optimizer, config: dict):
        """None, or a torch LR scheduler stepped once per epoch (ReduceLROnPlateau is stepped
        with the epoch's validation metric)."""
        return


class Optimizers(dict):
    """Named optimizers that train as one (a GAN's generator and discriminator): what
    `TorchRecipe.optimizer` returns for a `train_step` that steps several. Checkpointed and
    restored together; `param_groups` lists every optimizer's groups, the first one's LR is logged."""

    @property
    def param_groups(self) -> list:
        return [group for optimizer in self.values() for group in optimizer.param_groups]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for optimizer in self.values():
            optimizer.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict:
        return {name: optimizer.state_dict() for name, optimizer in self.items()}

    def load_state_dict(self, state: dict) -> None:
        for name, optimizer in self.items():
            optimizer.load_state_dict(state[name])


def device():
    """cuda when a GPU is visible, else cpu (what predictors load models onto)."""
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def default_storage() -> str:
    """Where training runs keep their checkpoints: $FACELAB_TRAIN_STORAGE (a path or a URI
    such as s3://bucket/train; on a cluster it must be shared), else ~/.facelab/train."""
    return os.environ.get("FACELAB_TRAIN_STORAGE") or str(Path.home() / ".facelab" / "train")


# --- inside Ray Data ------------------------------------------------------------------------

def _prepared_batch(batch: dict[str, np.ndarray], recipe: TorchRecipe, config: dict, train: bool) -> dict:
    out = recipe.prepare(batch, config, train)
    return {k: v for k, v in out.items() if np.asarray(v).dtype.kind not in "OUSV"}


# --- inside each Train worker ---------------------------------------------------------------

def _unwrapped(model):
    return model.module if hasattr(model, "module") else model


def _mean_across_workers(totals: dict[str, float], count: int, dev) -> dict[str, float]:
    import torch
    import torch.distributed as dist

    names = sorted(totals)
    sums = torch.tensor([*(totals[n] for n in names), float(count)], dtype=torch.float64, device=dev)
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(sums)
    return {name: float(sums[i] / max(sums[-1].item(), 1.0)) for i, name in enumerate(names)}


def _step_scheduler(scheduler, metrics: dict, metric: str) -> None:
    import torch

    if scheduler is None:
        return
    if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        scheduler.step(metrics[metric])
    else:
        scheduler.step()


def _restore(model, recipe: TorchRecipe, config: dict):
    """(model, optimizer, scheduler, last finished epoch, history) from ray.train.get_checkpoint()."""
    import ray.train
    import ray.train.torch
    import torch

    state = None
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            state = torch.load(Path(folder) / STATE_FILE, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
    model = ray.train.torch.prepare_model(model)
    optimizer = recipe.optimizer(_unwrapped(model), config)
    scheduler = recipe.scheduler(optimizer, config)
    if state is None:
        return model, optimizer, scheduler, 0, []
    optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None and state.get("scheduler") is not None:
        scheduler.load_state_dict(state["scheduler"])
    return model, optimizer, scheduler, int(state["epoch"]), list(state["history"])


def _train_epoch(model, optimizer, recipe: TorchRecipe, config: dict, dev) -> dict[str, float]:
    """The epoch's mean of every number `train_step` logs (every worker must log the same names)."""
    import ray.train

    model.train()
    totals: dict[str, float] = {"train_loss": 0.0}
    count = 0
    shard = ray.train.get_dataset_shard("train")
    batch_size = int(config["batch_size"])
    for batch in shard.iter_torch_batches(batch_size=batch_size, device=dev, local_shuffle_buffer_size=SHUFFLE_ROWS):
        for name, value in recipe.train_step(model, batch, optimizer, config).items():
            totals[name] = totals.get(name, 0.0) + float(value)
        count += 1
    return _mean_across_workers(totals, count, dev)


def _stalled(history: list[dict], metric: str, mode: str, patience: int | None) -> bool:
    """True when the best epoch by `metric` is `patience` or more epochs back (early stopping)."""
    if not patience:
        return False
    values = [float(r[metric]) for r in history]
    best = int(np.argmax(values) if mode == "max" else np.argmin(values))
    return len(history) - 1 - best >= int(patience)


class ValidationBatches:
    """Rank 0's validation batches. Validation is not augmented, so the first epoch's batches are
    kept (when they total at most `max_bytes`) and later epochs score those instead of running the
    split's Ray Data pipeline again: that pass cost more than the scoring on small splits
    (bench/train_overhead.py). Larger splits are read from the shard every epoch."""

    def __init__(self, config: dict, dev, max_bytes: int = VAL_KEEP_BYTES):
        self.batch_size = int(config["eval_batch_size"] or config["batch_size"])
        self.dev, self.max_bytes = dev, max_bytes
        self.kept: list[dict] | None = None
        self.too_big = False

    def __iter__(self):
        import ray.train

        if self.kept is not None:
            yield from (dict(batch) for batch in self.kept)  # a copy: evaluate may replace a column
            return
        batches = ray.train.get_dataset_shard("val").iter_torch_batches(batch_size=self.batch_size, device=self.dev)
        kept, size = [], 0
        for batch in batches:
            if not self.too_big:
                size += sum(v.nelement() * v.element_size() for v in batch.values() if hasattr(v, "element_size"))
                self.too_big = size > self.max_bytes
                if self.too_big:
                    kept.clear()
                else:
                    kept.append(batch)
            yield dict(batch)
        if not self.too_big:  # a pass read to its end (an evaluate that stopped early keeps nothing)
            self.kept = kept


def _validate(model, recipe: TorchRecipe, config: dict, batches: ValidationBatches) -> dict[str, float]:
    """Rank 0 scores the whole validation split; every worker gets its numbers."""
    import ray.train
    import torch
    from ray.train.collective import broadcast_from_rank_zero

    metrics = None
    if ray.train.get_context().get_world_rank() == 0:
        model.eval()
        with torch.no_grad():
            metrics = {k: float(v) for k, v in recipe.evaluate(_unwrapped(model), batches, config).items()}
    return broadcast_from_rank_zero(metrics)


def _report(record: dict, state: dict, config: dict) -> None:
    import ray.train
    import torch

    if ray.train.get_context().get_world_rank() != 0:
        ray.train.report(record)
        return
    from ray.util import get_current_placement_group

    group = get_current_placement_group()
    reported = {**record, WORKER_GROUP: group.id.hex()} if group is not None else record
    with tempfile.TemporaryDirectory(prefix="facelab-ckpt-") as folder:
        torch.save(state, Path(folder) / STATE_FILE)
        (Path(folder) / CONFIG_FILE).write_text(json.dumps(config, indent=2, default=str))
        ray.train.report(reported, checkpoint=ray.train.Checkpoint.from_directory(folder))


def _worker_nodes() -> str:
    """The Ray node id of every worker of the group, in rank order, comma-separated (the same on
    every worker): each epoch's record carries it, so a run's history and its Tune results say
    where every epoch ran (and where a run resumed after losing a node)."""
    import ray
    import torch.distributed as dist

    node = ray.get_runtime_context().get_node_id()
    if not (dist.is_available() and dist.is_initialized()):
        return node
    nodes = [None] * dist.get_world_size()
    dist.all_gather_object(nodes, node)
    return ",".join(nodes)


def seed_everything(seed: int) -> None:
    """Seed torch, numpy and random in this process. Ray reuses worker processes (and the embedded
    Ray keeps idle ones), so without it a fit's initial weights and noise would depend on whatever
    ran in the process before."""
    import random

    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _train_loop(loop: dict) -> None:
    """The per-worker training function of `fit_torch`'s TorchTrainer."""
    import ray.train.torch
    import torch

    import ray

    recipe, config, metric = loop["recipe"], loop["config"], loop["metric"]
    torch.set_num_threads(loop["threads"])
    seed_everything(int(config["seed"]) + ray.train.get_context().get_world_rank())
    dev = ray.train.torch.get_device()
    model = recipe.build_model(config)
    if loop.get("start") is not None:  # a backbone's trunk; a checkpoint, when resuming, replaces it
        from facelab.backbone import load_trunk

        load_trunk(model, ray.get(loop["start"]), freeze=bool(config.get("freeze_backbone")))
    model, optimizer, scheduler, done, history = _restore(model, recipe, config)
    nodes = _worker_nodes()
    validation = ValidationBatches(config, dev)
    for epoch in range(done + 1, int(config["epochs"]) + 1):
        began = time.perf_counter()
        losses = _train_epoch(model, optimizer, recipe, config, dev)
        trained = time.perf_counter()
        metrics = _validate(model, recipe, config, validation)
        # where an epoch's time goes (bench/train_overhead.py reads them; the rest of the interval
        # between two epochs' records is the checkpoint and report)
        seconds = {"train_s": round(trained - began, 4), "val_s": round(time.perf_counter() - trained, 4)}
        _step_scheduler(scheduler, metrics, metric)
        record = {"epoch": epoch, **losses, "lr": float(optimizer.param_groups[0]["lr"]), **metrics, **seconds,
                  "nodes": nodes}
        history.append(record)
        state = {"model": _unwrapped(model).state_dict(), "optimizer": optimizer.state_dict(),
                 "scheduler": scheduler.state_dict() if scheduler is not None else None,
                 "epoch": epoch, "history": history}
        _report(record, state, config)
        if _stalled(history, metric, loop["mode"], config["early_stop_patience"]):
            break  # every worker has the same history, so all stop here


# --- the driver ----------------------------------------------------------------------------

def _scaling(config: dict, num_workers: int | None, use_gpu: bool | None, cpus_per_worker: float | None):
    """ScalingConfig from the cluster: a GPU per worker when there are GPUs; CPUs per worker
    leave one CPU for Ray Data preparation. CPU workers spread over the nodes (each node's cores
    for one worker's threads; on one node, or when the others are full, they share it), GPU
    workers pack (Ray Train's default)."""
    import ray
    from ray.train import ScalingConfig

    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    use_gpu = gpus > 0 if use_gpu is None else use_gpu
    workers = int(num_workers or config["num_workers"] or (gpus if use_gpu else 1))
    cpus = cpus_per_worker or config["cpus_per_worker"]
    if not cpus:
        cpus = max(0.25, min(4.0, (resources.get("CPU", 1) - 1) / workers))
    return ScalingConfig(num_workers=workers, use_gpu=use_gpu, resources_per_worker={"CPU": float(cpus)},
                         placement_strategy="PACK" if use_gpu else "SPREAD"), float(cpus)


def _best(result, metric: str, mode: str):
    """(checkpoint, metrics) of the best reported epoch among the kept checkpoints."""
    kept = [(c, m) for c, m in (result.best_checkpoints or []) if m.get(metric) is not None]
    if not kept:
        raise RuntimeError(f"training '{result.path}' reported no checkpoint with metric '{metric}'")
    pick = max if mode == "max" else min
    return pick(kept, key=lambda cm: float(cm[1][metric]))


def _numbers(record: dict) -> dict[str, float]:
    return {k: float(v) for k, v in record.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def export_checkpoint(best, latest, model_dir: Path, *, metric: str, mode: str) -> dict[str, float]:
    """Write the model folder from the best checkpoint (weights, config) and the latest one
    (the full history): model.pt, config.json, history.csv, history.png. Returns the best
    epoch's reported metrics."""
    import pandas as pd
    import torch

    from facelab import plots

    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    with best.as_directory() as folder:
        state = torch.load(Path(folder) / STATE_FILE, map_location="cpu", weights_only=True)
        (model_dir / CONFIG_FILE).write_text((Path(folder) / CONFIG_FILE).read_text())
    torch.save(state["model"], model_dir / MODEL_FILE)
    with (latest or best).as_directory() as folder:
        history = torch.load(Path(folder) / STATE_FILE, map_location="cpu", weights_only=True)["history"]
    frame = pd.DataFrame(history)
    frame.to_csv(model_dir / HISTORY_CSV, index=False)
    plots.history_png(frame, model_dir / HISTORY_PNG, metric=metric, best_epoch=int(state["epoch"]), mode=mode)
    return _numbers(state["history"][-1])


def fit_torch(recipe: TorchRecipe, config: dict, datasets: dict[str, Any], model_dir: Path | None, *,
              metric: str, mode: str, name: str, storage_path: str | None = None,
              num_workers: int | None = None, use_gpu: bool | None = None, cpus_per_worker: float | None = None,
              max_failures: int = 2, in_tune: bool = False, storage_filesystem=None,
              start: dict | None = None) -> dict[str, float]:
    """Train `recipe` with `config` on `datasets` ("train" sharded, "val" read by rank 0)
    as a TorchTrainer; write the best epoch's model into `model_dir` (skipped when None) and
    return that epoch's metrics. A rerun with the same `name` and `storage_path` resumes from
    the run's latest checkpoint (raise `epochs` to train on). `storage_filesystem` (a pyarrow
    filesystem) makes `storage_path` a path on it rather than a URI. TorchConfig keys that
    `config` lacks take TorchConfig's defaults. `start`: a backbone trunk's weights
    (facelab.backbone.pin) that every worker copies into the model before training."""
    import ray
    from ray.train import CheckpointConfig, DataConfig, FailureConfig, RunConfig
    from ray.train.torch import TorchTrainer

    from facelab.task_config import TorchConfig

    config = {**TorchConfig.optional_defaults(), **config}
    scaling, cpus = _scaling(config, num_workers, use_gpu, cpus_per_worker)
    prepared = {split: ds.map_batches(_prepared_batch, batch_format="numpy", num_cpus=PREPARE_CPUS,
                                      fn_kwargs={"recipe": recipe, "config": config, "train": split == "train"})
                for split, ds in datasets.items()}
    # validation images are prepared the same way every epoch (no augmentation): once, here, rather
    # than a pipeline rank 0 starts again per epoch (bench/train_overhead.py measured seconds each;
    # left to rank 0's first epoch, that pass took 5-6 s more there than here)
    prepared = {split: ds if split == "train" else ds.materialize() for split, ds in prepared.items()}
    callbacks = []
    if in_tune:
        from ray.tune.integration.ray_train import TuneReportCallback

        callbacks.append(TuneReportCallback())
    trainer = TorchTrainer(
        _train_loop,
        train_loop_config={"recipe": recipe, "config": config, "metric": metric, "mode": mode,
                           "threads": max(1, math.ceil(cpus)), "start": ray.put(start) if start is not None else None},
        scaling_config=scaling,
        run_config=RunConfig(
            name=name, storage_path=storage_path or default_storage(), storage_filesystem=storage_filesystem,
            callbacks=callbacks,
            failure_config=FailureConfig(max_failures=max_failures),
            # the best by metric is kept; the latest is always kept as well (to resume from)
            checkpoint_config=CheckpointConfig(num_to_keep=1, checkpoint_score_attribute=metric,
                                               checkpoint_score_order=mode)),
        datasets=prepared,
        dataset_config=DataConfig(datasets_to_split=["train"]),
    )
    result = trainer.fit()
    best, best_metrics = _best(result, metric, mode)
    if model_dir is None:
        return _numbers(best_metrics)
    return export_checkpoint(best, result.checkpoint, model_dir, metric=metric, mode=mode)


def release_worker_group(group_id: str) -> bool:
    """Remove a Train run's worker group (placement group, by id) unless it is gone already;
    whether it was removed. See `WORKER_GROUP`."""
    import ray
    from ray.util.placement_group import PlacementGroup, placement_group_table, remove_placement_group

    group = PlacementGroup(ray.PlacementGroupID(bytes.fromhex(group_id)))
    if placement_group_table(group).get("state") in (None, "REMOVED"):
        return False
    remove_placement_group(group)
    return True


def load_model(recipe: TorchRecipe, model_dir: Path, device_name: str | None = None):
    """The model of a model folder (config.json + model.pt), in eval mode, on a GPU when one
    is visible (or on `device_name`)."""
    import torch

    model_dir = Path(model_dir)
    config = json.loads((model_dir / CONFIG_FILE).read_text())
    model = recipe.build_model(config)
    model.load_state_dict(torch.load(model_dir / MODEL_FILE, map_location="cpu", weights_only=True))
    return model.to(torch.device(device_name) if device_name else device()).eval()
