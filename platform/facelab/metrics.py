"""Metrics exactly as each challenge scores them (see FORMATS.md).

scikit-learn and scikit-image compute what they can; the rest is a few lines of numpy,
each checked against hand-worked cases in tests/code/test_metrics.py.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# scikit-learn's metrics are imported where they are used: every task module imports this one
# through its format, and Ray workers that only prepare data or predict never score (the import
# cost each new worker process about 0.75 s here)


def classification(y_true: Sequence, y_pred: Sequence) -> dict[str, float]:
    """AI Blitz XIII sentiment / age: weighted F1 first, accuracy second."""
    from sklearn.metrics import accuracy_score, f1_score

    if len(y_true) != len(y_pred):
        raise ValueError(f"{len(y_true)} truths but {len(y_pred)} predictions")
    return {
        "f1_weighted": float(f1_score(y_true, y_pred, average="weighted", zero_division=0)),
        "accuracy": float(accuracy_score(y_true, y_pred)),
    }


def per_attribute(truth: dict[str, Sequence], pred: dict[str, Sequence]) -> dict[str, float]:
    """FairFace: accuracy and macro-F1 of each attribute (age, gender, race, ...)."""
    from sklearn.metrics import accuracy_score, f1_score

    out = {}
    for attr, y_true in truth.items():
        y_pred = pred[attr]
        out[f"{attr}_accuracy"] = float(accuracy_score(y_true, y_pred))
        out[f"{attr}_f1_macro"] = float(f1_score(y_true, y_pred, average="macro", zero_division=0))
    return out


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two [xmin, ymin, xmax, ymax] boxes."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def ious(a: Sequence, b: Sequence) -> np.ndarray:
    """Row-wise `iou` of two lists of boxes."""
    return np.array([iou(x, y) for x, y in zip(np.asarray(a, float).reshape(-1, 4), np.asarray(b, float).reshape(-1, 4))])


def _average_precision(is_tp: np.ndarray, n_truth: int) -> float:
    """All-point interpolated AP (VOC 2010+) of detections already sorted by confidence."""
    if n_truth == 0:
        return float("nan")
    if len(is_tp) == 0:
        return 0.0
    tp = np.cumsum(is_tp)
    fp = np.cumsum(~is_tp)
    recall = np.concatenate([[0.0], tp / n_truth])
    precision = np.concatenate([[1.0], tp / np.maximum(tp + fp, 1e-12)])
    # precision envelope: the best precision at any recall at least this high
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    return float(np.sum((recall[1:] - recall[:-1]) * precision[1:]))


def _greedy_match(gts: dict[str, list], dets: Sequence[tuple[str, Sequence[float]]], iou_threshold: float) -> np.ndarray:
    """VOC matching: each detection, best first, takes the unmatched truth box of its image with the
    highest IoU >= threshold. `gts` maps image -> [[box, matched], ...] (marked in place)."""
    is_tp = np.zeros(len(dets), dtype=bool)
    for i, (image_id, box) in enumerate(dets):
        best, best_iou = None, iou_threshold
        for cand in gts.get(image_id, []):
            overlap = iou(box, cand[0])
            if not cand[1] and overlap >= best_iou:
                best, best_iou = cand, overlap
        if best is not None:
            best[1] = True
            is_tp[i] = True
    return is_tp


def detection_ap(
    truth: Sequence[tuple[str, Sequence[float], str]],
    pred: Sequence[tuple[str, Sequence[float], str, float]],
    iou_threshold: float = 0.5,
) -> dict[str, float]:
    """Average precision of type and box at IoU 0.5 (Blitz mask task, VOC boxes).

    truth: (image_id, box, label); pred: (image_id, box, label, confidence).
    A prediction is a true positive when an unmatched truth box of the same image has the
    same label and IoU >= threshold. AP per label (all-point interpolation), then the mean
    over labels present in the truth: `ap50`. Also `type_accuracy`: the fraction of truth
    objects whose image's best prediction has the right label (one object per image).
    """
    labels = sorted({t[2] for t in truth})
    per_label = {}
    for label in labels:
        gts: dict[str, list] = {}
        for image_id, box, lab in truth:
            if lab == label:
                gts.setdefault(image_id, []).append([list(box), False])
        n_truth = sum(len(v) for v in gts.values())
        dets = sorted((p for p in pred if p[2] == label), key=lambda p: -p[3])
        is_tp = _greedy_match(gts, [(d[0], d[1]) for d in dets], iou_threshold)
        per_label[label] = _average_precision(is_tp, n_truth)
    out = {f"ap50_{k}": v for k, v in per_label.items()}
    out["ap50"] = float(np.mean(list(per_label.values()))) if per_label else float("nan")
    best_pred: dict[str, tuple] = {}
    for p in pred:
        if p[0] not in best_pred or p[3] > best_pred[p[0]][3]:
            best_pred[p[0]] = p
    hits = [t[0] in best_pred and best_pred[t[0]][2] == t[2] for t in truth]
    out["type_accuracy"] = float(np.mean(hits)) if hits else float("nan")
    return out


def face_detection(
    truth: dict[str, Sequence[Sequence[float]]],
    pred: Sequence[tuple[str, Sequence[float], float]],
    iou_threshold: float = 0.5,
    truth_labels: dict[str, Sequence[str]] | None = None,
) -> dict:
    """Class-agnostic face detection at IoU >= threshold (VOC matching, all-point AP).

    truth: image -> its boxes (every scored image is a key, also one with no faces); pred:
    (image, box, score). Returns `ap50`, `precision`, `recall`, `f1` over all predictions,
    the best F1 over score thresholds (`best_f1`, `best_threshold`), counts, `recall_<label>`
    per truth label when `truth_labels` (image -> a label per box) is given, and the PR curve
    (`curve`: recall, precision, score arrays, best score first).
    """
    unknown = sorted({p[0] for p in pred} - set(truth))
    if unknown:
        raise ValueError(f"predictions for images not in the truth: {unknown[:3]}")
    gts = {image: [[list(box), False] for box in boxes] for image, boxes in truth.items()}
    n_truth = sum(len(v) for v in gts.values())
    dets = sorted(pred, key=lambda p: -p[2])
    is_tp = _greedy_match(gts, [(d[0], d[1]) for d in dets], iou_threshold)
    tp, scores = np.cumsum(is_tp), np.array([d[2] for d in dets], float)
    recall = tp / max(n_truth, 1)
    precision = tp / np.arange(1, len(dets) + 1)
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    best = int(np.argmax(f1)) if len(dets) else None
    out = {
        "ap50": _average_precision(is_tp, n_truth), "precision": float(precision[-1]) if len(dets) else 0.0,
        "recall": float(recall[-1]) if len(dets) else 0.0, "f1": float(f1[-1]) if len(dets) else 0.0,
        "best_f1": float(f1[best]) if best is not None else 0.0,
        "best_threshold": float(scores[best]) if best is not None else float("nan"),
        "n_images": len(truth), "n_truth": n_truth, "n_pred": len(dets),
    }
    for label in sorted({lab for labels in (truth_labels or {}).values() for lab in labels}):
        hits = [m for image, labels in truth_labels.items() for (_, m), lab in zip(gts[image], labels) if lab == label]
        out[f"recall_{label}"] = float(np.mean(hits))
    out["curve"] = {"recall": recall, "precision": precision, "score": scores}
    return out


def image_quality(restored: np.ndarray, original: np.ndarray) -> dict[str, float]:
    """De-blurring: SSIM then PSNR of one uint8 HxWxC (or greyscale HxW) image pair.

    Identical images give ssim 1.0 and psnr inf (without a divide-by-zero warning).
    """
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    restored, original = np.asarray(restored), np.asarray(original)
    if restored.shape != original.shape:
        raise ValueError(f"shape {restored.shape} != original {original.shape}")
    if restored.ndim not in (2, 3):
        raise ValueError(f"expected an HxW or HxWxC image, got shape {restored.shape}")
    channel_axis = -1 if restored.ndim == 3 else None
    ssim = structural_similarity(original, restored, channel_axis=channel_axis, data_range=255)
    if np.array_equal(original, restored):
        psnr = float("inf")
    else:
        psnr = peak_signal_noise_ratio(original, restored, data_range=255)
    return {"ssim": float(ssim), "psnr": float(psnr)}


def restoration(restored: Sequence[np.ndarray], blurred: Sequence[np.ndarray],
                originals: Sequence[np.ndarray]) -> dict[str, float]:
    """De-blurring over a set of images: mean SSIM and PSNR of the restored images against the
    originals (`ssim`, `psnr`) and of the blurred inputs against them (`blur_ssim`,
    `blur_psnr`: the do-nothing baseline a model has to beat)."""
    if not len(restored) == len(blurred) == len(originals) > 0:
        raise ValueError(f"need equal, non-zero counts: {len(restored)} restored, {len(blurred)} blurred, "
                         f"{len(originals)} originals")
    ours = [image_quality(r, o) for r, o in zip(restored, originals)]
    base = [image_quality(b, o) for b, o in zip(blurred, originals)]
    return {"ssim": float(np.mean([s["ssim"] for s in ours])), "psnr": float(np.mean([s["psnr"] for s in ours])),
            "blur_ssim": float(np.mean([s["ssim"] for s in base])), "blur_psnr": float(np.mean([s["psnr"] for s in base]))}


def occlusion_error(pred: np.ndarray, truth: np.ndarray) -> float:
    """Err = sum w_i (p_i - GT_i)^2 / sum w_i with w_i = 1/30 + GT_i (NaN for no rows)."""
    pred, truth = np.asarray(pred, float).ravel(), np.asarray(truth, float).ravel()
    if pred.shape != truth.shape:
        raise ValueError(f"{len(truth)} truths but {len(pred)} predictions")
    if len(truth) == 0:
        return float("nan")
    w = 1.0 / 30.0 + truth
    return float(np.sum(w * (pred - truth) ** 2) / np.sum(w))


def fairness_score(pred: np.ndarray, truth: np.ndarray, gender: np.ndarray) -> dict[str, float]:
    """Face-occlusion challenge: Err per gender (gender > 0.5 is male) and
    Score = (Err_F + Err_M) / 2 + |Err_F - Err_M| (lower is better). Rows whose truth or
    gender is NaN are not scored."""
    pred, truth, gender = (np.asarray(a, float).ravel() for a in (pred, truth, gender))
    if not len(pred) == len(truth) == len(gender):
        raise ValueError(
            f"lengths differ: pred {len(pred)}, truth {len(truth)}, gender {len(gender)}"
        )
    keep = ~(np.isnan(truth) | np.isnan(gender))
    if np.isnan(pred[keep]).any():
        raise ValueError("predictions contain NaN for scored rows")
    male = gender[keep] > 0.5
    err_m = occlusion_error(pred[keep][male], truth[keep][male])
    err_f = occlusion_error(pred[keep][~male], truth[keep][~male])
    return {"err_f": err_f, "err_m": err_m, "score": (err_f + err_m) / 2 + abs(err_f - err_m)}


def tpr_at_fpr(
    positive_distances: np.ndarray,
    negative_distances: np.ndarray,
    fprs: Sequence[float] = (1e-6, 1e-5, 1e-4),
) -> dict[str, float]:
    """MCS2019: ROC on the negated L2 distance; TPR at the largest threshold with FPR <= target.

    Returns one key per target, `tpr@fpr=<target>`, the target written as `format(f, ".0e")`
    when that is exact (the defaults give `tpr@fpr=1e-06`, `tpr@fpr=1e-05`, `tpr@fpr=1e-04`;
    0.2 gives `tpr@fpr=2e-01`, 0 gives `tpr@fpr=0e+00`) and as `repr(f)` otherwise (0.25 gives
    `tpr@fpr=0.25`), plus `n_positive` and `n_negative`.

    Tied distances are one threshold: a threshold accepts every pair at or below it. With N
    negatives the smallest FPR above zero is 1/N: below that the value is the TPR at
    FPR = 0 (`n_negative` is reported so a reader can tell).
    """
    pos = np.asarray(positive_distances, float).ravel()
    neg = np.asarray(negative_distances, float).ravel()
    if len(pos) == 0 or len(neg) == 0:
        raise ValueError(f"need positives and negatives, got {len(pos)} and {len(neg)}")
    from sklearn.metrics import roc_curve

    y = np.concatenate([np.ones(len(pos)), np.zeros(len(neg))])
    fpr, tpr, _ = roc_curve(y, -np.concatenate([pos, neg]), drop_intermediate=False)
    out = {_fpr_key(f): float(tpr[fpr <= f].max()) for f in fprs}
    out["n_positive"], out["n_negative"] = float(len(pos)), float(len(neg))
    return out


def _fpr_key(f: float) -> str:
    short = f"{f:.0e}"
    return f"tpr@fpr={short if float(short) == f else repr(float(f))}"


def pairwise_l2(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """L2 distances between every row of a and every row of b, via one matrix product."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.sqrt(np.maximum(sq, 0.0))
