"""The confusion matrix and the scores of a segmentation, for labels and predictions alike.

With n_ij the pixels of class i labelled (or predicted) as j and t_i = sum_j n_ij
(the paper's section 4.1):

* pixel accuracy  pAcc = sum_i n_ii / sum_i t_i
* mean accuracy   mAcc = mean_i n_ii / t_i
* mean IU         mIU  = mean_i n_ii / (t_i + sum_j n_ji - n_ii)
* frequency weighted IU  fwIU = (sum_k t_k)^-1 sum_i t_i n_ii / (t_i + sum_j n_ji - n_ii)

As in FCN's evaluation code, a class absent from both truth and prediction is left out
of the means (its ratio is 0/0).  A pixel may count with a weight: a soft label with K
classes counts 1/K towards each (``pipeline/labels/quality.py``, as in the loss, Eq. 3).
numpy only (no torch): the labels stages use it as well as ``train/evaluate.py``.
"""

from __future__ import annotations

import numpy as np


def confusion_matrix(pred, truth, num_classes: int, weights=None) -> np.ndarray:
    """Rows = truth, columns = prediction.

    Parameters
    ----------
    pred, truth : array_like of int, any shape (the same)
        Class indices; a truth value >= ``num_classes`` (void, 255) is left out.
    num_classes : int
        C+1, background included.
    weights : array_like of float, optional
        What each pixel counts (the shape of ``truth``); 1 each when omitted.

    Returns
    -------
    numpy.ndarray, (C+1, C+1)
        int64 counts, or float64 sums of ``weights`` (added in the order of the pixels).
    """
    n = num_classes
    t = np.asarray(truth).ravel().astype(np.int64)
    p = np.asarray(pred).ravel().astype(np.int64)
    keep = t < n
    w = None if weights is None else np.asarray(weights, np.float64).ravel()[keep]
    conf = np.bincount(t[keep] * n + p[keep], weights=w, minlength=n * n).reshape(n, n)
    return conf if w is None else conf.astype(np.float64, copy=False)  # int64 when no weight is kept


def class_iou(conf) -> np.ndarray:
    """IoU per class, n_ii / (t_i + sum_j n_ji - n_ii).

    Parameters
    ----------
    conf : array_like, (C+1, C+1)
        Rows = truth, columns = prediction (int or float).

    Returns
    -------
    numpy.ndarray, (C+1,) float64
        In [0, 1]; NaN for a class absent from both truth and prediction.
    """
    conf = np.asarray(conf, np.float64)
    tp = np.diag(conf)
    union = conf.sum(1) + conf.sum(0) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / union, np.nan)


def segmentation_metrics(conf, classes=None, digits: int = 4) -> dict:
    """The paper's scores of a confusion matrix.

    Parameters
    ----------
    conf : array_like, (C+1, C+1)
        Rows = truth, columns = prediction (int or float).
    classes : sequence of str, optional
        The classes' names (default ``"0"``, ``"1"``, ...).
    digits : int
        Every value is rounded to so many decimals.

    Returns
    -------
    dict
        ``pAcc``, ``mAcc``, ``mIU``, ``fwIU``: float in % (NaN when undefined), and
        ``per_class_iou``: name -> float in % (None for an absent class).
    """
    conf = np.asarray(conf, np.float64)
    tp = np.diag(conf)
    t = conf.sum(1)
    iou = class_iou(conf)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = tp / t
    total = t.sum()
    present = np.isfinite(iou)
    out = {
        "pAcc": 100 * tp.sum() / total if total else float("nan"),
        "mAcc": 100 * np.nanmean(acc) if np.isfinite(acc).any() else float("nan"),
        "mIU": 100 * np.nanmean(iou) if present.any() else float("nan"),
        "fwIU": 100 * np.sum(t[present] * iou[present]) / total if total else float("nan"),
    }
    out = {k: round(float(v), digits) for k, v in out.items()}
    names = classes if classes is not None else [str(i) for i in range(len(conf))]
    out["per_class_iou"] = {c: (None if np.isnan(v) else round(100 * float(v), digits)) for c, v in zip(names, iou)}
    return out
