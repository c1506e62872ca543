"""SIFT Flow (Liu et al.) as a :class:`Dataset`.

The standard distribution (``SiftFlowDataset.zip``) unpacks to::

    Images/spatial_envelope_256x256_static_8outdoorcategories/<id>.jpg     2,688 images, 256x256
    SemanticLabels/spatial_envelope_256x256_static_8outdoorcategories/<id>.mat
                                     variable S, (256, 256), 0 = unlabeled, 1..33 = classes
    GeoLabels/...                    geometric labels (not used)
    TestSet1.txt                     the 200 test images

``root`` may be that folder or its parent holding ``SiftFlowDataset/``.  Test-list
lines may be bare ids or image paths (``/`` or ``\\`` separated, with or without the
extension); the id is the file stem.  A ``test.txt`` of ids (the FCN repository's
split file) is read when ``TestSet1.txt`` is absent.
"""

from __future__ import annotations

from pathlib import Path, PureWindowsPath

from pipeline.core.errors import InputError
from pipeline.core.index import Dataset, Item, MaskRef

CATEGORY_FOLDER = "spatial_envelope_256x256_static_8outdoorcategories"
TEST_LISTS = ("TestSet1.txt", "test.txt")
# Label k of S is SIFTFLOW_CLASSES[k]; the names in the order of the dataset's own ``names``.
SIFTFLOW_CLASSES = ["background", "awning", "balcony", "bird", "boat", "bridge", "building", "bus", "car",
                    "cow", "crosswalk", "desert", "door", "fence", "field", "grass", "moon", "mountain",
                    "person", "plant", "pole", "river", "road", "rock", "sand", "sea", "sidewalk", "sign",
                    "sky", "staircase", "streetlight", "sun", "tree", "window"]


def read_test_list(path) -> list[str]:
    """Read a SIFT Flow test list; returns image ids (file stems), in file order."""
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(path, f"unreadable test list ({e})") from None
    ids = []
    for line in lines:
        if line.strip():
            name = PureWindowsPath(line.strip()).name  # splits on both / and \
            ids.append(name.rsplit(".", 1)[0] if name.lower().endswith((".jpg", ".mat")) else name)
    return ids


def load_siftflow(root) -> Dataset:
    """Read SIFT Flow into a :class:`Dataset`.

    Parameters
    ----------
    root : path
        The unpacked ``SiftFlowDataset`` folder (or its parent).

    Returns
    -------
    Dataset
        Classes: ``"background"`` plus the 33 SIFT Flow classes, so that label ``k`` of
        ``S`` is class ``k`` (class 0 never occurs; ``S == 0`` reads as void through
        MaskRef format ``"siftflow_mat"``).  One item per image, sorted by id, with
        split ``"val"`` for the test list and ``"train"`` otherwise, and no boxes.

    Raises
    ------
    InputError
        Naming the missing folder, test list or label file, or a test-list entry
        with no image.
    """
    root = Path(root)
    if not (root / "Images").is_dir() and (root / "SiftFlowDataset" / "Images").is_dir():
        root = root / "SiftFlowDataset"
    image_dir = root / "Images" / CATEGORY_FOLDER
    label_dir = root / "SemanticLabels" / CATEGORY_FOLDER
    if not image_dir.is_dir():
        raise InputError(image_dir, "SIFT Flow image folder not found")
    test_list = next((root / name for name in TEST_LISTS if (root / name).is_file()), None)
    if test_list is None:
        raise InputError(root / TEST_LISTS[0], "SIFT Flow test list not found")

    images = {p.stem: p for p in sorted(image_dir.iterdir()) if p.suffix.lower() == ".jpg"}
    if not images:
        raise InputError(image_dir, "no .jpg images in the folder")
    test_ids = set(read_test_list(test_list))
    for image_id in sorted(test_ids):
        if image_id not in images:
            raise InputError(test_list, f"test image {image_id!r} not found in {image_dir}")

    items = []
    for image_id, image in images.items():
        label = label_dir / f"{image_id}.mat"
        if not label.is_file():
            raise InputError(label, f"label file of image {image_id!r} not found")
        items.append(Item(id=image_id, image=str(image), split="val" if image_id in test_ids else "train",
                          mask=MaskRef(str(label), "siftflow_mat")))
    return Dataset(classes=list(SIFTFLOW_CLASSES), items=items, root=str(root))
