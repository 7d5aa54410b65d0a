"""A 1:N identification gallery in SQLite: enrolled subjects, their face codes, top-k search.

    gallery = Gallery("gallery.sqlite")                  # creates or migrates the schema
    gallery.enroll("s1", "Ada", codes)                   # codes: {"small": [n,128], "large": [n,128]}
    gallery.search({"small": q, "large": q2}, k=5)       # nearest subjects, by the mean of both models

Schema (`PRAGMA user_version` holds its version; `migrate` brings an older file up to date in one
transaction per step): `subjects(subject_id, name, created_at, metadata)` and `faces(face_id,
subject_id, small, large, box, image_sha256, detector, created_at)`, codes as float32 blobs, faces
deleted with their subject. The file runs in WAL mode: readers (other threads or processes, each
with its own `Gallery`) read a consistent snapshot while one writer enrolls or deletes.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
import threading
from pathlib import Path

import numpy as np

from facelab.errors import FacelabError
from facelab.faces import distances
from facelab.faces.encode import MODELS

DIM = 128
PARTS = ("small", "large")


# --- schema and migrations ----------------------------------------------------------------------

# Version n is reached by the statements MIGRATIONS[n - 1]; change the schema by appending a step,
# never by editing one. Each step is a list of statements run in one transaction (not executescript,
# which commits what is pending first).
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (  # 1: subjects and their faces' codes
        "CREATE TABLE subjects (subject_id TEXT PRIMARY KEY, name TEXT NOT NULL, created_at TEXT NOT NULL)",
        ("CREATE TABLE faces (face_id INTEGER PRIMARY KEY AUTOINCREMENT, "
         "subject_id TEXT NOT NULL REFERENCES subjects(subject_id) ON DELETE CASCADE, small BLOB NOT NULL, large BLOB NOT NULL)"),
    ),
    (  # 2: metadata (where each face was found, in which image, by which detector), a subject index
        "ALTER TABLE subjects ADD COLUMN metadata TEXT NOT NULL DEFAULT '{}'",
        "ALTER TABLE faces ADD COLUMN box TEXT",
        "ALTER TABLE faces ADD COLUMN image_sha256 TEXT",
        "ALTER TABLE faces ADD COLUMN detector TEXT",
        "ALTER TABLE faces ADD COLUMN created_at TEXT",
        "UPDATE faces SET created_at = (SELECT created_at FROM subjects WHERE subjects.subject_id = faces.subject_id)",
        "CREATE INDEX faces_by_subject ON faces(subject_id)",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)


def schema_version(db: sqlite3.Connection) -> int:
    return int(db.execute("PRAGMA user_version").fetchone()[0])


def migrate(db: sqlite3.Connection, target: int = SCHEMA_VERSION) -> int:
    """Apply the missing steps up to `target`, each with its version bump in one transaction
    (a failed step leaves the file at the previous version). Returns the version reached."""
    current = schema_version(db)
    if current > SCHEMA_VERSION:
        raise FacelabError(f"gallery schema version {current} is newer than this facelab ({SCHEMA_VERSION})")
    for version in range(current + 1, target + 1):
        db.execute("BEGIN IMMEDIATE")
        try:
            if schema_version(db) < version:  # another process may have migrated meanwhile
                for statement in MIGRATIONS[version - 1]:
                    db.execute(statement)
                db.execute(f"PRAGMA user_version = {version}")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
    return schema_version(db)


def connect(path: str | os.PathLike, *, timeout: float = 30.0) -> sqlite3.Connection:
    """A connection in WAL mode with foreign keys on; autocommit (transactions are explicit)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(str(path), timeout=timeout, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA foreign_keys = ON")
    db.execute("PRAGMA synchronous = NORMAL")
    return db


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def _blob(vector: np.ndarray) -> bytes:
    vector = np.asarray(vector, np.float32).ravel()
    if vector.shape != (DIM,) or not np.isfinite(vector).all():
        raise FacelabError(f"a face code is {DIM} finite numbers, got shape {vector.shape}")
    return vector.tobytes()


# --- the gallery over codes ---------------------------------------------------------------------

class Gallery:
    """One connection to a gallery file. Safe to share between threads (calls are serialised by a
    lock); other processes open their own. Searches reuse the codes matrix until the file changes."""

    def __init__(self, path: str | os.PathLike, *, migrate_schema: bool = True):
        self.path = Path(path)
        self.db = connect(self.path)
        self.lock = threading.RLock()
        if migrate_schema:
            migrate(self.db)
        elif schema_version(self.db) != SCHEMA_VERSION:
            raise FacelabError(f"{self.path}: gallery schema {schema_version(self.db)}, expected {SCHEMA_VERSION}")
        self._matrix: tuple | None = None

    @property
    def schema_version(self) -> int:
        with self.lock:
            return schema_version(self.db)

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Gallery:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def enroll(self, subject_id: str, name: str, codes: dict[str, np.ndarray], *, faces: list[dict] | None = None,
               metadata: dict | None = None) -> dict:
        """Add faces (codes of both models, [n, 128] each) to a subject, creating it (or renaming
        it) as needed. `faces`: per face metadata (`box`, `image_sha256`, `detector`)."""
        subject_id, name = str(subject_id).strip(), str(name).strip() or str(subject_id).strip()
        if not subject_id:
            raise FacelabError("a subject needs a non-empty subject_id")
        small, large = (np.atleast_2d(np.asarray(codes[part], np.float32)) for part in PARTS)
        if len(small) != len(large) or len(small) == 0:
            raise FacelabError(f"enroll needs one or more faces with both codes ({len(small)} small, {len(large)} large)")
        faces = faces or [{} for _ in small]
        now = _now()
        with self.lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                self.db.execute("INSERT INTO subjects (subject_id, name, created_at, metadata) VALUES (?, ?, ?, ?) "
                                "ON CONFLICT(subject_id) DO UPDATE SET name = excluded.name",
                                (subject_id, name, now, json.dumps(metadata or {})))
                face_ids = [self.db.execute(
                    "INSERT INTO faces (subject_id, small, large, box, image_sha256, detector, created_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (subject_id, _blob(s), _blob(l), json.dumps(meta.get("box")), meta.get("image_sha256"),
                     meta.get("detector"), now)).lastrowid for s, l, meta in zip(small, large, faces)]
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
        return {"subject_id": subject_id, "name": name, "face_ids": face_ids, "faces": self.count(subject_id)}

    def count(self, subject_id: str) -> int:
        with self.lock:
            return int(self.db.execute("SELECT COUNT(*) FROM faces WHERE subject_id = ?", (subject_id,)).fetchone()[0])

    def subjects(self) -> list[dict]:
        """Every subject with its face count, in enrolment order."""
        with self.lock:
            rows = self.db.execute("""SELECT s.subject_id, s.name, s.created_at, s.metadata, COUNT(f.face_id)
                                      FROM subjects s LEFT JOIN faces f ON f.subject_id = s.subject_id
                                      GROUP BY s.subject_id ORDER BY s.created_at, s.rowid""").fetchall()
        return [{"subject_id": r[0], "name": r[1], "created_at": r[2], "metadata": json.loads(r[3]), "faces": r[4]}
                for r in rows]

    def delete(self, subject_id: str) -> bool:
        """Remove a subject and its faces; False when there was none."""
        with self.lock:
            return self.db.execute("DELETE FROM subjects WHERE subject_id = ?", (subject_id,)).rowcount > 0

    def _codes(self) -> tuple[np.ndarray, list[str], dict[str, str], dict[str, np.ndarray]]:
        """(face_ids, subject of each face, names, {"small","large": [n, 128]}), reloaded only when the
        file changed (another connection's commit moves `data_version`, ours `total_changes`)."""
        stamp = (self.db.execute("PRAGMA data_version").fetchone()[0], self.db.total_changes)
        if self._matrix is None or self._matrix[0] != stamp:
            self.db.execute("BEGIN")  # one snapshot for both queries
            try:
                rows = self.db.execute("SELECT face_id, subject_id, small, large FROM faces ORDER BY face_id").fetchall()
                names = dict(self.db.execute("SELECT subject_id, name FROM subjects").fetchall())
            finally:
                self.db.execute("COMMIT")
            codes = {part: (np.frombuffer(b"".join(r[2 + i] for r in rows), np.float32).reshape(-1, DIM))
                     for i, part in enumerate(PARTS)}
            self._matrix = (stamp, np.array([r[0] for r in rows], np.int64), [r[1] for r in rows], names, codes)
        return self._matrix[1:]

    def search(self, query: dict[str, np.ndarray], k: int = 5, model: str = "mean") -> list[dict]:
        """The k nearest subjects to a query face ({"small": [128], "large": [128]}): each subject's
        distance is that of its nearest enrolled face; one matrix product over all stored codes."""
        if model not in MODELS:
            raise FacelabError(f"unknown encoder model '{model}'; models: {', '.join(MODELS)}")
        with self.lock:
            face_ids, subjects, names, codes = self._codes()
        if not subjects:
            return []
        wanted = PARTS if model == "mean" else (model,)
        query = {part: np.asarray(query[part], np.float32).reshape(1, DIM) for part in wanted}
        distance = distances(query, codes, model)[0]
        order = np.argsort(distance, kind="stable")
        best: dict[str, int] = {}
        for i in order:  # the first face of each subject in distance order is its nearest
            if subjects[i] not in best:
                best[subjects[i]] = int(i)
                if len(best) == k:
                    break
        return [{"subject_id": s, "name": names.get(s, s), "distance": float(distance[i]), "face_id": int(face_ids[i])}
                for s, i in best.items()]
