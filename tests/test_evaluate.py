"""The paper's metrics against a confusion matrix worked by hand."""

import numpy as np
import pytest

from train.evaluate import confusion_matrix, segmentation_metrics


def test_confusion_matrix_ignores_void_and_counts_rows_as_truth():
    truth = np.array([[0, 0, 1], [2, 255, 1]])
    pred = np.array([[0, 1, 1], [1, 2, 0]])
    conf = confusion_matrix(pred, truth, 3)
    np.testing.assert_array_equal(conf, [[1, 1, 0],
                                         [1, 1, 0],
                                         [0, 1, 0]])


def test_metrics_by_hand():
    # rows = truth, columns = prediction
    conf = np.array([[50, 10, 0],
                     [5, 20, 5],
                     [0, 0, 10]])
    m = segmentation_metrics(conf, ["bg", "a", "b"])
    # t = (60, 30, 10), total 100; diag = (50, 20, 10); column sums = (55, 30, 15)
    assert m["pAcc"] == pytest.approx(80.0)                                  # 80 / 100
    assert m["mAcc"] == pytest.approx(100 * (50 / 60 + 20 / 30 + 10 / 10) / 3)  # 83.333
    iou = [50 / (60 + 55 - 50), 20 / (30 + 30 - 20), 10 / (10 + 15 - 10)]   # 0.769, 0.5, 0.667
    assert m["mIU"] == pytest.approx(100 * sum(iou) / 3)
    assert m["fwIU"] == pytest.approx(100 * (60 * iou[0] + 30 * iou[1] + 10 * iou[2]) / 100)
    assert m["per_class_iou"]["a"] == pytest.approx(50.0)


def test_absent_classes_follow_fcn_convention():
    # class 2 neither in truth nor predicted: left out; class 3 predicted but absent: IoU 0, counted
    conf = np.array([[8, 0, 0, 2],
                     [0, 10, 0, 0],
                     [0, 0, 0, 0],
                     [0, 0, 0, 0]])
    m = segmentation_metrics(conf, ["bg", "a", "b", "c"])
    assert m["per_class_iou"]["b"] is None and m["per_class_iou"]["c"] == 0.0
    assert m["mIU"] == pytest.approx(100 * (0.8 + 1.0 + 0.0) / 3)
    assert m["mAcc"] == pytest.approx(100 * (0.8 + 1.0) / 2)  # accuracy is over truth classes only
