"""A YOLO fit as a Ray Tune trial.

`trial(config, data)` is a Ray Tune function trainable. It trains in the trial's working
directory (synced to the trial directory), and every epoch reports the task's own validation
metrics (scored by the task's `scorer` from ultralytics' validation predictions) to Tune with a
checkpoint (`last.pt` + `results.csv`), so ASHA can stop it, `Tuner.restore` resumes it from its
latest epoch, and the best epoch's weights can be promoted (`facelab.yolo.export`). `fit` runs
one such trial (the resources come from the cluster: a GPU when it has one).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from facelab.errors import FacelabError
from facelab.yolo.layout import Scorer, YoloData, materialize
from facelab.yolo.train import TRAINERS, epoch_metrics, train_args


def _reporter(scorer: Scorer):
    def report_epoch(trainer) -> None:
        from ray import tune

        if not trainer.validator.training:  # ultralytics' final re-validation of best.pt, not an epoch
            return
        with tempfile.TemporaryDirectory(prefix="facelab-yolo-ckpt-") as tmp:
            shutil.copyfile(trainer.last, Path(tmp) / "last.pt")
            if trainer.csv.is_file():
                shutil.copyfile(trainer.csv, Path(tmp) / "results.csv")
            tune.report(epoch_metrics(trainer, scorer), checkpoint=tune.Checkpoint.from_directory(tmp))

    return report_epoch


def trial(config: dict, data: YoloData) -> None:
    """Ray Tune function trainable: one ultralytics fit of `config` on `data`, reporting every
    epoch with a checkpoint; restored from its latest checkpoint when Tune resumes it."""
    from ray import tune

    source = materialize(data, merge_val=bool(config["merge_val"]), crop_double=float(config["crop_double"]))
    save_dir = Path.cwd() / "yolo"  # the trial's working directory, synced to its trial directory
    args = train_args(config, data.kind, source, save_dir)
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        (save_dir / "weights").mkdir(parents=True, exist_ok=True)
        with checkpoint.as_directory() as saved:
            shutil.copyfile(Path(saved) / "last.pt", save_dir / "weights" / "last.pt")
            if (Path(saved) / "results.csv").is_file():
                shutil.copyfile(Path(saved) / "results.csv", save_dir / "results.csv")
        if _finished(save_dir / "weights" / "last.pt"):
            return
        args["resume"] = str(save_dir / "weights" / "last.pt")
    trainer = TRAINERS[data.kind](overrides=args)
    trainer.add_callback("on_fit_epoch_end", _reporter(data.scorer))
    trainer.train()


def _finished(last: Path) -> bool:
    """Whether a checkpoint already holds its run's last epoch (nothing left to resume)."""
    from facelab.yolo.export import load_checkpoint

    ckpt = load_checkpoint(last)  # ultralytics' safe load (the checkpoint pickles its model object)
    return ckpt.get("epoch", -1) + 1 >= int(ckpt.get("train_args", {}).get("epochs", 0))


def trial_resources() -> dict:
    """Per trial: with GPUs, one GPU and its share of the CPUs (up to 8, for the data loaders);
    without, 2 CPUs (the whole of a small machine)."""
    import ray

    total = ray.cluster_resources()
    cpus, gpus = float(total.get("CPU", 1)), int(total.get("GPU", 0))
    if gpus:
        return {"cpu": max(1.0, min(8.0, cpus // gpus)), "gpu": 1}
    return {"cpu": max(1.0, min(2.0, cpus))}


def run_config(name: str, storage: str, metric: str, mode: str, **kwargs):
    """Trial directories keep the best and the latest checkpoint and ultralytics' plots."""
    from ray import tune

    return tune.RunConfig(
        name=name, storage_path=storage,
        checkpoint_config=tune.CheckpointConfig(num_to_keep=1, checkpoint_score_attribute=metric,
                                                checkpoint_score_order=mode),
        sync_config=tune.SyncConfig(sync_artifacts=True), **kwargs)


def fit(config: dict, trainable, *, metric: str, mode: str, name: str, storage: str | None = None):
    """One YOLO fit as a single Tune trial of `trainable` (facelab.trial.trainable of the task);
    returns its `ray.tune.Result` (raises if it failed)."""
    from ray import tune

    from facelab.torch_train import default_storage

    tuner = tune.Tuner(
        trainable,
        param_space=config,
        tune_config=tune.TuneConfig(num_samples=1),
        run_config=run_config(name, storage or default_storage(), metric, mode, verbose=1),
    )
    result = tuner.fit()[0]
    if result.error:
        raise FacelabError(f"YOLO fit '{name}' failed: {result.error}")
    return result
