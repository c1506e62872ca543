"""PASCAL VOC annotation XML: read and write.

VOC boxes are 1-based and inclusive (``xmin=1`` is the first column); mixseg
boxes are 0-based and end-exclusive, so ``x0 = xmin - 1`` and ``x1 = xmax``.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from pathlib import Path

from pipeline.core.errors import InputError
from pipeline.core.fileio import atomic_path


def read_voc_xml(path) -> dict:
    """Parse a VOC annotation file.

    Returns ``{"filename", "width", "height", "objects": [{"name", "box": (x0, y0, x1, y1),
    "difficult", "truncated"}]}`` with boxes already converted to 0-based end-exclusive
    integer pixel coordinates.
    """
    path = Path(path)
    try:
        root = ET.parse(path).getroot()
    except FileNotFoundError:
        raise InputError(path, "annotation file not found") from None
    except ET.ParseError as e:
        raise InputError(path, f"not valid XML ({e})") from None
    size = root.find("size")
    out = {"filename": (root.findtext("filename") or "").strip(),
           "width": None, "height": None, "objects": []}
    if size is not None:
        try:
            out["width"] = int(float(size.findtext("width")))
            out["height"] = int(float(size.findtext("height")))
        except (TypeError, ValueError):
            pass
    for obj in root.iter("object"):
        name = (obj.findtext("name") or "").strip()
        bb = obj.find("bndbox")
        if not name or bb is None:
            raise InputError(path, "an <object> lacks <name> or <bndbox>")
        try:
            coords = [float(bb.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax")]
        except (TypeError, ValueError):
            raise InputError(path, f"object {name!r} has a missing or non-numeric bndbox coordinate") from None
        if not all(math.isfinite(v) for v in coords):
            raise InputError(path, f"object {name!r} has a non-finite bndbox coordinate {coords}")
        xmin, ymin, xmax, ymax = coords
        box = (int(round(xmin)) - 1, int(round(ymin)) - 1, int(round(xmax)), int(round(ymax)))
        out["objects"].append({"name": name, "box": box,
                               "difficult": (obj.findtext("difficult") or "0").strip() == "1",
                               "truncated": (obj.findtext("truncated") or "0").strip() == "1"})
    return out


def write_voc_xml(path, filename: str, width: int, height: int, objects, folder: str = "VOC2012") -> None:
    """Write a VOC annotation file; ``objects`` are ``(name, (x0, y0, x1, y1))`` in mixseg's
    0-based end-exclusive convention (written 1-based inclusive, as VOC does)."""
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = folder
    ET.SubElement(root, "filename").text = filename
    size = ET.SubElement(root, "size")
    for k, v in (("width", width), ("height", height), ("depth", 3)):
        ET.SubElement(size, k).text = str(v)
    ET.SubElement(root, "segmented").text = "1"
    for name, (x0, y0, x1, y1) in objects:
        obj = ET.SubElement(root, "object")
        ET.SubElement(obj, "name").text = name
        ET.SubElement(obj, "pose").text = "Unspecified"
        ET.SubElement(obj, "truncated").text = "0"
        ET.SubElement(obj, "difficult").text = "0"
        bb = ET.SubElement(obj, "bndbox")
        for k, v in (("xmin", x0 + 1), ("ymin", y0 + 1), ("xmax", x1), ("ymax", y1)):
            ET.SubElement(bb, k).text = str(int(v))
    ET.indent(root)
    with atomic_path(path) as tmp:
        ET.ElementTree(root).write(tmp, encoding="utf-8", xml_declaration=False)
