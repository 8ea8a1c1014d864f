"""ConfusionMatrix against hand-computed matrices and a pure-Python reference."""
from __future__ import annotations

import json

import numpy as np
import pytest

from evdistill_ros.classes import CLASS_NAMES, IGNORE_INDEX
from evdistill_ros.eval.metrics import ConfusionMatrix


def reference_matrix(pred, label, k=6, ignore=255):
    m = [[0] * k for _ in range(k)]
    for p, g in zip(np.ravel(pred).tolist(), np.ravel(label).tolist()):
        if g != ignore:
            m[g][p] += 1
    return np.array(m)


def reference_scores(m):
    """The EvDistill authors' formulas (evaluate.py) plus the absent-class-as-0 mean."""
    m = m.astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        ious = np.diag(m) / (m.sum(1) + m.sum(0) - np.diag(m))
    miou = np.nanmean(ious) if np.any(~np.isnan(ious)) else np.nan
    return ious, miou, np.nan_to_num(ious).mean(), np.trace(m) / m.sum()


def test_hand_computed_with_ignore_and_absent_classes():
    label = np.array([[0, 1], [2, IGNORE_INDEX]], np.uint8)
    pred = np.array([[0, 2], [2, 1]], np.uint8)
    cm = ConfusionMatrix()
    cm.update(pred, label)
    want = np.zeros((6, 6), np.int64)
    want[0, 0] = want[1, 2] = want[2, 2] = 1  # the ignored pixel's prediction (1) is not counted
    np.testing.assert_array_equal(cm.matrix, want)
    iou = cm.iou()
    np.testing.assert_allclose(iou[:3], [1.0, 0.0, 0.5])  # class 1 labelled, never hit; class 2 union 2
    assert np.isnan(iou[3:]).all()
    assert cm.miou() == pytest.approx(1.5 / 3)  # EvDistill: absent classes 3, 4, 5 dropped
    assert cm.miou_all() == pytest.approx(1.5 / 6)  # Ev-SegNet / ESS: absent = 0
    assert cm.accuracy() == pytest.approx(2 / 3)
    d = cm.to_dict()
    assert d["iou"] == {"flat": 1.0, "background": 0.0, "object": 0.5, "vegetation": None, "human": None,
                        "vehicle": None}
    assert d["pixels"] == 3 and d["confusion"] == want.tolist()


def test_predicted_but_unlabelled_class_counts_zero_in_both():
    cm = ConfusionMatrix()
    cm.update(np.array([5, 5, 0]), np.array([0, 0, 0]))
    iou = cm.iou()
    assert iou[0] == pytest.approx(1 / 3) and iou[5] == 0.0  # union 2 (predicted), tp 0
    assert cm.miou() == pytest.approx((1 / 3 + 0) / 2)
    assert cm.miou_all() == pytest.approx((1 / 3) / 6)


def test_perfect_prediction_and_one_class_only():
    rng = np.random.default_rng(0)
    label = rng.integers(0, 4, (30, 40)).astype(np.uint8)  # classes 4, 5 absent
    cm = ConfusionMatrix()
    cm.update(label, label)
    assert cm.miou() == 1.0 and cm.accuracy() == 1.0
    assert cm.miou_all() == pytest.approx(4 / 6)
    one = ConfusionMatrix()
    one.update(np.full((5, 5), 3), np.full((5, 5), 3))
    assert one.miou() == 1.0 and one.miou_all() == pytest.approx(1 / 6)
    assert one.to_dict()["iou"]["vegetation"] == 1.0


def test_nothing_labelled_is_undefined_not_zero():
    cm = ConfusionMatrix()
    cm.update(np.zeros((3, 3), np.uint8), np.full((3, 3), IGNORE_INDEX, np.uint8))
    d = cm.to_dict()
    assert d["pixels"] == 0 and d["miou"] is None and d["miou_all"] is None and d["accuracy"] is None
    json.dumps(d, allow_nan=False)


@pytest.mark.parametrize("seed", range(4))
def test_random_against_reference(seed):
    rng = np.random.default_rng(seed)
    k = 6
    cm = ConfusionMatrix()
    total = np.zeros((k, k), np.int64)
    for _ in range(3):  # accumulate over batches of different shapes
        shape = tuple(rng.integers(1, 20, rng.integers(1, 4)))
        label = rng.integers(0, k, shape).astype(np.uint8)
        label[rng.random(shape) < 0.2] = IGNORE_INDEX
        # skewed classes: some absent in a batch
        pred = np.minimum(rng.integers(0, k, shape), rng.integers(2, k, shape)).astype(np.int64)
        cm.update(pred, label)
        total += reference_matrix(pred, label)
    np.testing.assert_array_equal(cm.matrix, total)
    ious, miou, miou_all, acc = reference_scores(total)
    np.testing.assert_allclose(cm.iou(), ious, equal_nan=True)
    assert cm.miou() == pytest.approx(miou)
    assert cm.miou_all() == pytest.approx(miou_all)
    assert cm.accuracy() == pytest.approx(acc)


def test_merge_serialise_round_trip():
    rng = np.random.default_rng(3)
    a, b = ConfusionMatrix(), ConfusionMatrix()
    for cm in (a, b):
        cm.update(rng.integers(0, 6, 50), rng.integers(0, 6, 50))
    both = ConfusionMatrix().merge(a)
    both += b
    np.testing.assert_array_equal(both.matrix, a.matrix + b.matrix)
    back = ConfusionMatrix.from_dict(json.loads(json.dumps(both.to_dict(), allow_nan=False)))
    np.testing.assert_array_equal(back.matrix, both.matrix)
    assert back.class_names == CLASS_NAMES


@pytest.mark.parametrize("pred,label,match", [
    (np.array([0, 1]), np.array([0, 7]), "label value 7"),
    (np.array([0, 6]), np.array([0, 1]), "predicted class 6"),
    (np.array([0, 1, 2]), np.array([0, 1]), "shape"),
    (np.array([0.0, 1.0]), np.array([0, 1]), "integer"),
    (np.array([0, 1]), np.array([0, 300]), "label value 300"),
    (np.array([0, 1]), np.array([-1, 1]), "label value -1"),
    (np.array([0, 255], np.uint8), np.array([0, 1], np.uint8), "predicted class 255"),
])
def test_bad_input_is_an_error(pred, label, match):
    with pytest.raises(ValueError, match=match):
        ConfusionMatrix().update(pred, label)


def test_any_prediction_at_ignored_pixels_and_wide_dtypes():
    rng = np.random.default_rng(5)
    label = rng.integers(0, 6, 400).astype(np.int64)
    label[::3] = IGNORE_INDEX
    pred = rng.integers(0, 6, 400).astype(np.int32)
    want = reference_matrix(pred, label)
    pred[::3] = -7  # garbage where the label says ignore is never counted nor an error
    cm = ConfusionMatrix()
    cm.update(pred, label)
    np.testing.assert_array_equal(cm.matrix, want)


def test_other_class_counts():
    cm = ConfusionMatrix(3, ignore_index=9)
    cm.update(np.array([0, 1, 2, 2]), np.array([0, 1, 9, 2]))
    assert cm.class_names == ("class_0", "class_1", "class_2") and cm.miou() == 1.0
    with pytest.raises(ValueError, match="3 classes"):
        ConfusionMatrix(3).merge(ConfusionMatrix(6))
