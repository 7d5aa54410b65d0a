"""facelab.metrics against small cases worked by hand.

Every expected number below is derived in the comments from the definitions in FORMATS.md,
never by calling the library that metrics.py itself uses.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from facelab import metrics

# --------------------------------------------------------------------------- classification


def test_classification_weighted_f1_and_accuracy_unequal_support():
    # support: a=3, b=2, c=1
    y_true = ["a", "a", "a", "b", "b", "c"]
    y_pred = ["a", "a", "b", "b", "c", "c"]
    # a: TP=2 FP=0 FN=1 -> P=1,   R=2/3, F1 = 2*(2/3)/(5/3) = 4/5
    # b: TP=1 FP=1 FN=1 -> P=1/2, R=1/2, F1 = 1/2
    # c: TP=1 FP=1 FN=0 -> P=1/2, R=1,   F1 = 2*(1/2)/(3/2) = 2/3
    # weighted = (3*4/5 + 2*1/2 + 1*2/3) / 6 = (36/15 + 15/15 + 10/15) / 6 = 61/90
    # (macro would be 59/90 and micro 2/3, so the weighting is really checked)
    # accuracy = 4 right of 6 = 2/3
    out = metrics.classification(y_true, y_pred)
    assert out["f1_weighted"] == pytest.approx(61 / 90, abs=1e-12)
    assert out["accuracy"] == pytest.approx(2 / 3, abs=1e-12)
    assert list(out) == ["f1_weighted", "accuracy"]


def test_classification_perfect_and_length_mismatch():
    out = metrics.classification(["x", "y"], ["x", "y"])
    assert out == {"f1_weighted": 1.0, "accuracy": 1.0}
    with pytest.raises(ValueError, match="2 truths but 1 predictions"):
        metrics.classification(["x", "y"], ["x"])


# --------------------------------------------------------------------------- per_attribute


def test_per_attribute_accuracy_and_macro_f1():
    truth = {"gender": ["M", "M", "F", "F"], "race": ["W", "B", "B", "I"]}
    pred = {"gender": ["M", "F", "F", "F"], "race": ["W", "B", "W", "B"]}
    # gender: accuracy 3/4
    #   M: TP=1 FP=0 FN=1 -> P=1,   R=1/2, F1=2/3
    #   F: TP=2 FP=1 FN=0 -> P=2/3, R=1,   F1=4/5
    #   macro = (2/3 + 4/5)/2 = 11/15
    # race: accuracy 2/4
    #   W: TP=1 FP=1 FN=0 -> F1 = 2/3
    #   B: TP=1 FP=1 FN=1 -> F1 = 1/2
    #   I: never predicted, TP=0 -> F1 = 0 (zero_division=0, no warning)
    #   macro = (2/3 + 1/2 + 0)/3 = 7/18
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = metrics.per_attribute(truth, pred)
    assert out == pytest.approx(
        {
            "gender_accuracy": 3 / 4,
            "gender_f1_macro": 11 / 15,
            "race_accuracy": 1 / 2,
            "race_f1_macro": 7 / 18,
        },
        abs=1e-12,
    )


# --------------------------------------------------------------------------- iou


@pytest.mark.parametrize(
    "a, b, expected",
    [
        # disjoint
        ([0, 0, 10, 10], [20, 20, 30, 30], 0.0),
        # touching along an edge: zero-width intersection
        ([0, 0, 10, 10], [10, 0, 20, 10], 0.0),
        # contained: inter = 5*5 = 25, union = 100 + 25 - 25 = 100
        ([0, 0, 10, 10], [2, 2, 7, 7], 0.25),
        # half of each box overlaps: inter = 5*10 = 50, union = 100 + 100 - 50 = 150
        ([0, 0, 10, 10], [5, 0, 15, 10], 1 / 3),
        # identical
        ([3, 4, 13, 24], [3, 4, 13, 24], 1.0),
        # exactly 0.5: inter = 100, union = 100 + 200 - 100 = 200
        ([0, 0, 10, 10], [0, 0, 10, 20], 0.5),
        # zero-area boxes
        ([0, 0, 0, 0], [0, 0, 0, 0], 0.0),
    ],
)
def test_iou(a, b, expected):
    assert metrics.iou(a, b) == pytest.approx(expected, abs=1e-12)
    assert metrics.iou(b, a) == pytest.approx(expected, abs=1e-12)


# --------------------------------------------------------------------------- detection_ap

BOX = [0, 0, 10, 10]

# Two classes. Six images, one object each (image "d" holds a surgical mask nobody finds).
TRUTH = [
    ("a", BOX, "surgical"),
    ("b", BOX, "surgical"),
    ("c", BOX, "surgical"),
    ("d", BOX, "surgical"),
    ("e", [20, 20, 40, 40], "cloth"),
    ("f", BOX, "cloth"),
]
PRED = [
    # surgical, by confidence:
    ("a", BOX, "surgical", 0.95),  # 1 TP (IoU 1)
    ("b", [5, 0, 15, 10], "surgical", 0.90),  # 2 FP: IoU 1/3 < 0.5, ranked above b's TP
    ("a", [1, 0, 11, 10], "surgical", 0.85),  # 3 FP: IoU 90/110 with a, already matched (duplicate)
    ("b", BOX, "surgical", 0.80),  # 4 TP
    ("c", [0, 0, 10, 12], "surgical", 0.70),  # 5 TP: IoU 100/120
    # d: no surgical prediction -> missed ground truth
    # cloth, by confidence:
    ("d", BOX, "cloth", 0.99),  # 1 FP: right box, wrong class (d is surgical)
    ("e", [20, 20, 40, 40], "cloth", 0.60),  # 2 TP
    ("f", BOX, "cloth", 0.50),  # 3 TP
    # a label absent from the truth: no AP of its own, not in the mean
    ("e", [20, 20, 40, 40], "N95", 0.30),
]


def test_detection_ap_hand_worked_voc_all_point():
    # surgical, 4 truths, ranks TP FP FP TP TP:
    #   cum TP    1    1    1    2    3
    #   cum FP    0    1    2    2    2
    #   precision 1    1/2  1/3  1/2  3/5
    #   recall    1/4  1/4  1/4  1/2  3/4
    #   envelope (max precision at this or higher recall): 1, 3/5, 3/5, 3/5, 3/5
    #   AP = 1/4*1 + 1/4*3/5 + 1/4*3/5 = 1/4 + 3/10 = 11/20
    #   (no envelope: 1/4*(1 + 1/2 + 3/5) = 21/40; VOC07 11-point: (3*1 + 5*3/5)/11 = 6/11)
    # cloth, 2 truths, ranks FP TP TP:
    #   precision 0, 1/2, 2/3; recall 0, 1/2, 1; envelope 2/3, 2/3, 2/3
    #   AP = 1/2*2/3 + 1/2*2/3 = 2/3   (no envelope: 1/2*1/2 + 1/2*2/3 = 7/12)
    # ap50 = (11/20 + 2/3)/2 = (33/60 + 40/60)/2 = 73/120
    # type_accuracy: the best prediction of each image is a surgical, b surgical (the 0.90
    #   misplaced box: the type is still right), c surgical, d cloth (wrong), e cloth (0.60 beats
    #   N95 at 0.30), f cloth -> 5/6
    out = metrics.detection_ap(TRUTH, PRED)
    assert set(out) == {"ap50_surgical", "ap50_cloth", "ap50", "type_accuracy"}
    assert out["ap50_surgical"] == pytest.approx(11 / 20, abs=1e-12)
    assert out["ap50_cloth"] == pytest.approx(2 / 3, abs=1e-12)
    assert out["ap50"] == pytest.approx(73 / 120, abs=1e-12)
    assert out["type_accuracy"] == pytest.approx(5 / 6, abs=1e-12)


def test_detection_ap_order_of_predictions_does_not_matter():
    shuffled = [PRED[i] for i in (8, 3, 6, 0, 4, 1, 7, 2, 5)]
    assert metrics.detection_ap(TRUTH, shuffled) == metrics.detection_ap(TRUTH, PRED)


def test_detection_ap_perfect_empty_and_threshold():
    truth = [("a", BOX, "cloth"), ("b", BOX, "N95")]
    perfect = [("a", BOX, "cloth", 0.9), ("b", BOX, "N95", 0.8)]
    out = metrics.detection_ap(truth, perfect)
    assert out["ap50"] == 1.0 and out["type_accuracy"] == 1.0
    # no predictions at all: AP 0 for every class, no image has a right type
    out = metrics.detection_ap(truth, [])
    assert out["ap50"] == 0.0 and out["type_accuracy"] == 0.0
    # IoU exactly 0.5 ([0,0,10,20] vs [0,0,10,10]: 100/200) matches at the 0.5 threshold
    half = [("a", [0, 0, 10, 20], "cloth", 0.9), ("b", BOX, "N95", 0.8)]
    assert metrics.detection_ap(truth, half)["ap50_cloth"] == 1.0
    # ... and not at a stricter one: cloth AP 0, N95 AP 1 -> mean 1/2
    out = metrics.detection_ap(truth, half, iou_threshold=0.6)
    assert out["ap50_cloth"] == 0.0 and out["ap50"] == 0.5


def test_detection_ap_two_objects_in_one_image():
    # Two faces side by side; each prediction matches its own face, never the other's.
    left, right = [0, 0, 10, 10], [20, 0, 30, 10]
    truth = [("x", left, "cloth"), ("x", right, "cloth")]
    pred = [("x", right, "cloth", 0.9), ("x", left, "cloth", 0.8), ("x", left, "cloth", 0.7)]
    # ranks TP TP FP: precision 1, 1, 2/3; recall 1/2, 1, 1 -> AP = 1/2*1 + 1/2*1 = 1
    assert metrics.detection_ap(truth, pred)["ap50"] == 1.0


# --------------------------------------------------------------------------- image_quality


def _image(shape, high=256, seed=0):
    return np.random.default_rng(seed).integers(0, high, shape, dtype=np.uint8)


@pytest.mark.parametrize("shape", [(32, 40, 3), (32, 40)])
def test_image_quality_identical(shape):
    img = _image(shape)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no divide-by-zero warning for PSNR
        out = metrics.image_quality(img, img.copy())
    assert out["ssim"] == pytest.approx(1.0, abs=1e-12)
    assert out["psnr"] == math.inf


@pytest.mark.parametrize("shape", [(32, 40, 3), (32, 40)])
@pytest.mark.parametrize("offset", [1, 10, 25])
def test_image_quality_constant_offset_psnr(shape, offset):
    # every pixel off by `offset`: MSE = offset^2, so
    # PSNR = 10*log10(255^2 / offset^2) = 20*log10(255/offset)   (offset 10 -> 28.1308...)
    original = _image(shape, high=256 - offset)
    restored = original + np.uint8(offset)  # no wrap-around: original <= 255 - offset
    out = metrics.image_quality(restored, original)
    assert out["psnr"] == pytest.approx(20 * math.log10(255 / offset), rel=1e-12)
    assert out["ssim"] < 1.0


def test_image_quality_ssim_of_flat_images():
    # Flat images 100 and 110: in every window mu_x=100, mu_y=110, variances and covariance 0.
    # SSIM = (2 mu_x mu_y + C1)(0 + C2) / ((mu_x^2 + mu_y^2 + C1)(0 + 0 + C2)),
    # C1 = (0.01*255)^2 = 6.5025:
    #      = (22000 + 6.5025) / (10000 + 12100 + 6.5025) = 22006.5025 / 22106.5025
    original = np.full((16, 16), 100, np.uint8)
    restored = np.full((16, 16), 110, np.uint8)
    out = metrics.image_quality(restored, original)
    assert out["ssim"] == pytest.approx(22006.5025 / 22106.5025, rel=1e-9)
    assert out["psnr"] == pytest.approx(20 * math.log10(25.5), rel=1e-12)


def test_image_quality_greyscale_matches_grey_rgb():
    # An RGB image whose three channels are one grey image scores exactly as the grey image:
    # SSIM averages over channels, and the MSE is the same.
    grey_o, grey_r = _image((24, 24), seed=1), _image((24, 24), seed=2)
    rgb_o, rgb_r = (np.repeat(g[..., None], 3, axis=-1) for g in (grey_o, grey_r))
    grey = metrics.image_quality(grey_r, grey_o)
    rgb = metrics.image_quality(rgb_r, rgb_o)
    assert grey == pytest.approx(rgb, rel=1e-12)


def test_image_quality_shape_mismatch():
    with pytest.raises(ValueError, match="shape"):
        metrics.image_quality(_image((16, 16, 3)), _image((16, 16)))


# --------------------------------------------------------------------------- occlusion / fairness


def test_occlusion_error_weights():
    truth = [0.0, 0.1, 0.3]
    pred = [0.1, 0.1, 0.1]
    # w = 1/30 + GT = 1/30, 4/30, 10/30  (sum 15/30)
    # (p - GT)^2   = 0.01, 0,    0.04
    # Err = (0.01*1 + 0*4 + 0.04*10)/30 / (15/30) = 0.41/15
    # (the unweighted MSE would be 0.05/3)
    assert metrics.occlusion_error(pred, truth) == pytest.approx(0.41 / 15, rel=1e-12)
    assert metrics.occlusion_error(truth, truth) == 0.0


def test_occlusion_error_empty_is_nan_without_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert math.isnan(metrics.occlusion_error([], []))


def test_fairness_score_hand_worked():
    nan = float("nan")
    #         truth  pred  gender
    rows = [
        (0.0, 0.1, 0.0),  # F: w 1/30,  err^2 0.01
        (0.1, 0.1, 0.5),  # F (0.5 is not > 0.5): w 4/30, err^2 0
        (0.3, 0.1, 0.2),  # F: w 10/30, err^2 0.04
        (0.2, 0.0, 0.9),  # M: w 7/30,  err^2 0.04
        (0.0, 0.3, 0.51),  # M: w 1/30,  err^2 0.09
        (nan, nan, 0.9),  # truth NaN: not scored (its NaN prediction is allowed)
        (0.4, 0.0, nan),  # gender NaN: not scored (would add a large error)
    ]
    truth, pred, gender = (np.array(c) for c in zip(*rows))
    # Err_F = (0.01*1 + 0*4 + 0.04*10)/30 / (15/30) = 0.41/15 = 41/1500 = 328/12000
    # Err_M = (0.04*7 + 0.09*1)/30 / (8/30)        = 0.37/8  = 37/800  = 555/12000
    # Score = (328 + 555)/24000 + |328 - 555|/12000 = 883/24000 + 454/24000 = 1337/24000
    out = metrics.fairness_score(pred, truth, gender)
    assert out["err_f"] == pytest.approx(41 / 1500, rel=1e-12)
    assert out["err_m"] == pytest.approx(37 / 800, rel=1e-12)
    assert out["score"] == pytest.approx(1337 / 24000, rel=1e-12)


def test_fairness_score_perfect_and_nan_prediction():
    truth = np.array([0.1, 0.2, 0.3, 0.4])
    gender = np.array([0.0, 1.0, 0.2, 0.8])
    perfect = metrics.fairness_score(truth, truth, gender)
    assert perfect == {"err_f": 0.0, "err_m": 0.0, "score": 0.0}
    pred = truth.copy()
    pred[1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        metrics.fairness_score(pred, truth, gender)


# --------------------------------------------------------------------------- tpr_at_fpr


def test_tpr_at_fpr_hand_worked():
    # A pair is accepted when its distance is <= the threshold. Sorted distances:
    #   0.1 P, 0.2 P, 0.3 N, 0.4 P, 0.5 N, 0.6 P, 0.7 N, 0.8 N, 0.9 N
    pos = [0.4, 0.1, 0.6, 0.2]
    neg = [0.8, 0.3, 0.9, 0.5, 0.7]
    # FPR <= 0:   threshold below 0.3 -> P accepted 0.1, 0.2       -> TPR 2/4
    # FPR <= 0.2: one negative (0.3) allowed, threshold below 0.5 -> 0.1, 0.2, 0.4 -> 3/4
    # FPR <= 0.4: two negatives, threshold below 0.7 -> all four    -> 1
    # FPR <= 0.1 lies between 0 and 1/5, so it is the FPR = 0 value -> 2/4
    out = metrics.tpr_at_fpr(pos, neg, fprs=(0.0, 0.1, 0.2, 0.4))
    assert out == {
        "tpr@fpr=0e+00": 0.5,
        "tpr@fpr=1e-01": 0.5,
        "tpr@fpr=2e-01": 0.75,
        "tpr@fpr=4e-01": 1.0,
        "n_positive": 4.0,
        "n_negative": 5.0,
    }


def test_tpr_at_fpr_default_keys():
    # The defaults are the MCS2019 targets 1e-6 (the score), 1e-5 and 1e-4. With 5 negatives
    # every one of them is below 1/5, so all three are the FPR = 0 value, 2/4.
    out = metrics.tpr_at_fpr([0.4, 0.1, 0.6, 0.2], [0.8, 0.3, 0.9, 0.5, 0.7])
    assert out == {
        "tpr@fpr=1e-06": 0.5,
        "tpr@fpr=1e-05": 0.5,
        "tpr@fpr=1e-04": 0.5,
        "n_positive": 4.0,
        "n_negative": 5.0,
    }


def test_tpr_at_fpr_ties():
    # Sorted: 0.1 P | 0.3 P, 0.3 P, 0.3 N, 0.3 N | 0.6 P | 0.7 N, 0.8 N, 0.9 N
    # A tie is one threshold: the two positives at 0.3 cannot be accepted without both
    # negatives at 0.3, which makes FPR jump from 0 straight to 2/5.
    pos = [0.1, 0.3, 0.3, 0.6]
    neg = [0.3, 0.3, 0.7, 0.8, 0.9]
    # FPR <= 0:   only 0.1                      -> 1/4
    # FPR <= 0.2: still only 0.1 (no FPR 1/5 point exists) -> 1/4
    # FPR <= 0.4: up to 0.6 -> 0.1, 0.3, 0.3, 0.6 -> 4/4
    out = metrics.tpr_at_fpr(pos, neg, fprs=(0.0, 0.2, 0.4))
    assert out["tpr@fpr=0e+00"] == 0.25
    assert out["tpr@fpr=2e-01"] == 0.25
    assert out["tpr@fpr=4e-01"] == 1.0


def test_tpr_at_fpr_keys_do_not_collide():
    # 0.2 and 0.25 both print as "2e-01" with one significant digit; the second keeps its value.
    out = metrics.tpr_at_fpr([0.1], [0.2, 0.3, 0.4, 0.5], fprs=(0.2, 0.25))
    assert "tpr@fpr=2e-01" in out and "tpr@fpr=0.25" in out


def test_tpr_at_fpr_needs_both_classes():
    with pytest.raises(ValueError, match="positives and negatives"):
        metrics.tpr_at_fpr([0.1, 0.2], [])


# --------------------------------------------------------------------------- pairwise_l2


def test_pairwise_l2_three_four_five():
    a = np.array([[0.0, 0.0], [3.0, 4.0]])
    b = np.array([[0.0, 0.0], [3.0, 0.0], [0.0, 4.0]])
    # from (0,0): 0, 3, 4; from (3,4): 5 (3-4-5), 4 (to (3,0)), 3 (to (0,4))
    expected = np.array([[0.0, 3.0, 4.0], [5.0, 4.0, 3.0]])
    np.testing.assert_allclose(metrics.pairwise_l2(a, b), expected, atol=1e-12)
    np.testing.assert_allclose(metrics.pairwise_l2(b, a), expected.T, atol=1e-12)


def test_pairwise_l2_far_from_origin_and_self():
    # The same triangle moved to (1000, 1000): |a|^2 + |b|^2 - 2 a.b must still give 5, and
    # a point's distance to itself is 0 (never NaN from a tiny negative square).
    a = np.array([[1000.0, 1000.0], [1003.0, 1004.0]], dtype=np.float32)
    d = metrics.pairwise_l2(a, a)
    assert d.dtype == np.float64
    np.testing.assert_allclose(d, [[0.0, 5.0], [5.0, 0.0]], atol=1e-9)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20, 512)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    d = metrics.pairwise_l2(x, x)
    assert not np.isnan(d).any()
    np.testing.assert_allclose(np.diag(d), 0.0, atol=1e-6)
