"""Evaluation: a confusion matrix over the validation shards and the paper's metrics.

The metrics (pAcc, mAcc, mIU, fwIU and per-class IoU, in %) and the confusion matrix
are ``pipeline/core/metrics.py``'s, the same the label-quality stage uses; void pixels
(no bit in the true bitset) are ignored.  Evaluation runs on the device training uses
(``train.fit.default_device``: CUDA when available), one full-size image at a time.
"""

from __future__ import annotations

import numpy as np
import torch

from pipeline.core.metrics import confusion_matrix, segmentation_metrics
from pipeline.core.shards import ShardReader, bitsets_to_class_map

from .data import normalize
from .fit import default_device

@torch.no_grad()
def predict_class_map(model: torch.nn.Module, image: np.ndarray) -> np.ndarray:
    """The class of every pixel of an image, on the device the model is on.

    Parameters
    ----------
    model : torch.nn.Module
        A segmentation network giving (N, C+1, H, W) logits; put in eval mode.
    image : numpy.ndarray, (H, W, 3) uint8
        RGB, normalised here with the ImageNet ``MEAN``/``STD`` (``train/data.py``).

    Returns
    -------
    numpy.ndarray, (H, W) int64
        The argmax of the logits, 0 = background.
    """
    model.eval()
    x = normalize(image).to(next(model.parameters()).device)
    return model(x[None])[0].argmax(0).cpu().numpy()


def evaluate_model(model, shard_dir, device=None, limit=None, progress=False):
    """Confusion matrix of ``model`` over the ``labels-val-*`` shards and its metrics.

    Parameters
    ----------
    model : torch.nn.Module
        Moved to ``device`` (in place) and put in eval mode.
    shard_dir : str or os.PathLike
        The labels stage's shards.
    device : torch.device or str, optional
        Default :func:`train.fit.default_device`: the device training uses.
    limit : int, optional
        Evaluate the first ``limit`` images only.
    progress : bool
        Show a progress bar.

    Returns
    -------
    metrics : dict
        :func:`pipeline.core.metrics.segmentation_metrics` plus ``images``.
    confusion : numpy.ndarray, (C+1, C+1) int64
        Rows = truth, columns = prediction.
    """
    from tqdm import tqdm
    model.to(default_device() if device is None else device)
    reader = ShardReader(shard_dir, split="val")
    n = reader.num_classes
    conf = np.zeros((n, n), np.int64)
    ids = reader.ids[:limit] if limit else reader.ids
    for image_id in tqdm(ids, desc="evaluate", unit="img", disable=not progress):
        truth = bitsets_to_class_map(reader.truth(image_id))
        conf += confusion_matrix(predict_class_map(model, reader.image(image_id)), truth, n)
    reader.close()
    metrics = segmentation_metrics(conf, reader.classes)
    metrics["images"] = len(ids)
    return metrics, conf
