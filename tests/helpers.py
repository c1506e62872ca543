"""The tests' keyword front to ``box_soft_labels``: the knobs as keywords, with the
paper's settings as the tests' defaults (thresholds 1/4, 2/4, 3/4, alpha 0.3, centre rule)."""

from __future__ import annotations

from pipeline.core.config import GrabcutConfig, LabelsConfig
from pipeline.labels.strategies import box_soft_labels


def soft_labels(ucm2, boxes, num_classes, strategy="ucm", thresholds=(0.25, 0.5, 0.75), alpha=0.3, shape=None,
                rule="paper", margin=0.1, *, span=0.0, band=None, image=None, external=None, seed=0,
                grabcut_iterations=5, grabcut_context=0.5, clear=0.0, floor=None, small_box=0.0, low_alpha=0.0):
    """The box strategy's labels of one image; the enclosed rule's refinements (``clear``, ``floor``,
    ``small_box``, ``low_alpha``: on in params.yaml since issue 12) are off unless given, so the
    rule's mechanics are tested one at a time."""
    cfg = LabelsConfig(rule=rule, margin=margin, span=span, band=band, thresholds=tuple(thresholds), alpha=alpha,
                       seed=seed, grabcut=GrabcutConfig(grabcut_iterations, grabcut_context), clear=clear,
                       floor=floor, small_box=small_box, low_alpha=low_alpha)
    s = cfg.box_strategy(strategy)
    if ucm2 is not None:
        shape = ((ucm2.shape[0] - 1) // 2, (ucm2.shape[1] - 1) // 2)
    elif image is not None:
        shape = image.shape[:2]
    elif shape is None and external is not None:
        shape = tuple(external.shape)
    inputs = {k: v for k, v in (("ucm2", ucm2), ("image", image), ("external", external)) if v is not None}
    return box_soft_labels(boxes, num_classes, s, shape, inputs)


def section(cls, data: dict | None = None, where: str = ""):
    """A config section object from a dict, checked as params.yaml is (``build``)."""
    from pipeline.core.config import build
    return build(cls, data or {}, where)


def source(data: dict):
    from pipeline.core.config import SourceConfig
    return section(SourceConfig, data, "source")
