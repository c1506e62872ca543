"""``mixseg inspect``: a label shard's summary and the paper's Fig. 4 / Fig. 5 views."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np

from pipeline.core.config import STRATEGIES, ConfigError, LabelsConfig, build
from pipeline.labels.ucm_rules import box_scale_masks
from pipeline.core.errors import InputError
from pipeline.core.palette import class_palette
from pipeline.core.shards import KINDS, LabelMap, ShardReader, UcmReader, encode_bitsets

UNCERTAIN_RGB = (255, 255, 255)


def shard_summary(path) -> str:
    """A human-readable summary of one label shard."""
    r = ShardReader(path)
    kinds = {k: len(r.ids_of_kind(k)) for k in KINDS}
    with h5py.File(path, "r") as f:
        boxes = f["boxes"][:]
        attrs = dict(f.attrs)
        n_label = len(f["label"])
        n_truth = len(f["truth"])
        sizes = [f["label"][k].id.get_storage_size() for k in f["label"]]
    lines = [f"{path}: mixseg label shard (format {attrs['format_version']}, code {attrs['code_version']}, "
             f"split {attrs['split']})",
             f"  images: {len(r)}  (" + ", ".join(f"{k} {v}" for k, v in kinds.items()) + ")",
             f"  classes ({r.num_classes}): {', '.join(r.classes)}",
             "  label encoding: " + ("class ids + class sets (format 3)" if int(attrs['format_version']) >= 3
                                     else f"bitsets, {attrs.get('bitset_dtype')} (format {attrs['format_version']})"),
             f"  label maps: {n_label}, true masks: {n_truth}, "
             f"mean stored label map {np.mean(sizes) / 1024 if sizes else 0:.1f} KB"]
    used = boxes[boxes["strategy"] != 255]
    lines.append(f"  boxes: {len(boxes)}, turned into labels: {len(used)}")
    if len(used):
        fill = used["confident_area"] / np.maximum(used["box_area"], 1)
        unc = used["uncertain_area"] / np.maximum(used["box_area"], 1)
        strategies = json.loads(attrs["strategies"])
        by = {strategies[s]: int((used["strategy"] == s).sum()) for s in np.unique(used["strategy"])}
        ts, tc = np.unique(np.round(used["threshold"][used["fallback"] == 0], 3), return_counts=True)
        lines += [f"    strategy: {by}",
                  "    threshold chosen: " + ", ".join(f"{t:g}: {c}" for t, c in zip(ts, tc))
                  + f", fallback growth: {int(used['fallback'].sum())}",
                  f"    confident area / box: mean {fill.mean():.2f}, uncertain / box: mean {unc.mean():.2f}"]
    params = json.loads(attrs["params"])
    lines.append(f"  params: {json.dumps(params, sort_keys=True)}")
    r.close()
    return "\n".join(lines)


def colorize(labels, classes) -> np.ndarray:
    """(H, W) bitsets or a :class:`LabelMap` -> (H, W, 3) uint8: class colours
    (:func:`class_palette`), soft pixels the mean of their classes' colours, ignored pixels
    white.  Any class count: the colours are looked up per code, never per class plane."""
    num_classes = len(classes)
    lm = labels if isinstance(labels, LabelMap) else encode_bitsets(np.asarray(labels), num_classes)
    pal = class_palette(classes).astype(np.float64)
    table = np.empty((num_classes + lm.num_sets, 3))
    table[:num_classes] = pal
    for k in range(lm.num_sets):
        table[num_classes + k] = pal[lm.class_set(k)].mean(0)
    codes = lm.codes.astype(np.int64)
    ignored = lm.codes == lm.ignore
    rgb = table[np.where(ignored, 0, np.minimum(codes, len(table) - 1))]
    rgb[ignored] = UNCERTAIN_RGB
    return rgb.astype(np.uint8)


def _pick(reader: ShardReader, image_id):
    if image_id is not None:
        if image_id not in reader.ids:
            raise InputError(reader._shards.paths[0], f"image id {image_id!r} not in this shard")
        return image_id
    boxed = [i for i in reader.ids_of_kind("box") if len(reader.boxes(i))]
    return boxed[0] if boxed else reader.ids[0]


def shard_strategy(reader: ShardReader):
    """The box strategy the labels of a shard were made with, suffixes resolved
    (``ucm_paper_a0.3`` draws the paper's rule, whatever ``labels.rule`` said)."""
    recorded = {k: v for k, v in reader.params.items() if k != "workers"}
    try:
        return build(LabelsConfig, recorded, "labels").box
    except ConfigError as e:
        raise InputError(reader._shards.paths[0], f"recorded labels params do not read: {e}") from None


def _legend(label, truth, classes, pal) -> list:
    """Legend patches: the classes present in the label or truth, then ``ignored`` (the
    label's pixels with no class) and ``void`` (the truth's) only when there are some."""
    from matplotlib.patches import Patch
    label, truth = (m if m is None or isinstance(m, LabelMap) else encode_bitsets(np.asarray(m), len(classes))
                    for m in (label, truth))
    maps = [m for m in (label, truth) if m is not None]
    if not maps:
        return []
    present = np.logical_or.reduce([m.present() for m in maps])
    handles = [Patch(fc=pal[c], ec="0.5", label=classes[c]) for c in np.flatnonzero(present)]
    for name, m in (("ignored in the label", label), ("void in the truth", truth)):
        n = 0 if m is None else int((m.codes == m.ignore).sum())
        if n:
            handles.append(Patch(fc="white", ec="0.5", label=f"white: {name} ({n} px)"))
    return handles


def render_image(path, image_id=None, ucm_dir=None, out_dir="inspect") -> list[Path]:
    """Render Fig. 4 (one box: image, UCM, box, scale masks, final mask) and
    Fig. 5 (image, truth, boxes, final soft label) for one image; returns PNG paths."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    r = ShardReader(path)
    image_id = _pick(r, image_id)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    image = r.image(image_id)
    label, truth, boxes = r.label_map(image_id), r.truth_map(image_id), r.boxes(image_id)
    pal = class_palette(r.classes) / 255.0
    written = []

    # Fig. 5: the whole image
    panels = [("image", image), ("ground truth", None if truth is None else colorize(truth, r.classes)),
              ("boxes", image),
              (f"final label ({r.kind(image_id)})", None if label is None else colorize(label, r.classes))]
    panels = [(t, p) for t, p in panels if p is not None]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.2))
    for ax, (title, p) in zip(np.atleast_1d(axes), panels):
        ax.imshow(p)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
        if title == "boxes":
            for b in boxes:
                ax.add_patch(Rectangle((b["x0"] - 0.5, b["y0"] - 0.5), b["x1"] - b["x0"], b["y1"] - b["y0"],
                                       fill=False, lw=1.5, color=pal[b["cls"]]))
                right = b["x0"] > image.shape[1] / 2  # anchor the name inside the image, never clipped
                ax.text(b["x1"] - 0.5 if right else b["x0"] - 0.5, b["y0"] - 0.5, r.classes[b["cls"]], fontsize=6,
                        color="w", ha="right" if right else "left", va="top", clip_on=True,
                        bbox=dict(fc=pal[b["cls"]], lw=0, pad=0.5))
    fig.legend(handles=_legend(label, truth, r.classes, pal), loc="lower center",
               ncol=6, fontsize=7, frameon=False)
    fig.suptitle(f"{image_id}: mixed colours = soft (multi-class) pixels", fontsize=9)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    p5 = out_dir / f"{image_id}_fig5.png"
    fig.savefig(p5, dpi=110)
    plt.close(fig)
    written.append(p5)

    # Fig. 4: one box through the UCM rule
    if len(boxes) and ucm_dir is not None and Path(ucm_dir).exists():
        ucms = UcmReader(ucm_dir)
        if image_id in ucms:
            ucm2 = ucms[image_id]
            b = boxes[np.argmax(boxes["box_area"])]
            x0, y0, x1, y1 = int(b["x0"]), int(b["y0"]), int(b["x1"]), int(b["y1"])
            s = shard_strategy(r)
            thresholds, rule = s.thresholds, s.rule
            masks = box_scale_masks(ucm2, (x0, y0, x1, y1), thresholds, rule, s.margin)
            crop = ucm2[2 * y0:2 * y1 + 1, 2 * x0:2 * x1 + 1].astype(np.float64)
            crop /= max(crop.max(), 1)
            panels = [("box crop", image[y0:y1, x0:x1]), ("(b) UCM, dark = strong", 1 - crop)]
            kind = "enclosed" if rule == "enclosed" else "centre region"
            panels += [(f"(d) t = {t:g} ({kind})", m) for t, m in zip(thresholds, masks)]
            if label is not None:
                crop_label = LabelMap(label.codes[y0:y1, x0:x1], label.num_classes, label.sets, label.offsets)
                panels.append(("(e) final label", colorize(crop_label, r.classes)))
            fig, axes = plt.subplots(1, len(panels) + 1, figsize=(2.6 * (len(panels) + 1), 2.8))
            axes[0].imshow(image)
            axes[0].add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, lw=2,
                                        color=pal[b["cls"]]))
            axes[0].set_title(f"(a, c) image, box: {r.classes[b['cls']]}", fontsize=9)
            for ax, (title, p) in zip(axes[1:], panels):
                ax.imshow(p, cmap="gray" if p.ndim == 2 else None, vmin=0, vmax=1) if p.ndim == 2 else ax.imshow(p)
                ax.set_title(title, fontsize=9)
            for ax in axes:
                ax.axis("off")
            strat = STRATEGIES[b["strategy"]] if b["strategy"] < len(STRATEGIES) else "n/a"
            fig.suptitle(f"{image_id}: strategy {strat} ({rule} rule), threshold chosen {b['threshold']:.3g}"
                         f"{' (fallback growth)' if b['fallback'] else ''}", fontsize=9)
            fig.tight_layout()
            p4 = out_dir / f"{image_id}_fig4.png"
            fig.savefig(p4, dpi=110)
            plt.close(fig)
            written.append(p4)
        ucms.close()
    r.close()
    return written
