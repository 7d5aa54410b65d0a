"""De-blurring end to end on the suite's shared deblur fit: a Tune sweep of a Ray Train trial adopts
its best checkpoint and promotes it; the promoted model submits through the Ray Data actor
pool and is scored against the do-nothing baseline; the serving path answers with a PNG."""

import base64
import io

import numpy as np
import pandas as pd
import pytest
import torch
from facelab import metrics
from facelab.formats import get_format
from facelab.formats.deblur import blurred
from facelab.formats.images import jpeg_names, load_rgb
from facelab.store import ModelStore
from facelab.tasks import get_task
from facelab.tasks.deblur import DeblurRequest, build_network, ssim_loss
from facelab.uploads import Binary, UploadError
from PIL import Image

FMT = get_format("deblur")


@pytest.fixture(scope="module")
def fit(task_fit):
    """The suite's shared deblur fit: a 1-trial sweep of the demo config (a small residual network,
    2 epochs) whose trial's best checkpoint is adopted, stored and promoted."""
    return task_fit("deblur")


@pytest.fixture(scope="module")
def deblur_data(fit):
    return fit.data_dir


@pytest.fixture(scope="module")
def trained(fit):
    return fit.store, fit.tuned


def test_ssim_loss_fits_small_images():
    for side in (200, 96, 64, 40, 20):  # ms-ssim's 5 scales need > 160 px with the standard window
        image = torch.rand(2, 3, side, side)
        assert float(ssim_loss(image, image)) == pytest.approx(0.0, abs=1e-5)
        assert 0.05 < float(ssim_loss(image * 0.5, image)) <= 1.0


def test_restoration_metrics_score_the_blurred_baseline():
    rng = np.random.default_rng(0)
    originals = [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(3)]
    soft = [blurred(o, 2.0) for o in originals]
    score = metrics.restoration(originals, soft, originals)
    assert score["ssim"] == 1.0 and score["psnr"] == float("inf")
    assert score["blur_ssim"] < 0.9 and score["blur_psnr"] < 30


def test_every_architecture_keeps_the_image_size():
    for shape in ((1, 3, 37, 50), (2, 3, 96, 96)):  # odd sides too: multiscale pads to a multiple of 4
        x = torch.rand(*shape)
        for arch in ("srcnn", "resnet", "multiscale"):
            config = {**get_task("deblur").default_config, "arch": arch, "channels": 8, "blocks": 1}
            assert build_network(config)(x).shape == x.shape
    with pytest.raises(ValueError, match="arch"):
        build_network({"arch": "transformer"})


def _reach(net, side: int = 160) -> int:
    """Rows of the input that the output's centre pixel depends on (the receptive field's height)."""
    x = torch.rand(1, 3, side, side, requires_grad=True)
    net(x)[0, :, side // 2, side // 2].sum().backward()
    return int((x.grad[0].abs().sum(0) > 0).any(1).sum())


def test_the_multiscale_network_sees_far_and_starts_as_the_identity_plus_a_little():
    """Its receptive field spans a 21-pixel motion streak several times over, twice the
    full-resolution resnet's default (29 pixels); the global skip makes the output the input plus
    a learned correction, so an untrained network stays near the blurred image."""
    defaults = get_task("deblur").default_config
    net = build_network({**defaults, "arch": "multiscale", "channels": 8})
    assert _reach(net) >= 2 * _reach(build_network({**defaults, "arch": "resnet"})) >= 2 * 29
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert (net(x) - x).abs().mean() < 0.5


def test_tune_adopts_the_best_trial_checkpoint(trained, fit):
    store, result = trained
    assert result["trials"] == 1 and result["promoted"]
    run = ModelStore(store).load("deblur")
    assert run.run_id == result["run_id"]
    assert {"model.pt", "config.json", "history.csv", "history.png", "samples.png", "tune_results.csv"} <= {
        p.name for p in run.model_dir.iterdir()}
    history = pd.read_csv(run.model_dir / "history.csv")
    assert list(history["epoch"]) == list(range(1, fit.config["epochs"] + 1))
    assert {"val_ssim", "val_psnr", "val_blur_ssim", "val_blur_psnr"} <= set(result)
    # the stored model is the winning trial's best epoch itself, not a retrained one
    assert result["val_ssim"] == pytest.approx(result["trial_val_ssim"])
    assert result["val_ssim"] == pytest.approx(history["val_ssim"].max())
    assert pd.read_csv(run.model_dir / "tune_results.csv")["val_ssim"].max() == pytest.approx(result["val_ssim"])


def test_submission_is_scored_against_the_do_nothing_baseline(trained, fit, deblur_data):
    store, result = trained
    summary = fit.submission()
    sub = fit.workdir / "out" / FMT.submission_name  # the out folder it was given: original/ inside
    assert summary["run_id"] == result["run_id"] and summary["rows"] == len(jpeg_names(deblur_data / "test" / "blur"))
    assert jpeg_names(sub / "original") == jpeg_names(deblur_data / "test" / "blur")
    truth = deblur_data / "test" / "original_truth"
    restored = FMT.score(sub, truth)
    baseline = FMT.score(deblur_data / "test" / "blur", truth)
    assert 0 < baseline["ssim"] < 0.95
    # two epochs on 16 faces: a residual model must at least not wreck the images (a model that
    # outputs noise, or mixes up channels or the 0-1/0-255 scale, scores far below this)
    assert restored["ssim"] > baseline["ssim"] - 0.1 and restored["psnr"] > baseline["psnr"] - 3
    first = jpeg_names(truth)[0]
    assert not np.array_equal(load_rgb(sub / "original" / first),
                              load_rgb(deblur_data / "test" / "blur" / first))  # it did restore


def test_serving_answers_a_png_of_the_same_size(trained, deblur_data):
    store, _ = trained
    task = get_task("deblur")
    run = ModelStore(store).load("deblur")
    predictor = task.predictor_class(str(run.model_dir))
    first = min((deblur_data / "test" / "blur").glob("*.jpg"))
    request = DeblurRequest(image=base64.b64encode(first.read_bytes()).decode("ascii"))
    rows, batched = task.request_rows(request)
    out = predictor({"image": np.stack([rows[0]["image"]])})
    answer = task.response([{k: v[0] for k, v in out.items()}], batched)
    assert isinstance(answer, Binary) and answer.media_type == "image/png"
    png = np.asarray(Image.open(io.BytesIO(answer.data)))
    assert png.shape == load_rgb(first).shape
    with pytest.raises(UploadError) as bad:
        task.request_rows(DeblurRequest(image=base64.b64encode(b"not an image").decode("ascii")))
    assert bad.value.status == 415




def test_no_worker_group_outlives_the_sweep(trained, ray_local):
    """Each trial's Train worker group is gone once the sweep is over, including a trial ASHA
    stopped (its group is freed by the sweep's ReleaseWorkerGroups callback)."""
    from ray.util.placement_group import placement_group_table

    assert [g["placement_group_id"] for g in placement_group_table().values() if g["state"] != "REMOVED"] == []
