"""`dvc repro` of the real dvc.yaml on tiny configs, in a throw-away project.

One whole `dvc repro` (the ``reproduced`` fixture) serves the tests of the outputs and
the tests of what `dvc status` reports after an edit; those restore what they edit.
The copy's pipeline/ and train/ are what DVC hashes; `mixseg` runs the installed code.
"""

import contextlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml

from pipeline.core.shards import ShardReader, UcmReader
from pipeline.sources.vocxml import read_voc_xml

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def run(cmd, cwd, check=True):
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "PYTHONUNBUFFERED": "1"}
    p = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, shell=isinstance(cmd, str))
    if check and p.returncode != 0:
        raise AssertionError(f"{cmd} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    return p


SYNTHETIC = "data/raw/synthetic"


def tiny_params(**overrides):
    """The repository's params.yaml on a tiny synthetic set; ``overrides``: ``{"section.key": value}``."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["synthetic"].update(num_train=24, num_val=6, height=48, width=64, n_jobs=1)
    params["source"]["workers"] = 1
    params["split"]["ratio"] = [1, 2, 3]
    for stage in ("ucm", "labels"):
        params[stage].update(shard_size=8, workers=1)
    for key, value in overrides.items():
        section, name = key.split(".")
        params[section][name] = value
    return params


def make_project(tmp_path, params) -> Path:
    proj = tmp_path / "proj"
    proj.mkdir()
    for name in ("dvc.yaml", ".dvcignore", "report/reference.json"):
        (proj / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / name, proj / name)
    for package in ("pipeline", "train"):
        shutil.copytree(REPO / package, proj / package, ignore=shutil.ignore_patterns("__pycache__"))
    (proj / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run("git init -q && git config user.email t@t && git config user.name t", proj)
    run("dvc init -q && dvc config core.analytics false", proj)
    return proj


VARIANTS = ["p", "p+b+i", "ub"]


@pytest.fixture(scope="module")
def reproduced(tmp_path_factory):
    """(project, stdout) of a whole `dvc repro` of the tiny set: three variants, one epoch."""
    params = tiny_params()
    params["train"].update(variants=VARIANTS, epochs=1, batch_size=4, crop=[32, 48], threads=1)
    proj = make_project(tmp_path_factory.mktemp("reproduced"), params)
    return proj, run("dvc repro", proj).stdout


def status(proj, *targets) -> dict:
    """`dvc status --json`: {stage: [changes]}, {} when everything is up to date."""
    return json.loads(run(["dvc", "status", "--json", *targets], proj).stdout or "{}")


@contextlib.contextmanager
def appended(path: Path, text: str):
    """``path`` with ``text`` appended, restored afterwards."""
    old = path.read_bytes()
    path.write_bytes(old + text.encode())
    try:
        yield
    finally:
        path.write_bytes(old)


@contextlib.contextmanager
def changed_params(proj: Path, **changes):
    """The project's params.yaml with ``{"section.key": value}`` changed, restored afterwards."""
    path = proj / "params.yaml"
    old = path.read_bytes()
    params = yaml.safe_load(old)
    for key, value in changes.items():
        section, name = key.split(".")
        assert params[section][name] != value, key
        params[section][name] = value
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        yield
    finally:
        path.write_bytes(old)


def test_default_pipeline_source_to_quality(reproduced):
    proj, out = reproduced
    for stage in (f"synthetic@{SYNTHETIC}", "source", "split", "ucm", "labels", "quality"):
        assert f"Running stage '{stage}'" in out
    train = ShardReader(proj / "data/labels", split="train")
    val = ShardReader(proj / "data/labels", split="val")
    split = json.loads((proj / "data/split.json").read_text())
    assert split["counts"] == {"pixel": 4, "box": 8, "image": 12}
    assert len(train) == 24 and len(val) == 6
    for i, kind in split["assignment"].items():
        assert train.kind(i) == kind
        assert (train.label(i) is None) == (kind == "image")
        assert train.truth(i) is not None and train.tags(i)[1:].any()
    box_id = train.ids_of_kind("box")[0]
    assert len(train.boxes(box_id)) >= 1 and (train.boxes(box_id)["strategy"] == 0).all()
    ucms = UcmReader(proj / "data/ucm")
    assert len(ucms.ids) == 24
    h, w = 48, 64
    assert ucms[box_id].shape == (2 * h + 1, 2 * w + 1)
    quality = json.loads((proj / "metrics/label_quality.json").read_text())
    assert set(quality) >= {"ucm", "raw_box", "images"} and quality["images"] == 8
    assert 0 < quality["raw_box"]["miou"] <= 100 and quality["raw_box"]["box_ignored"] == 0
    for reader in (train, val, ucms):
        reader.close()
    assert status(proj) == {}


def test_editing_a_reader_module_reruns_the_source_stage(reproduced):
    proj, _ = reproduced
    with appended(proj / "pipeline/sources/camvid.py", "# a comment\n"):
        assert status(proj, "source") == {"source": [{"changed deps": {"pipeline/sources/camvid.py": "modified"}}]}
        assert status(proj, "ucm") == {}
    assert status(proj) == {}


def test_worker_and_thread_counts_rerun_nothing(reproduced):
    proj, _ = reproduced
    with changed_params(proj, **{"train.threads": 2, "train.workers": 1, "train.checkpoint_every": 7,
                                 "ucm.workers": 2, "labels.workers": 2, "source.workers": 2, "synthetic.n_jobs": 2}):
        assert status(proj) == {}


def test_a_training_knob_reruns_the_train_stages(reproduced):
    proj, _ = reproduced
    with changed_params(proj, **{"train.lr": 0.05}):
        changed = status(proj)
        assert set(changed) == {f"train@{v}" for v in VARIANTS}
        assert all(c == [{"changed deps": {"params.yaml": {"train.lr": "modified"}}}] for c in changed.values())
        dry = run("dvc repro --dry", proj).stdout  # every output is in the workspace: a dry run works
        assert all(f"Running stage 'train@{v}'" in dry for v in VARIANTS) and "Running stage 'source'" not in dry
    assert status(proj) == {}


def _coco_from_voc(voc: Path, shrink: int) -> dict:
    """Boxes of the synthetic VOC-layout set as COCO JSON, each box shrunk by ``shrink`` px a side."""
    classes = (voc / "classes.txt").read_text().split()
    images, anns = [], []
    for k, xml in enumerate(sorted((voc / "Annotations").glob("*.xml"))):
        doc = read_voc_xml(xml)
        images.append({"id": k, "file_name": f"{xml.stem}.jpg", "width": doc["width"], "height": doc["height"]})
        for o in doc["objects"]:
            x0, y0, x1, y1 = o["box"]
            if x1 - x0 > 2 * shrink + 1 and y1 - y0 > 2 * shrink + 1:
                x0, y0, x1, y1 = x0 + shrink, y0 + shrink, x1 - shrink, y1 - shrink
            anns.append({"id": len(anns), "image_id": k, "bbox": [x0, y0, x1 - x0, y1 - y0],
                         "category_id": classes.index(o["name"]), "iscrowd": 0, "area": (x1 - x0) * (y1 - y0)})
    cats = [{"id": i, "name": n} for i, n in enumerate(classes) if i > 0]
    return {"images": images, "annotations": anns, "categories": cats}


def test_swapping_the_box_source_reruns_labels_but_not_ucm(tmp_path):
    # a user's own set: images + masks + COCO boxes in one folder (here made from the synthetic set)
    proj = make_project(tmp_path, tiny_params())
    run("dvc repro synthetic", proj)
    voc = proj / "data/raw/synthetic/VOCdevkit/VOC2012"
    mine = proj / "data/mine"
    shutil.copytree(voc / "JPEGImages", mine / "images")
    shutil.copytree(voc / "SegmentationClass", mine / "masks")
    (mine / "classes.txt").write_text((voc / "classes.txt").read_text())
    (mine / "val.txt").write_text((voc / "ImageSets/Segmentation/val.txt").read_text())
    (mine / "boxes.json").write_text(json.dumps(_coco_from_voc(voc, shrink=0)))
    params = tiny_params(**{"source.kind": "boxes", "source.root": "data/mine",
                            "source.boxes": "data/mine/boxes.json", "synthetic.out": []})
    params["source"]["boxes_source"] = {"images": "images", "masks": "masks", "tags": None,
                                        "classes": "classes.txt", "val_list": "val.txt"}
    (proj / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert "synthetic" not in run("dvc repro labels quality", proj).stdout
    ucm_before = {p.name: p.read_bytes() for p in (proj / "data/ucm").iterdir()}
    split_before = (proj / "data/split.json").read_bytes()
    labels_before = ShardReader(proj / "data/labels", split="train")
    box_id = labels_before.ids_of_kind("box")[0]
    old_boxes = labels_before.boxes(box_id).copy()
    labels_before.close()

    (mine / "boxes.json").write_text(json.dumps(_coco_from_voc(voc, shrink=2)))  # a new box set
    status = run("dvc status --with-deps labels quality", proj).stdout
    assert "source" in status and "ucm" not in status.split("source")[0]
    out = run("dvc repro labels quality", proj).stdout
    assert "Running stage 'source'" in out
    assert "Stage 'ucm' didn't change, skipping" in out
    assert (proj / "data/split.json").read_bytes() == split_before  # reran (masks may change), same split
    assert "Running stage 'labels'" in out and "Running stage 'quality'" in out
    assert {p.name: p.read_bytes() for p in (proj / "data/ucm").iterdir()} == ucm_before
    new_boxes = ShardReader(proj / "data/labels", split="train").boxes(box_id)
    assert not np.array_equal(new_boxes["x0"], old_boxes["x0"])


def test_bad_input_fails_the_stage_and_leaves_no_output(tmp_path):
    proj = make_project(tmp_path, tiny_params())
    run("dvc repro synthetic", proj)
    jpgs = sorted((proj / "data/raw/synthetic/VOCdevkit/VOC2012/JPEGImages").glob("*.jpg"))
    data = jpgs[3].read_bytes()
    jpgs[3].write_bytes(data[: len(data) // 2])  # truncated image
    p = run("mixseg source --no-progress", proj, check=False)
    assert p.returncode == 2
    assert f"mixseg source: error: {jpgs[3].relative_to(proj)}" in p.stderr and "truncated" in p.stderr
    assert not (proj / "data/source").exists()
    assert not any(n.name.startswith(".") for n in (proj / "data").iterdir())  # no temp file left behind


def test_full_pipeline_through_training_and_report(reproduced):
    proj, out = reproduced
    for stage in ("train@p", "train@p+b+i", "train@ub", "evaluate@p", "evaluate@ub", "report"):
        assert f"Running stage '{stage}'" in out
    table = (proj / "report/results.md").read_text()
    for v in ("p", "p+b+i", "ub"):
        assert f"| small-{v} |" in table
        m = json.loads((proj / f"metrics/eval/{v}.json").read_text())
        assert 0 <= m["mIU"] <= 100 and json.loads((proj / f"metrics/eval_classes/{v}.json").read_text())["images"] == 6
    assert all((proj / "report" / f).exists() for f in ("fig6.png", "fig7.png", "curves.png"))
    plots = run("dvc plots show --json", proj, check=False)
    assert plots.returncode == 0 and "train/loss" in plots.stdout


def test_dvc_experiments_compare_settings_and_show_fits_a_terminal(reproduced):
    """`dvc exp run -S` (workspace and --temp) reruns only what the setting changes; `dvc exp show
    --only-changed` and `dvc metrics show` fit a terminal. Runs last: it changes the project."""
    proj, _ = reproduced
    run("git add -A && git commit -q -m base", proj)  # experiments need a commit to start from
    out = run("dvc exp run -S train.lr=0.05 -n lr005", proj).stdout
    assert "Running stage 'train@p'" in out and "Running stage 'source'" not in out
    assert "Running stage 'ucm'" not in out and "Running stage 'labels'" not in out
    temp = run("dvc exp run --temp -S train.lr=0.02 -n lr002", proj)
    assert temp.returncode == 0, temp.stderr
    show = run("dvc exp show --only-changed --no-pager", proj).stdout
    assert "lr005" in show and "lr002" in show
    assert max(len(line) for line in show.splitlines()) <= 200, show  # a wide terminal; --drop narrows more
    metrics = run("dvc metrics show", proj).stdout
    assert max(len(line) for line in metrics.splitlines()) <= 160, metrics
