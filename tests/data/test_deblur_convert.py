"""UTKFace -> the Blitz de-blurring layout: pairs that read back, blur that is real and seeded."""

import numpy as np
import pandas as pd
import pytest
from facelab import metrics
from facelab.converters import convert
from facelab.converters.deblur import motion_kernel
from facelab.formats import get_format
from facelab.formats.images import jpeg_names, load_rgb

FMT = get_format("deblur")


def test_motion_kernel_is_a_normalised_line():
    for length, angle in [(5, 0.0), (9, 45.0), (17, 100.0)]:
        kernel = motion_kernel(length, angle)
        assert kernel.shape[0] % 2 == 1 and kernel.sum() == pytest.approx(1.0)
        assert (kernel > 0).sum() >= length - 2  # a line, not a dot
    horizontal = motion_kernel(7, 0.0)
    assert np.count_nonzero(horizontal.sum(1)) == 1  # all its weight on the centre row


@pytest.mark.realdata
def test_convert_writes_blurred_pairs(data_root, ray_local, tmp_path):
    summary = convert("deblur", data_root, tmp_path / "a", seed=3, n=10)
    assert (summary["train"], summary["val"], summary["test"]) == (10, 4, 6)
    out = tmp_path / "a"
    for split in ("train", "val"):
        read = FMT.read(out, split)
        assert read.dataset.count() == summary[split] and not read.bad
    assert jpeg_names(out / "test" / "blur") == jpeg_names(out / "test" / "original_truth")
    assert not (out / "test" / "original").exists()  # the test originals are the hidden truth

    sources = pd.read_csv(out / "sources.csv")
    assert len(sources) == 20 and sources["file"].is_unique  # disjoint faces across splits
    assert set(sources["kind"]) == {"gaussian", "motion"}
    ssim = []
    for name in jpeg_names(out / "train" / "blur"):
        blur, original = load_rgb(out / "train" / "blur" / name), load_rgb(out / "train" / "original" / name)
        assert blur.shape == original.shape == (200, 200, 3)
        ssim.append(metrics.image_quality(blur, original)["ssim"])
    assert max(ssim) < 0.98 and np.mean(ssim) < 0.92  # really blurred, not just re-encoded

    again = convert("deblur", data_root, tmp_path / "b", seed=3, n=10)
    assert again == {**summary, "out": str(tmp_path / "b")}
    assert pd.read_csv(tmp_path / "b" / "sources.csv").equals(sources)


@pytest.mark.realdata
def test_strong_blur_draws_from_the_strong_ranges_and_blurs_more(data_root, tmp_path):
    from facelab.errors import FacelabError

    mild = convert("deblur", data_root, tmp_path / "mild", seed=5, n=12)
    strong = convert("deblur", data_root, tmp_path / "strong", seed=5, n=12, blur="strong")
    assert mild["train"] == strong["train"] == 12
    sources = pd.read_csv(tmp_path / "strong" / "sources.csv")
    assert sources["sigma"].dropna().between(2.5, 5.0).all() and sources["length"].dropna().between(13, 21).all()

    def mean_ssim(out):
        names = jpeg_names(out / "train" / "blur")
        return np.mean([metrics.image_quality(load_rgb(out / "train" / "blur" / n),
                                              load_rgb(out / "train" / "original" / n))["ssim"] for n in names])

    assert mean_ssim(tmp_path / "strong") < mean_ssim(tmp_path / "mild")
    with pytest.raises(FacelabError, match="--blur 'heavy'"):
        convert("deblur", data_root, tmp_path / "x", seed=5, n=2, blur="heavy")
