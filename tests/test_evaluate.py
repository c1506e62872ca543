"""The paper's metrics against a confusion matrix worked by hand; evaluation and prediction."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

from pipeline.core.metrics import class_iou, confusion_matrix, segmentation_metrics
from pipeline.core.shards import write_label_shard


def test_confusion_matrix_ignores_void_and_counts_rows_as_truth():
    truth = np.array([[0, 0, 1], [2, 255, 1]])
    pred = np.array([[0, 1, 1], [1, 2, 0]])
    conf = confusion_matrix(pred, truth, 3)
    assert conf.dtype == np.int64
    np.testing.assert_array_equal(conf, [[1, 1, 0],
                                         [1, 1, 0],
                                         [0, 1, 0]])


def test_weighted_confusion_matrix_adds_the_weights():
    # a soft pixel of truth 1 labelled {0, 2} is two entries of 1/2 (pipeline/labels/quality.py)
    truth = np.array([0, 1, 1, 1, 255])
    pred = np.array([0, 1, 0, 2, 1])
    conf = confusion_matrix(pred, truth, 3, weights=[1, 1, 0.5, 0.5, 1])
    assert conf.dtype == np.float64
    np.testing.assert_array_equal(conf, [[1, 0, 0],
                                         [0.5, 1, 0.5],
                                         [0, 0, 0]])
    assert confusion_matrix(pred, np.full(5, 255), 3, weights=np.ones(5)).dtype == np.float64  # none kept


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
    np.testing.assert_allclose(class_iou(conf), iou)
    assert m["mIU"] == pytest.approx(100 * sum(iou) / 3)
    assert m["fwIU"] == pytest.approx(100 * (60 * iou[0] + 30 * iou[1] + 10 * iou[2]) / 100)
    assert m["per_class_iou"]["a"] == pytest.approx(50.0)
    assert m["mIU"] == round(100 * sum(iou) / 3, 4)                          # rounded to 4 digits
    assert segmentation_metrics(conf, digits=2)["per_class_iou"] == {"0": 76.92, "1": 50.0, "2": 66.67}


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
    empty = segmentation_metrics(np.zeros((2, 2)))
    assert all(np.isnan(empty[k]) for k in ("pAcc", "mAcc", "mIU", "fwIU"))


# ----------------------------------------------------------------------------- models

H, W, NC = 12, 17, 4


def _image(seed):
    return np.random.default_rng(seed).integers(0, 256, (H, W, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def val_shards(tmp_path_factory):
    """Three validation images with random truths (some void pixels: no bit)."""
    folder = tmp_path_factory.mktemp("val")
    records = []
    for n in range(3):
        buf = io.BytesIO()
        Image.fromarray(_image(n)).save(buf, format="PNG")
        cls = np.random.default_rng(10 + n).integers(0, NC, (H, W))
        truth = np.where(cls == 3, 0, 1 << cls).astype(np.uint8)       # class 3 only as void
        records.append({"id": f"v{n}", "kind": "pixel", "height": H, "width": W, "tags": [0], "truth": truth,
                        "image_bytes": buf.getvalue()})
    write_label_shard(folder / "labels-val-00000.h5", records, ["background", "a", "b", "c"], "val")
    return folder


def _model():
    from train.networks import build_model
    torch.manual_seed(0)
    model = build_model("small", NC)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.3)   # random enough to predict several classes
    return model


def test_predict_class_map_is_the_argmax_on_the_models_device():
    from train.data import normalize
    from train.evaluate import predict_class_map
    model = _model().train()
    pred = predict_class_map(model, _image(0))
    assert pred.shape == (H, W) and pred.dtype == np.int64 and not model.training
    with torch.no_grad():
        np.testing.assert_array_equal(pred, model(normalize(_image(0))[None])[0].argmax(0).numpy())
    assert len(np.unique(pred)) > 1


def test_evaluate_model_on_the_training_device_counts_every_validation_pixel(val_shards):
    from pipeline.core.shards import ShardReader, bitsets_to_class_map
    from train.evaluate import evaluate_model, predict_class_map
    from train.fit import default_device
    model = _model()
    metrics, conf = evaluate_model(model, val_shards)
    assert next(model.parameters()).device == default_device()   # cuda:0 when there is one, like training
    r = ShardReader(val_shards, "val")
    want = sum(confusion_matrix(predict_class_map(model, r.image(i)), bitsets_to_class_map(r.truth(i)), NC)
               for i in r.ids)
    np.testing.assert_array_equal(conf, want)
    assert conf.sum() == sum(int((r.truth(i) != 0).sum()) for i in r.ids)   # void pixels left out
    assert metrics == {**segmentation_metrics(want, r.classes), "images": 3}
    m1, c1 = evaluate_model(model, val_shards, device="cpu", limit=1)
    assert m1["images"] == 1 and c1.sum() == int((r.truth("v0") != 0).sum())


def test_evaluate_model_refuses_a_loaded_model_trained_on_other_classes(val_shards, tmp_path):
    from pipeline.core.errors import InputError
    from train.checkpoint import export_model, load_model
    from train.evaluate import evaluate_model
    for name, classes in (("same", ["background", "a", "b", "c"]), ("other", ["background", "a", "b", "d"])):
        export_model(tmp_path / f"{name}.pt", _model(), {"arch": "small", "variant": "p", "classes": classes,
                                                          "num_classes": NC, "images": 1})
    model, _ = load_model(tmp_path / "same.pt")
    assert evaluate_model(model, val_shards)[0]["images"] == 3
    model, _ = load_model(tmp_path / "other.pt")
    with pytest.raises(InputError) as e:
        evaluate_model(model, val_shards)
    assert str(e.value) == (f"{tmp_path / 'other.pt'}: model was trained on 4 classes (background, a, b, d), but "
                            f"the shards in {val_shards} have 4 (background, a, b, c): use the model trained on "
                            f"these shards")


def test_no_background_predicts_and_scores_only_the_real_classes(tmp_path):
    """Shards whose class 0 is a placeholder (every pixel has a real class): the argmax runs
    over classes 1..C, so class 0 is absent and left out of the mIU instead of entering as 0."""
    from train.evaluate import evaluate_model, predict_class_map
    buf = io.BytesIO()
    Image.fromarray(_image(0)).save(buf, format="PNG")
    truth = np.full((H, W), 1 << 1, np.uint8)
    truth[:, W // 2:] = 1 << 2
    rec = {"id": "v0", "kind": "pixel", "height": H, "width": W, "tags": [1, 2], "truth": truth,
           "image_bytes": buf.getvalue()}
    model = _model()
    with torch.no_grad():          # a model whose class 0 wins everywhere
        model.classifier.bias[0] = 100.0
    pred_all = predict_class_map(model, _image(0), background=True)
    pred_real = predict_class_map(model, _image(0), background=False)
    assert (pred_all == 0).all() and pred_real.min() >= 1
    for background, folder in ((True, tmp_path / "bg"), (False, tmp_path / "nobg")):
        write_label_shard(folder / "labels-val-00000.h5", [rec], ["background", "a", "b", "c"], "val",
                          background=background)
        metrics, conf = evaluate_model(model, folder, device="cpu")
        if background:
            assert metrics["per_class_iou"]["background"] == 0.0 and metrics["mIU"] == 0.0
        else:
            assert conf[:, 0].sum() == 0 and metrics["per_class_iou"]["background"] is None
            ious = [v for k, v in metrics["per_class_iou"].items() if v is not None]
            assert metrics["mIU"] == pytest.approx(np.mean(ious), abs=1e-3)


class _Constant(torch.nn.Module):
    """Predicts class ``c`` everywhere."""

    def __init__(self, num_classes, c):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.num_classes, self.c = num_classes, c

    def forward(self, x):
        out = torch.zeros(x.shape[0], self.num_classes, *x.shape[2:]) + self.w
        out[:, self.c] = 1
        return out


def test_evaluation_beyond_255_classes_reads_uint16_truth(tmp_path):
    """300 classes: the truth is a uint16 class-id map (65535 void); a model predicting class 280
    everywhere gets its pixels of class 280 right and nothing else (hand count)."""
    from pipeline.core.shards import LabelMap
    from train.evaluate import evaluate_model
    buf = io.BytesIO()
    Image.fromarray(np.zeros((2, 3, 3), np.uint8)).save(buf, format="PNG")
    truth = np.array([[280, 280, 5], [65535, 299, 280]], np.uint16)
    classes = ["background"] + [f"c{k}" for k in range(1, 300)]
    write_label_shard(tmp_path / "labels-val-00000.h5",
                      [{"id": "v", "kind": "pixel", "height": 2, "width": 3, "tags": [5, 280, 299],
                        "image_bytes": buf.getvalue(), "label": LabelMap(truth, 300), "truth": LabelMap(truth, 300)}],
                      classes, "val")
    metrics, conf = evaluate_model(_Constant(300, 280), tmp_path, device="cpu")
    assert conf.shape == (300, 300) and conf.sum() == 5
    assert conf[280, 280] == 3 and conf[5, 280] == 1 and conf[299, 280] == 1
    assert metrics["pAcc"] == pytest.approx(60.0) and metrics["images"] == 1
