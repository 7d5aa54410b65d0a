"""The SQLite identification gallery: schema versions and migration, enrol/list/delete/search, readers
beside a writer (threads and processes), rank-1 evaluation, and the image service on real faces."""

from __future__ import annotations

import itertools
import multiprocessing
import sqlite3
import threading

import numpy as np
import pytest
from facelab.errors import FacelabError
from facelab.gallery.evaluate import rank1_accuracy
from facelab.gallery.store import SCHEMA_VERSION, Gallery, connect, migrate, schema_version


def _codes(rng, n=1, centre=None):
    """n codes near `centre` (a random unit direction when None), for both models."""
    centre = rng.normal(size=128) if centre is None else centre
    centre = centre / np.linalg.norm(centre)
    return {part: (centre + 0.02 * rng.normal(size=(n, 128))).astype(np.float32) for part in ("small", "large")}


@pytest.fixture
def db(tmp_path):
    return tmp_path / "gallery.sqlite"


def test_new_file_has_current_schema_in_wal_mode(db):
    with Gallery(db) as gallery:
        assert gallery.schema_version == SCHEMA_VERSION >= 2
        assert gallery.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        columns = {r[1] for r in gallery.db.execute("PRAGMA table_info(faces)")}
        assert {"small", "large", "box", "image_sha256", "detector", "created_at"} <= columns


def test_migration_from_version_1_keeps_data(db):
    raw = connect(db)
    assert migrate(raw, target=1) == 1
    vector = np.arange(128, dtype=np.float32).tobytes()
    raw.execute("INSERT INTO subjects VALUES ('old', 'Old Subject', '2020-01-01T00:00:00+00:00')")
    raw.execute("INSERT INTO faces (subject_id, small, large) VALUES ('old', ?, ?)", (vector, vector))
    raw.close()
    with Gallery(db) as gallery:
        assert gallery.schema_version == SCHEMA_VERSION
        [subject] = gallery.subjects()
        assert subject == {"subject_id": "old", "name": "Old Subject", "created_at": "2020-01-01T00:00:00+00:00",
                           "metadata": {}, "faces": 1}
        # the v2 backfill copied the subject's date onto its face
        assert gallery.db.execute("SELECT created_at FROM faces").fetchone()[0] == "2020-01-01T00:00:00+00:00"
        found = gallery.search({"small": np.arange(128), "large": np.arange(128)}, k=1)
        assert found[0]["subject_id"] == "old" and found[0]["distance"] == pytest.approx(0, abs=1e-3)


def test_a_failed_migration_step_leaves_the_previous_version(db, monkeypatch):
    import facelab.gallery.store as gallery_module

    broken = (*gallery_module.MIGRATIONS[:1], (*gallery_module.MIGRATIONS[1][:2], "NOT SQL"))
    monkeypatch.setattr(gallery_module, "MIGRATIONS", broken)
    raw = connect(db)
    with pytest.raises(sqlite3.OperationalError):
        migrate(raw, target=2)
    assert schema_version(raw) == 1
    assert "box" not in {r[1] for r in raw.execute("PRAGMA table_info(faces)")}  # step 2 rolled back whole


def test_newer_schema_is_refused(db):
    raw = connect(db)
    raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    raw.close()
    with pytest.raises(FacelabError, match="newer"):
        Gallery(db)


def test_enroll_list_delete_search(db):
    rng = np.random.default_rng(0)
    centres = {f"p{i}": rng.normal(size=128) for i in range(6)}
    with Gallery(db) as gallery:
        for i, (subject, centre) in enumerate(centres.items()):
            result = gallery.enroll(subject, f"Person {i}", _codes(rng, 2, centre), faces=[{"box": [1, 2, 3, 4]}] * 2)
            assert result["faces"] == 2 and len(result["face_ids"]) == 2
        assert gallery.enroll("p0", "Renamed", _codes(rng, 1, centres["p0"]))["faces"] == 3
        listed = gallery.subjects()
        assert [s["subject_id"] for s in listed] == list(centres)
        assert listed[0]["name"] == "Renamed" and listed[0]["faces"] == 3
        for subject, centre in centres.items():
            top = gallery.search({p: c[0] for p, c in _codes(rng, 1, centre).items()}, k=3)
            assert top[0]["subject_id"] == subject
            assert len(top) == 3 and len({m["subject_id"] for m in top}) == 3  # one entry per subject
            assert top[0]["distance"] < 0.5 < top[1]["distance"]
            assert [m["distance"] for m in top] == sorted(m["distance"] for m in top)
        single = gallery.search({"small": _codes(rng, 1, centres["p3"])["small"][0]}, k=1, model="small")
        assert single[0]["subject_id"] == "p3"
        assert gallery.delete("p3") and not gallery.delete("p3")
        assert gallery.db.execute("SELECT COUNT(*) FROM faces WHERE subject_id = 'p3'").fetchone()[0] == 0
        top = gallery.search({p: c[0] for p, c in _codes(rng, 1, centres["p3"]).items()}, k=10)
        assert "p3" not in [m["subject_id"] for m in top] and len(top) == 5


def test_bad_codes_are_refused(db):
    with Gallery(db) as gallery:
        with pytest.raises(FacelabError):
            gallery.enroll("x", "x", {"small": np.zeros((1, 64)), "large": np.zeros((1, 64))})
        with pytest.raises(FacelabError):
            gallery.enroll("x", "x", {"small": np.full((1, 128), np.nan), "large": np.zeros((1, 128))})
        with pytest.raises(FacelabError):
            gallery.enroll(" ", "x", _codes(np.random.default_rng(0)))
        assert gallery.subjects() == []  # nothing half-written
        with pytest.raises(FacelabError):
            gallery.search(_codes(np.random.default_rng(0)), model="medium")


