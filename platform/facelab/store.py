"""The model store: every fit's model, config, metrics, data fingerprint and library versions.

Layout under a URI (a local path, or any pyarrow filesystem such as s3:// or gs://):

    <uri>/<task>/runs/<run_id>/run.json      manifest: config, metrics, fingerprint, versions, sha256 of
                                             every model file, and the manifest's own digest (+ HMAC)
    <uri>/<task>/runs/<run_id>/model/...     the model files, every one listed in the manifest
    <uri>/<task>/promoted.json               the promotion in force: {"run_id": ...}
    <uri>/<task>/promotions/<time>-<id>.json every promotion ever made (the history)

Writes never leave a torn file. On a local path every file is written to a temporary name in its
folder and renamed (`os.replace`), and a run's whole folder is built under a hidden temporary name
and renamed into `runs/` in one step. On an object store an object appears whole when its upload
completes; a run's model objects are written first and its manifest last, so a run without
`run.json` is an unfinished save. `promote` writes its history record and then `promoted.json`;
on a local path under a lock (`flock`), so concurrent promotes are serialised and each is
recorded; on an object store (no locks there) each is recorded in the history under a key that
sorts by time, and the latest record of the history is in force (`promoted.json` there is a copy
for people and older readers): two concurrent promotes are both recorded, and every reader agrees
on the winner whichever `promoted.json` write landed last. Readers see the old promotion or the new one.

Model files are only ever loaded from a run of this store: every file of the run must be in its
manifest (a file the manifest does not list refuses the run), every file's SHA-256 must match, and
the manifest's digest must match its content. With a signing key (`ModelStore(uri, key=...)` or
$FACELAB_STORE_KEY) manifests and promotions also carry an HMAC-SHA256, and one without a valid
HMAC is refused: whoever can write to the bucket but lacks the key cannot swap a model file even
when they rewrite its checksum and the digest too. A torn or unreadable `run.json` or
`promoted.json` is a one-line FacelabError naming the file.

Runs of a remote store are fetched to a local cache (`$FACELAB_CACHE/store/...`, one folder per
run, reused while it verifies): a fetch is downloaded to a temporary folder that is renamed into
place once verified, or removed when anything fails, so no stray copies accumulate; a task keeps
its $FACELAB_CACHE_KEEP (3) most recently used runs there, older copies go once idle for an hour.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import hmac
import json
import os
import platform as _platform
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import pyarrow.fs as pafs

from facelab.atomic import write_bytes_atomic
from facelab.errors import FacelabError

try:
    import fcntl
except ImportError:  # pragma: no cover - not on POSIX: promotes are not serialised across processes
    fcntl = None

VERSIONED = ("facelab", "ray", "torch", "torchvision", "scikit-learn", "lightgbm", "numpy", "pandas", "pyarrow", "optuna")
MANIFEST = "run.json"
PROMOTED = "promoted.json"
PROMOTIONS = "promotions"
KEY_ENV = "FACELAB_STORE_KEY"
SEAL_KEYS = ("digest", "signature")
READ_RETRIES = 5  # an object store's read that raced a rewrite is tried again this many times
STALE_SECONDS = 3600  # a temporary folder older than this is left over from a killed process


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


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _canonical(value: dict) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=True).encode()


def _put(fs: pafs.FileSystem, path: str, data: bytes) -> None:
    """One whole file: renamed into place on a local disk, one upload on an object store."""
    if isinstance(fs, pafs.LocalFileSystem):
        write_bytes_atomic(path, data)
        return
    fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    with fs.open_output_stream(path) as fh:  # the object appears, whole, when the upload completes
        fh.write(data)


CACHE_KEEP = 3  # cached runs kept per task beyond the one being fetched ($FACELAB_CACHE_KEEP)
CACHE_IDLE_S = 3600  # and only copies unused this long go: a replica may still be loading one


def _prune_cache(folder: Path) -> list[Path]:
    """Remove the cached runs of one task beyond the CACHE_KEEP most recently used, when unused for
    CACHE_IDLE_S; the folders removed."""
    keep = int(os.environ.get("FACELAB_CACHE_KEEP", CACHE_KEEP))
    runs = sorted((p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")),
                  key=lambda p: p.stat().st_mtime, reverse=True)
    idle = [p for p in runs[keep:] if time.time() - p.stat().st_mtime > CACHE_IDLE_S]
    for path in idle:
        _remove_tree(path)
    return idle


def _remove_tree(path: Path) -> None:
    """Remove a folder others may be looking at: renamed away first, so it vanishes in one step."""
    trash = path.with_name(f".{path.name}.trash-{uuid.uuid4().hex[:8]}")
    with contextlib.suppress(OSError):
        os.rename(path, trash)
        shutil.rmtree(trash, ignore_errors=True)


def _remove_stale(folder: Path) -> None:
    """Temporary folders and files that a killed process left in `folder`."""
    if not folder.is_dir():
        return
    cutoff = time.time() - STALE_SECONDS
    for entry in folder.iterdir():
        if entry.name.startswith(".") and (".tmp-" in entry.name or ".trash-" in entry.name):
            with contextlib.suppress(OSError):
                if entry.lstat().st_mtime < cutoff:
                    shutil.rmtree(entry) if entry.is_dir() else entry.unlink()


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
    """Runs of every task under one URI. `key` (else $FACELAB_STORE_KEY) signs and checks manifests."""

    def __init__(self, uri: str, *, key: str | bytes | None = None):
        self.uri = str(uri)
        if "://" in self.uri:
            self.fs, self.root = pafs.FileSystem.from_uri(self.uri)
            self._scheme = self.uri.split("://", 1)[0]
        else:  # a local folder: absolute, so the URI handed on to Ray workers and Serve replicas still names it
            self.root = self.uri = str(Path(self.uri).expanduser().resolve())
            self.fs = pafs.LocalFileSystem()
            self._scheme = None
        self.root = self.root.rstrip("/")
        self.local = isinstance(self.fs, pafs.LocalFileSystem)
        key = key if key is not None else os.environ.get(KEY_ENV) or None
        self.key = key.encode() if isinstance(key, str) else key

    # --- paths -------------------------------------------------------------------------
    def _run_path(self, task: str, run_id: str) -> str:
        return f"{self.root}/{task}/runs/{run_id}"

    def _name(self, path: str) -> str:
        """A store path as a user can find it: a local path, or the URI of an object."""
        return f"{self._scheme}://{path}" if self._scheme and not self.local else path

    def _exists(self, path: str) -> bool:
        return self.fs.get_file_info(path).type != pafs.FileType.NotFound

    # --- sealed JSON: a digest of its own (and an HMAC with a key) ------------------------
    def _hmac(self, blob: bytes) -> str:
        return hmac.new(self.key, blob, hashlib.sha256).hexdigest()

    def _seal(self, value: dict) -> bytes:
        body = json.loads(json.dumps({k: v for k, v in value.items() if k not in SEAL_KEYS}, default=str))
        blob = _canonical(body)
        sealed = {**body, "digest": hashlib.sha256(blob).hexdigest()}
        if self.key:
            sealed["signature"] = self._hmac(blob)
        return json.dumps(sealed, indent=2, sort_keys=True).encode()

    def _unseal(self, path: str, value) -> dict:
        if not isinstance(value, dict):
            raise FacelabError(f"{self._name(path)}: not a JSON object; refusing it")
        blob = _canonical({k: v for k, v in value.items() if k not in SEAL_KEYS})
        if "digest" in value and value["digest"] != hashlib.sha256(blob).hexdigest():
            raise FacelabError(f"{self._name(path)}: its content does not match its digest (edited or corrupt); refusing it")
        if self.key:
            signature = value.get("signature")
            if not isinstance(signature, str) or not hmac.compare_digest(signature, self._hmac(blob)):
                raise FacelabError(f"{self._name(path)}: {'wrong' if signature else 'no'} signature for this store's "
                                   f"key (${KEY_ENV}); refusing it")
        return value

    def _read_json(self, path: str) -> dict:
        """A sealed JSON file, checked; anything wrong with it is one FacelabError naming it. On an
        object store a read that races a rewrite can mix the two versions (pyarrow asks for the
        size, then the bytes), which the parse or the digest catches: such a read is retried."""
        for attempt in range(0 if self.local else READ_RETRIES):
            try:
                return self._read_json_once(path)
            except FacelabError:
                time.sleep(0.01 * (attempt + 1))
        return self._read_json_once(path)

    def _read_json_once(self, path: str) -> dict:
        try:
            with self.fs.open_input_stream(path) as fh:
                raw = fh.read()
        except FileNotFoundError:
            raise FacelabError(f"{self._name(path)}: not found") from None
        except OSError as exc:
            raise FacelabError(f"{self._name(path)}: unreadable ({_one_line(exc)})") from None
        try:
            value = json.loads(raw.decode())
        except (UnicodeDecodeError, ValueError) as exc:
            raise FacelabError(f"{self._name(path)}: torn or not JSON ({_one_line(exc)}); refusing it") from None
        return self._unseal(path, value)

    def _write_json(self, path: str, value: dict) -> None:
        _put(self.fs, path, self._seal(value))

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
        """Store a fitted model folder with its manifest; returns the new run id. A run appears
        whole or not at all (a local folder renamed into place; objects first, the manifest last)."""
        run_id = _now().strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
        dest = self._run_path(task, run_id)
        model_dir = Path(model_dir)
        files = {str(p.relative_to(model_dir)): p for p in sorted(model_dir.rglob("*")) if p.is_file()}
        manifest = {
            "task": task,
            "run_id": run_id,
            "created": _now().isoformat(),
            "config": config,
            "metrics": metrics,
            "data_fingerprint": data_fingerprint,
            "versions": library_versions(),
            "files": {name: _sha256(path) for name, path in files.items()},
            **(extra or {}),
        }
        if self.local:
            runs = Path(dest).parent
            runs.mkdir(parents=True, exist_ok=True)
            tmp = runs / f".{run_id}.tmp-{uuid.uuid4().hex[:8]}"
            try:
                for name, path in files.items():
                    (tmp / "model" / name).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(path, tmp / "model" / name)
                write_bytes_atomic(tmp / MANIFEST, self._seal(manifest))
                os.rename(tmp, dest)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            _remove_stale(runs)
        else:
            for name, path in files.items():
                _put(self.fs, f"{dest}/model/{name}", path.read_bytes())
            self._write_json(f"{dest}/{MANIFEST}", manifest)  # last: a run without it is unfinished
        return run_id

    @contextlib.contextmanager
    def _promote_lock(self, task: str) -> Iterator[None]:
        """Serialise promotes of a task on a local store (an flock: released if the holder dies)."""
        if not self.local or fcntl is None:
            yield
            return
        folder = Path(self.root) / task
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / ".promote.lock", "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def promote(self, task: str, run_id: str) -> dict:
        """Mark `run_id` the winner of `task`: serving and submissions load it by task name. The
        promotion is recorded in the task's history; returns the record (with the run it replaced)."""
        self.manifest(task, run_id)  # the run exists and its manifest checks out
        with self._promote_lock(task):
            stamp = _now()
            record = {"run_id": run_id, "promoted": stamp.isoformat(), "id": uuid.uuid4().hex}
            try:
                record["previous"] = self.promoted(task)
            except FacelabError:  # none yet, or unreadable: this promotion replaces it
                record["previous"] = None
            self._write_json(f"{self.root}/{task}/{PROMOTIONS}/{stamp.strftime('%Y%m%dT%H%M%S%fZ')}-"
                             f"{record['id'][:8]}.json", record)
            self._write_json(f"{self.root}/{task}/{PROMOTED}", record)
        return record

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
        _put(fs, f"{path}/{self.SWEEP_FILE}", json.dumps(value, indent=2, default=str).encode())

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
    def manifest(self, task: str, run_id: str) -> dict:
        """A run's checked manifest; a missing run, or a torn or edited manifest, is a FacelabError."""
        path = f"{self._run_path(task, run_id)}/{MANIFEST}"
        if not self._exists(path):
            if self._exists(self._run_path(task, run_id)):
                raise FacelabError(f"{self._name(path)}: missing (a save that is unfinished or was killed)")
            raise FacelabError(f"no run '{run_id}' of task '{task}' in store {self.uri}")
        manifest = self._read_json(path)
        if manifest.get("run_id") != run_id or not isinstance(manifest.get("files"), dict):
            raise FacelabError(f"{self._name(path)}: not the manifest of run '{run_id}'; refusing it")
        return manifest

    def scan(self, task: str) -> tuple[list[dict], list[str]]:
        """(manifests of every readable run of `task`, oldest first; one line per run that is not)."""
        base = f"{self.root}/{task}/runs"
        infos = self.fs.get_file_info(pafs.FileSelector(base, allow_not_found=True))
        manifests, problems = [], []
        for info in infos:
            if info.type != pafs.FileType.Directory or info.base_name.startswith("."):
                continue  # hidden: a local save still being built
            try:
                manifests.append(self.manifest(task, info.base_name))
            except FacelabError as exc:
                problems.append(str(exc))
        return sorted(manifests, key=lambda m: str(m.get("created", ""))), sorted(problems)

    def runs(self, task: str) -> list[dict]:
        """Manifests of every readable run of `task`, oldest first (`scan` also names the others)."""
        return self.scan(task)[0]

    def promotions(self, task: str) -> list[dict]:
        """Every promotion of `task`, oldest first (unreadable records left out)."""
        infos = self.fs.get_file_info(pafs.FileSelector(f"{self.root}/{task}/{PROMOTIONS}", allow_not_found=True))
        records = []
        for info in sorted(infos, key=lambda i: i.base_name):
            if info.type == pafs.FileType.File and not info.base_name.startswith("."):
                with contextlib.suppress(FacelabError):
                    records.append(self._read_json(info.path))
        return records

    def _latest_promotion(self, task: str) -> str | None:
        """The path of the history's latest record (keys sort by time), or None."""
        infos = self.fs.get_file_info(pafs.FileSelector(f"{self.root}/{task}/{PROMOTIONS}", allow_not_found=True))
        records = [i for i in infos if i.type == pafs.FileType.File and not i.base_name.startswith(".")]
        return max(records, key=lambda i: i.base_name).path if records else None

    def promoted(self, task: str) -> str:
        """The run in force: `promoted.json` on a local path (promotes are serialised there), the
        history's latest record on an object store (where promotes can race)."""
        path = f"{self.root}/{task}/{PROMOTED}"
        if not self.local:
            path = self._latest_promotion(task) or path
        if not self._exists(path):
            raise FacelabError(f"task '{task}' has no promoted model in store {self.uri}: "
                               f"run `facelab tune --task {task}` or `facelab promote --task {task} --run RUN_ID`")
        run_id = self._read_json(path).get("run_id")
        if not isinstance(run_id, str) or not run_id:
            raise FacelabError(f"{self._name(path)}: names no run; refusing it")
        return run_id

    def _listing(self, src: str) -> set[str]:
        """Every file under a run folder, relative to it."""
        infos = self.fs.get_file_info(pafs.FileSelector(src, recursive=True))
        return {i.path[len(src) + 1:] for i in infos if i.type == pafs.FileType.File}

    def load(self, task: str, run_id: str | None = None, *, cache_dir: str | os.PathLike | None = None,
             check_config: Callable[..., dict] | None = None) -> Run:
        """Fetch a run (the promoted one by default) to a local folder and verify every file.
        `check_config(config, source=...)` (the task's `Task.config`) checks the run's stored config
        first: an unknown or ill-typed key is a FacelabError naming the run. A remote run goes to
        `cache_dir` (default: facelab's cache) as `<cache_dir>/<task>/<run_id>`."""
        run_id = run_id or self.promoted(task)
        src = self._run_path(task, run_id)
        manifest = self.manifest(task, run_id)
        if check_config is not None:
            check_config(manifest["config"], source=f"{self.uri}: run '{run_id}'")
        listed = {f"model/{name}" for name in manifest["files"]}
        unlisted = sorted(self._listing(src) - listed - {MANIFEST})
        if unlisted:
            more = f" (and {len(unlisted) - 1} more)" if len(unlisted) > 1 else ""
            raise FacelabError(f"{self._name(f'{src}/{unlisted[0]}')}: not in run {run_id}'s manifest{more}; "
                               f"refusing to load the run")
        if self.local:
            local = Path(src) / "model"
            self._verify(local, manifest)
        else:
            local = self._fetch(src, manifest, Path(cache_dir) if cache_dir else self._cache(), task)
        return Run(task, run_id, manifest, local)

    def _cache(self) -> Path:
        from facelab.config import cache_dir

        return cache_dir() / "store" / hashlib.sha256(self.uri.encode()).hexdigest()[:16]

    @staticmethod
    def _verify(local: Path, manifest: dict) -> None:
        run_id = manifest["run_id"]
        for name, digest in manifest["files"].items():
            path = local / name
            if not path.is_file() or _sha256(path) != digest:
                raise FacelabError(f"{path}: checksum does not match run {run_id}'s manifest; refusing to load it")
        found = {str(p.relative_to(local)) for p in local.rglob("*") if p.is_file()} if local.is_dir() else set()
        unlisted = sorted(found - set(manifest["files"]))
        if unlisted:
            raise FacelabError(f"{local / unlisted[0]}: not in run {run_id}'s manifest; refusing to load the run")

    def _fetch(self, src: str, manifest: dict, cache: Path, task: str) -> Path:
        """The run's model files in the local cache: reused while they verify, else downloaded to a
        temporary folder, verified there and renamed into place (removed if anything fails)."""
        folder = cache / task
        local = folder / manifest["run_id"]
        if local.is_dir():
            try:
                self._verify(local, manifest)
                os.utime(local)  # its last use, for _prune_cache
                return local
            except FacelabError:
                _remove_tree(local)  # a stale or damaged copy: fetch it again
        folder.mkdir(parents=True, exist_ok=True)
        _remove_stale(folder)
        _prune_cache(folder)
        tmp = folder / f".{manifest['run_id']}.tmp-{uuid.uuid4().hex[:8]}"
        try:
            for name, digest in manifest["files"].items():
                remote = f"{src}/model/{name}"
                try:
                    with self.fs.open_input_stream(remote) as fh:
                        data = fh.read()
                except OSError as exc:
                    raise FacelabError(f"{self._name(remote)}: unreadable ({_one_line(exc)}); refusing to load "
                                       f"run {manifest['run_id']}") from None
                if hashlib.sha256(data).hexdigest() != digest:
                    raise FacelabError(f"{self._name(remote)}: checksum does not match run {manifest['run_id']}'s "
                                       f"manifest; refusing to load it")
                target = tmp / name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
            try:
                os.rename(tmp, local)
            except OSError:  # another process put a copy there first: use it when it verifies
                self._verify(local, manifest)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return local
