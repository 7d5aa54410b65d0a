"""One contract over every challenge format in the registry (the timm way): seeded synthesis in
the challenge layout, every split readable with no bad rows, and a labelled truth to score against."""

import pytest

from facelab.formats import FORMAT_NAMES, get_format
from facelab.store import fingerprint

SMALL = {"crowd": 2, "tracks": 12}  # the unit of n differs per format (crowds, people, rows, images)


@pytest.fixture(scope="module", params=FORMAT_NAMES)
def synthesized(request, tmp_path_factory):
    fmt = get_format(request.param)
    n = SMALL.get(request.param, 12)
    folder = fmt.synthesize(tmp_path_factory.mktemp(request.param) / "data", n=n, seed=5)
    return fmt, folder, n


def test_synthesis_is_seeded(synthesized, tmp_path):
    fmt, folder, n = synthesized
    again = fmt.synthesize(tmp_path / "again", n=n, seed=5)
    assert fingerprint(again) == fingerprint(folder)


def test_every_split_reads_clean(synthesized, ray_local):
    fmt, folder, _ = synthesized
    for split in fmt.splits:
        read = fmt.read(folder, split)
        assert read.bad == [], read.bad[:3]
        assert read.dataset.count() > 0
        assert {"_file", "_row"} <= set(read.dataset.schema().names)


def test_synthetic_truth_exists(synthesized):
    fmt, folder, _ = synthesized
    assert fmt.synthetic_truth and (folder / fmt.synthetic_truth).exists()