def _read_while_writing(path: str, ready, done, queue) -> None:
    """A reader (thread or process) that searches until the writer is done: every read sees whole
    subjects (2 faces each), never half an enrolment; returns the subject counts it saw."""
    rng = np.random.default_rng()
    seen = []
    with Gallery(path) as gallery:
        ready.set()
        while True:
            finished = done.is_set()  # the writer was done before this read began: it sees everything
            subjects = gallery.subjects()
            assert all(s["faces"] == 2 for s in subjects), subjects
            assert len(gallery.search(_codes(rng), k=50)) >= len(subjects)  # a later read: never fewer
            seen.append(len(subjects))
            if finished and len(seen) >= 5:
                break
    queue.put(seen)


def test_readers_beside_a_writer(db):
    """A reader process and reader threads search while one writer enrols: no 'database is locked',
    no torn reads, no reader going back in time."""
    Gallery(db).close()
    spawn = multiprocessing.get_context("spawn")
    ready, done, queue = [spawn.Event() for _ in range(4)], spawn.Event(), spawn.Queue()
    readers = [spawn.Process(target=_read_while_writing, args=(str(db), ready[0], done, queue))]
    readers += [threading.Thread(target=_read_while_writing, args=(str(db), event, done, queue)) for event in ready[1:]]
    for reader in readers:
        reader.start()
    assert all(event.wait(timeout=120) for event in ready)
    rng = np.random.default_rng(2)
    with Gallery(db) as writer:
        for i in range(40):
            writer.enroll(f"s{i}", f"S{i}", _codes(rng, 2))
    done.set()
    seen = [queue.get(timeout=120) for _ in readers]  # a reader that failed never reports: the get times out
    for reader in readers:
        reader.join(timeout=60)
    assert readers[0].exitcode == 0
    assert all(run[-1] == 40 and all(a <= b for a, b in itertools.pairwise(run)) for run in seen)


def test_rank1_accuracy_separates_working_from_broken_codes(tmp_path):
    rng = np.random.default_rng(3)
    people = [f"p{i}" for i in range(8) for _ in range(6)]
    centres = {p: rng.normal(size=128) for p in set(people)}
    codes = {part: np.concatenate([_codes(rng, 1, centres[p])[part] for p in people]) for part in ("small", "large")}
    good = rank1_accuracy(codes, people, 3, tmp_path / "good.sqlite")
    assert good["rank1"] == 1.0 and good["probes"] == 8 * 3 and good["subjects"] == 8
    shuffled = {part: rng.permutation(codes[part]) for part in codes}
    assert rank1_accuracy(shuffled, people, 3, tmp_path / "bad.sqlite")["rank1"] < 0.6
    with pytest.raises(FacelabError, match="no probe"):
        rank1_accuracy(codes, people, 6, tmp_path / "none.sqlite")


@pytest.mark.realdata
def test_gallery_service_on_orl_faces(data_root, db):
    """Enrol two ORL people from images, identify a third image of each; a blank image is a 422."""
    from facelab.formats.images import load_rgb
    from facelab.gallery.service import GalleryService
    from facelab.uploads import UploadError

    orl = data_root / "orl_faces"
    service = GalleryService(db)
    for person in ("s1", "s2"):
        result = service.enroll(person, f"ORL {person}", [load_rgb(orl / person / f"{i}.pgm") for i in (1, 2)])
        assert result["faces"] == 2
    assert [s["subject_id"] for s in service.list()] == ["s1", "s2"]
    for person, other in (("s1", "s2"), ("s2", "s1")):
        found = service.identify(load_rgb(orl / person / "5.pgm"), k=2)
        assert [m["subject_id"] for m in found["matches"]] == [person, other]
        assert found["matches"][0]["same"] and not found["matches"][1]["same"]
        assert found["model"] == "mean" and len(found["box"]) == 4
    with pytest.raises(UploadError) as error:
        service.identify(np.full((112, 92, 3), 128, np.uint8))
    assert (error.value.status, error.value.field) == (422, "image")
    with pytest.raises(UploadError) as error:
        service.enroll("s3", "x", [load_rgb(orl / "s3" / "1.pgm"), np.zeros((100, 100, 3), np.uint8)])
    assert error.value.field == "images[1]" and [s["subject_id"] for s in service.list()] == ["s1", "s2"]
    assert service.delete("s1") and [s["subject_id"] for s in service.list()] == ["s2"]


@pytest.mark.realdata
def test_gallery_eval_job(data_root, ray_local):
    """`facelab gallery eval` on two ORL people: rank-1 through real gallery files, per enrolled count."""
    import json

    from typer.testing import CliRunner

    from jobs.cli import app

    result = CliRunner().invoke(app, ["gallery", "eval", "--data-root", str(data_root), "--people", "2",
                                      "--enrolled", "1", "--enrolled", "3", "--repeats", "2"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["images"] == 20 and set(summary["enrolled"]) == {"1", "3"}
    assert summary["enrolled"]["3"]["probes"] == 2 * 7 and summary["enrolled"]["1"]["subjects"] == 2
    assert summary["enrolled"]["1"]["rank1_mean"] >= 0.9 and summary["enrolled"]["3"]["rank1_mean"] >= 0.9
