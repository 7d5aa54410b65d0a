"""The model store: every fit's model, config, metrics, data fingerprint and library versions.

Layout under a URI (a local path, or any pyarrow filesystem such as s3:// or gs://):

    <uri>/<task>/runs/<run_id>/run.json      manifest: config, metrics, fingerprint, versions, sha256 of files
    <uri>/<task>/runs/<run_id>/model/...     the model files
    <uri>/<task>/promoted.json               {"run_id": ...}: the winner that serving and submissions load

Model files are only ever loaded from a run of this store, and only when their SHA-256 matches
the manifest written when they were stored, so a file swapped in from elsewhere is refused.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import platform as _platform
import shutil
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import pyarrow.fs as pafs

from facelab.errors import FacelabError

VERSIONED = ("facelab", "ray", "torch", "torchvision", "scikit-learn", "lightgbm", "numpy", "pandas", "pyarrow", "optuna")


def library_versions() -> dict[str, str]:
    out = {"python": _platform.python_version()}
    for name in VERSIONED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def fingerprint(path: str | os.PathLike) -> str:
    """SHA-256 over the relative names and contents of every file under `path` (or of one file)."""
    root = Path(path)
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    digest = hashlib.sha256()
    for file in files:
        digest.update(str(file.relative_to(root) if file != root else file.name).encode())
        with open(file, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class Run:
    """A stored run, fetched to a local folder: `model_dir` holds the verified model files."""

    task: str
    run_id: str
    manifest: dict
    model_dir: Path

    @property
    def config(self) -> dict:
        return self.manifest["config"]

    @property
    def metrics(self) -> dict:
        return self.manifest["metrics"]


class ModelStore:
    """Runs of every task under one URI."""

    def __init__(self, uri: str):
        self.uri = str(uri)
        if "://" in self.uri:
            self.fs, self.root = pafs.FileSystem.from_uri(self.uri)
        else:  # a local folder: absolute, so the URI handed on to Ray workers and Serve replicas still names it
            self.root = self.uri = str(Path(self.uri).expanduser().resolve())
            self.fs = pafs.LocalFileSystem()
        self.root = self.root.rstrip("/")

    # --- paths -------------------------------------------------------------------------
    def _run_path(self, task: str, run_id: str) -> str:
        return f"{self.root}/{task}/runs/{run_id}"

    def _read_json(self, path: str) -> dict:
        with self.fs.open_input_stream(path) as fh:
            return json.loads(fh.read().decode())

    def _write_json(self, path: str, value: dict) -> None:
        self.fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
        with self.fs.open_output_stream(path) as fh:
            fh.write(json.dumps(value, indent=2, sort_keys=True, default=str).encode())

    def _exists(self, path: str) -> bool:
        return self.fs.get_file_info(path).type != pafs.FileType.NotFound

    # --- writing -----------------------------------------------------------------------
    def save(
        self,
        task: str,
        model_dir: str | os.PathLike,
        *,
        config: dict,
        metrics: dict,
        data_fingerprint: str,
        extra: dict | None = None,
    ) -> str:
        """Store a fitted model folder with its manifest; returns the new run id."""
        run_id = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
        dest = self._run_path(task, run_id)
        model_dir = Path(model_dir)
        files = sorted(p for p in model_dir.rglob("*") if p.is_file())
        self.fs.create_dir(f"{dest}/model", recursive=True)
        pafs.copy_files(str(model_dir), f"{dest}/model", source_filesystem=pafs.LocalFileSystem(),
                        destination_filesystem=self.fs)
        manifest = {
            "task": task,
            "run_id": run_id,
            "created": dt.datetime.now(dt.timezone.utc).isoformat(),
            "config": config,
            "metrics": metrics,
            "data_fingerprint": data_fingerprint,
            "versions": library_versions(),
            "files": {str(p.relative_to(model_dir)): _sha256(p) for p in files},
            **(extra or {}),
        }
        self._write_json(f"{dest}/run.json", manifest)
        return run_id

    def promote(self, task: str, run_id: str) -> None:
        """Mark `run_id` the winner of `task`: serving and submissions load it by task name."""
        if not self._exists(f"{self._run_path(task, run_id)}/run.json"):
            raise FacelabError(f"no run '{run_id}' of task '{task}' in store {self.uri}")
        self._write_json(f"{self.root}/{task}/promoted.json", {
            "run_id": run_id, "promoted": dt.datetime.now(dt.timezone.utc).isoformat()})

    # --- sweeps: Tune's experiment folders live in the store, beside the runs -------------
    SWEEP_FILE = "facelab_sweep.json"  # in an experiment folder: what `resume` needs to rebuild the sweep

    def sweeps_path(self, task: str) -> str:
        """Where `task`'s Tune experiments go: a URI for an object store, else a local path."""
        return f"{(self.uri if '://' in self.uri else self.root).rstrip('/')}/{task}/sweeps"

    @staticmethod
    def _experiment(path: str) -> tuple[pafs.FileSystem, str]:
        if "://" in path:
            return pafs.FileSystem.from_uri(path)
        return pafs.LocalFileSystem(), str(Path(path).resolve())

    def save_sweep(self, experiment: str, value: dict) -> None:
        """The sweep's own description, written into its experiment folder."""
        fs, path = self._experiment(experiment)
        fs.create_dir(path, recursive=True)
        with fs.open_output_stream(f"{path}/{self.SWEEP_FILE}") as fh:
            fh.write(json.dumps(value, indent=2, default=str).encode())

    def read_sweep(self, experiment: str) -> dict:
        fs, path = self._experiment(experiment)
        if fs.get_file_info(f"{path}/{self.SWEEP_FILE}").type == pafs.FileType.NotFound:
            raise FacelabError(f"{experiment}: not a facelab sweep (no {self.SWEEP_FILE})")
        with fs.open_input_stream(f"{path}/{self.SWEEP_FILE}") as fh:
            try:
                return json.loads(fh.read().decode())
            except ValueError as exc:
                raise FacelabError(f"{experiment}/{self.SWEEP_FILE}: unreadable ({exc})") from None

    # --- reading -----------------------------------------------------------------------
    def runs(self, task: str) -> list[dict]:
        """Manifests of every run of `task`, oldest first."""
        base = f"{self.root}/{task}/runs"
        if not self._exists(base):
            return []
        infos = self.fs.get_file_info(pafs.FileSelector(base))
        manifests = [self._read_json(f"{i.path}/run.json") for i in infos if i.type == pafs.FileType.Directory
                     and self._exists(f"{i.path}/run.json")]
        return sorted(manifests, key=lambda m: m["created"])

    def promoted(self, task: str) -> str:
        path = f"{self.root}/{task}/promoted.json"
        if not self._exists(path):
            raise FacelabError(f"task '{task}' has no promoted model in store {self.uri}: "
                               f"run `facelab tune --task {task}` or `facelab promote --task {task} --run RUN_ID`")
        return self._read_json(path)["run_id"]

    def load(self, task: str, run_id: str | None = None, *, cache_dir: str | os.PathLike | None = None,
             check_config: Callable[..., dict] | None = None) -> Run:
        """Fetch a run (the promoted one by default) to a local folder and verify every file.
        `check_config(config, source=...)` (the task's `Task.config`) checks the run's stored config
        first: an unknown or ill-typed key is a FacelabError naming the run."""
        run_id = run_id or self.promoted(task)
        src = self._run_path(task, run_id)
        if not self._exists(f"{src}/run.json"):
            raise FacelabError(f"no run '{run_id}' of task '{task}' in store {self.uri}")
        manifest = self._read_json(f"{src}/run.json")
        if check_config is not None:
            check_config(manifest["config"], source=f"{self.uri}: run '{run_id}'")
        if isinstance(self.fs, pafs.LocalFileSystem):
            local = Path(f"{src}/model")
        else:
            local = Path(cache_dir or tempfile.mkdtemp(prefix="facelab-run-")) / task / run_id
            if local.exists():
                shutil.rmtree(local)
            local.mkdir(parents=True)
            pafs.copy_files(f"{src}/model", str(local), source_filesystem=self.fs,
                            destination_filesystem=pafs.LocalFileSystem())
        for name, digest in manifest["files"].items():
            path = local / name
            if not path.is_file() or _sha256(path) != digest:
                raise FacelabError(f"{path}: checksum does not match run {run_id}'s manifest; refusing to load it")
        return Run(task, run_id, manifest, local)
