"""Evaluation: a confusion matrix over the validation shards and the paper's metrics.

With n_ij the pixels of class i predicted as j and t_i = sum_j n_ij (paper section 4.1):

* pixel accuracy  pAcc = sum_i n_ii / sum_i t_i
* mean accuracy   mAcc = mean_i n_ii / t_i
* mean IU         mIU  = mean_i n_ii / (t_i + sum_j n_ji - n_ii)
* frequency weighted IU  fwIU = (sum_k t_k)^-1 sum_i t_i n_ii / (t_i + sum_j n_ji - n_ii)

As in FCN's evaluation code, a class that is absent from both truth and prediction is left
out of the means (its ratio is 0/0); void pixels (no bit in the true bitset) are ignored.
"""

from __future__ import annotations

import numpy as np
import torch

from pipeline.core.shards import ShardReader, bitsets_to_class_map


def confusion_matrix(pred: np.ndarray, truth: np.ndarray, num_classes: int) -> np.ndarray:
    """(C+1, C+1) int64, rows = truth, columns = prediction; truth values >= num_classes
    (void 255) are ignored.  ``pred`` and ``truth`` are integer class maps of one shape."""
    t = np.asarray(truth).ravel().astype(np.int64)
    p = np.asarray(pred).ravel().astype(np.int64)
    keep = t < num_classes
    return np.bincount(t[keep] * num_classes + p[keep], minlength=num_classes ** 2).reshape(num_classes,
                                                                                          num_classes)


def segmentation_metrics(conf: np.ndarray, classes=None) -> dict:
    """pAcc, mAcc, mIU, fwIU (in %) and per-class IoU from a confusion matrix."""
    conf = np.asarray(conf, np.float64)
    tp = np.diag(conf)
    t = conf.sum(1)
    union = t + conf.sum(0) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = tp / t
        iou = tp / union
    total = t.sum()
    present = union > 0
    out = {
        "pAcc": 100 * tp.sum() / total if total else float("nan"),
        "mAcc": 100 * np.nanmean(acc) if np.isfinite(acc).any() else float("nan"),
        "mIU": 100 * np.nanmean(iou) if present.any() else float("nan"),
        "fwIU": 100 * np.sum(t[present] * iou[present]) / total if total else float("nan"),
    }
    out = {k: round(float(v), 4) for k, v in out.items()}
    names = classes if classes is not None else [str(i) for i in range(len(conf))]
    out["per_class_iou"] = {n: (None if np.isnan(v) else round(100 * float(v), 4)) for n, v in zip(names, iou)}
    return out


@torch.no_grad()
def predict_logits(model, image: torch.Tensor) -> torch.Tensor:
    """(3, H, W) normalised image -> (C+1, H, W) logits."""
    model.eval()
    return model(image[None])[0]


@torch.no_grad()
def evaluate_model(model, shard_dir, device="cpu", normalize=None, limit=None, progress=False):
    """Confusion matrix of ``model`` over the ``labels-val-*`` shards and its metrics.

    Returns ``(metrics, confusion)``; images are run one at a time at full size.
    """
    from tqdm import tqdm
    if normalize is None:
        from .data import normalize
    reader = ShardReader(shard_dir, split="val")
    n = reader.num_classes
    conf = np.zeros((n, n), np.int64)
    model.eval()
    ids = reader.ids[:limit] if limit else reader.ids
    for image_id in tqdm(ids, desc="evaluate", unit="img", disable=not progress):
        truth = bitsets_to_class_map(reader.truth(image_id))
        x = normalize(reader.image(image_id)).to(device)
        pred = model(x[None])[0].argmax(0).cpu().numpy()
        conf += confusion_matrix(pred, truth, n)
    reader.close()
    metrics = segmentation_metrics(conf, reader.classes)
    metrics["images"] = len(ids)
    return metrics, conf
