"""Evaluation: a confusion matrix over the validation shards and the paper's metrics.

The metrics (pAcc, mAcc, mIU, fwIU and per-class IoU, in %) and the confusion matrix
are ``pipeline/core/metrics.py``'s, the same the label-quality stage uses; void pixels
(the true mask's ignore value) are ignored.  Evaluation runs on the device training uses
(``train.fit.default_device``: CUDA when available), one full-size image at a time.
"""

from __future__ import annotations

import numpy as np
import torch

from pipeline.core.errors import InputError
from pipeline.core.metrics import confusion_matrix, segmentation_metrics
from pipeline.core.shards import ShardReader

from .data import normalize
from .fit import default_device


def check_classes(model: torch.nn.Module, reader: ShardReader, shard_dir) -> None:
    """An InputError naming the model file and both class lists unless ``model`` -- as
    ``load_model`` returns it (``model.trained_on``) -- was trained on the classes of the
    shards ``reader`` reads from ``shard_dir``.  A model built in code is not checked."""
    trained = getattr(model, "trained_on", None)
    if trained is not None and list(trained["classes"]) != list(reader.classes):
        raise InputError(trained["path"], f"model was trained on {len(trained['classes'])} classes "
                                          f"({', '.join(trained['classes'])}), but the shards in {shard_dir} have "
                                          f"{len(reader.classes)} ({', '.join(reader.classes)}): use the model "
                                          f"trained on these shards")


def has_background(model: torch.nn.Module) -> bool:
    """Whether class 0 of ``model`` is a real class: ``False`` for one ``load_model``
    loaded that was trained on shards whose class 0 is a placeholder no pixel has
    (``ShardReader.background``); ``True`` otherwise."""
    return bool((getattr(model, "trained_on", None) or {}).get("background", True))


@torch.no_grad()
def predict_class_map(model: torch.nn.Module, image: np.ndarray, background: bool | None = None) -> np.ndarray:
    """The class of every pixel of an image, on the device the model is on.

    Parameters
    ----------
    model : torch.nn.Module
        A segmentation network giving (N, C+1, H, W) logits; put in eval mode.
    image : numpy.ndarray, (H, W, 3) uint8
        RGB, normalised here with the ImageNet ``MEAN``/``STD`` (``train/data.py``).
    background : bool, optional
        ``False``: class 0 is a placeholder no pixel has, so the argmax runs over classes
        1..C only.  Default :func:`has_background` of ``model``.

    Returns
    -------
    numpy.ndarray, (H, W) int64
        The argmax of the logits, 0 = background.
    """
    model.eval()
    x = normalize(image).to(next(model.parameters()).device)
    logits = model(x[None])[0]
    if background is None:
        background = has_background(model)
    if not background:
        return (logits[1:].argmax(0) + 1).cpu().numpy()
    return logits.argmax(0).cpu().numpy()


def evaluate_model(model, shard_dir, device=None, limit=None, progress=False):
    """Confusion matrix of ``model`` over the ``labels-val-*`` shards and its metrics.

    Parameters
    ----------
    model : torch.nn.Module
        Moved to ``device`` (in place) and put in eval mode.  One from ``load_model`` must
        have been trained on the shards' classes (:func:`check_classes`).
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
        :func:`pipeline.core.metrics.segmentation_metrics` plus ``images``.  When the shards
        have no real background (``ShardReader.background``) class 0 is never predicted,
        so it is absent and left out of the means (its IoU is ``None``).
    confusion : numpy.ndarray, (C+1, C+1) int64
        Rows = truth, columns = prediction.
    """
    from tqdm import tqdm
    reader = ShardReader(shard_dir, split="val")
    check_classes(model, reader, shard_dir)
    model.to(default_device() if device is None else device)
    n = reader.num_classes
    conf = np.zeros((n, n), np.int64)
    ids = reader.ids[:limit] if limit else reader.ids
    for image_id in tqdm(ids, desc="evaluate", unit="img", disable=not progress):
        truth = reader.class_map(image_id, void=255 if n <= 255 else 65535)
        conf += confusion_matrix(predict_class_map(model, reader.image(image_id), reader.background), truth, n)
    reader.close()
    metrics = segmentation_metrics(conf, reader.classes)
    metrics["images"] = len(ids)
    return metrics, conf
