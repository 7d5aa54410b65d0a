"""The model store: runs, manifests, promotion, and refusing files that do not match."""

import json

import pytest

from facelab.errors import FacelabError
from facelab.store import ModelStore, fingerprint


def _model(tmp_path, content=b"weights"):
    model = tmp_path / "model"
    model.mkdir()
    (model / "w.bin").write_bytes(content)
    (model / "sub").mkdir()
    (model / "sub" / "meta.json").write_text("{}")
    return model


def test_save_load_promote(tmp_path):
    store = ModelStore(str(tmp_path / "store"))
    run_id = store.save("sentiment", _model(tmp_path), config={"C": 1}, metrics={"f1": 0.5}, data_fingerprint="abc")
    run = store.load("sentiment", run_id)
    assert (run.model_dir / "w.bin").read_bytes() == b"weights"
    assert run.config == {"C": 1} and run.metrics == {"f1": 0.5}
    assert run.manifest["data_fingerprint"] == "abc"
    assert {"ray", "torch", "scikit-learn", "python"} <= set(run.manifest["versions"])
    with pytest.raises(FacelabError, match="no promoted model"):
        store.promoted("sentiment")
    store.promote("sentiment", run_id)
    assert store.load("sentiment").run_id == run_id
    assert [m["run_id"] for m in store.runs("sentiment")] == [run_id]


def test_promote_unknown_run_is_refused(tmp_path):
    with pytest.raises(FacelabError, match="no run 'nope'"):
        ModelStore(str(tmp_path)).promote("sentiment", "nope")


def test_tampered_model_file_is_refused(tmp_path):
    store = ModelStore(str(tmp_path / "store"))
    run_id = store.save("sentiment", _model(tmp_path), config={}, metrics={}, data_fingerprint="x")
    (tmp_path / "store" / "sentiment" / "runs" / run_id / "model" / "w.bin").write_bytes(b"evil pickle")
    with pytest.raises(FacelabError, match="checksum"):
        store.load("sentiment", run_id)


def test_uri_store_round_trip(tmp_path):
    """Any pyarrow filesystem URI works; file:// exercises the copy-to-cache path."""
    store = ModelStore(f"file://{tmp_path / 'remote'}")
    run_id = store.save("sentiment", _model(tmp_path), config={}, metrics={}, data_fingerprint="x")
    store.promote("sentiment", run_id)
    run = store.load("sentiment", cache_dir=tmp_path / "cache")
    assert (run.model_dir / "sub" / "meta.json").read_text() == "{}"
    assert json.loads((tmp_path / "remote" / "sentiment" / "promoted.json").read_text())["run_id"] == run_id


def test_fingerprint_tracks_content(tmp_path):
    data = tmp_path / "d"
    data.mkdir()
    (data / "a.csv").write_text("x\n1\n")
    first = fingerprint(data)
    assert fingerprint(data) == first
    (data / "a.csv").write_text("x\n2\n")
    assert fingerprint(data) != first
