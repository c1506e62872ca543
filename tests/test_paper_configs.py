"""The paper-table configurations in configs/: each one runs end to end.

Every config is loaded as it is shipped; only its source root (tiny fixtures written
in the real VOC+SBD / SIFT Flow formats, with the writers of tests/test_sources.py),
its sizes (split counts scaled to the fixture, shard sizes, workers) and its
iterations are changed.  Then the real ``mixseg`` commands run with it as
``--params``: source -> split -> ucm -> labels -> train -> evaluate.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner
from PIL import Image, ImageDraw

from pipeline.cli import main
from pipeline.core.shards import ShardReader
from pipeline.sources.siftflow import CATEGORY_FOLDER, SIFTFLOW_CLASSES
from pipeline.sources.vocxml import write_voc_xml
from tests.test_sources import save_sbd_cls, save_sbd_inst, write_lines
from pipeline.core.fileio import write_palette_png

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "configs").glob("table*.yaml"))  # the paper tables (camvid-*: test_camvid_configs.py)
NAMES = [p.stem for p in CONFIGS]
TRAIN_AUG, SIFT_TRAIN = 10582, 2488

# The paper's Table 1 (p, b, i) and the settings of Tables 4 and 5.
PAPER_COUNTS = {"1-1-1": (3527, 3527, 3528), "1-2-3": (1763, 3526, 5293), "1-5-10": (662, 3310, 6610)}
# Which variant each config trains in its test (all of them are checked to be buildable):
# across the configs every variant is trained at least once with each network.
TRAINED = {"table2-fcn8s-1-1-1": "p", "table2-fcn8s-1-2-3": "p+i", "table2-fcn8s-1-5-10": "p+b+i",
           "table3-deeplab-1-1-1": "ub", "table3-deeplab-1-2-3": "p+b", "table3-deeplab-1-5-10": "p+b+i",
           "table4-siftflow-fcn8s-1-0-1": "p+i", "table5-fcn8s-1.4k-pixel-9k-box": "p+b"}

H, W = 40, 56


def load(name) -> dict:
    return yaml.safe_load((REPO / "configs" / f"{name}.yaml").read_text())


# --------------------------------------------------------------------------- fixtures in the real formats

def _scene(rng, n_objects, classes):
    """An RGB image, its class map and instance map: textured background, 1-2 objects."""
    image = Image.fromarray(rng.integers(90, 140, (H, W, 3), dtype=np.uint8))
    cls = Image.new("L", (W, H), 0)
    inst = Image.new("L", (W, H), 0)
    draw, dc, di = ImageDraw.Draw(image), ImageDraw.Draw(cls), ImageDraw.Draw(inst)
    for k in range(n_objects):
        c = int(rng.choice(classes))
        x0, y0 = int(rng.integers(2, W // 2)), int(rng.integers(2, H // 2))
        x1, y1 = x0 + int(rng.integers(10, W // 2)), y0 + int(rng.integers(10, H // 2))
        shape = (x0, y0, x1, y1)
        colour = tuple(int(v) for v in (40 + 10 * c, 250 - 11 * c, (97 * c) % 256))
        (draw.ellipse if k % 2 == 0 else draw.rectangle)(shape, fill=colour)
        (dc.ellipse if k % 2 == 0 else dc.rectangle)(shape, fill=c)
        (di.ellipse if k % 2 == 0 else di.rectangle)(shape, fill=k + 1)
    cls, inst = np.array(cls), np.array(inst)
    return np.array(image), cls, inst


def _instances(cls, inst):
    """Instances still visible after overlap, renumbered 1..n, with their classes and boxes."""
    out = np.zeros_like(inst)
    cats, boxes = [], []
    for k in np.unique(inst):
        if k == 0:
            continue
        m = inst == k
        out[m] = len(cats) + 1
        cats.append(int(np.bincount(cls[m]).argmax()))
        ys, xs = np.nonzero(m)
        boxes.append((int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1))
    return out, cats, boxes


def make_voc_sbd(root: Path, seed: int = 0) -> Path:
    """VOC2012 + SBD as released: VOC seg train/val lists, SegmentationClass/Object PNGs and
    Annotations XML for VOC images; SBD cls/inst .mat for the SBD ones; lists that overlap
    like the real ones (a VOC val image in SBD train is left out of train_aug).
    train_aug: 15 images, val: 2."""
    from pipeline.sources.voc import VOC_CLASSES
    rng = np.random.default_rng(seed)
    voc = root / "VOCdevkit" / "VOC2012"
    bench = root / "benchmark_RELEASE" / "dataset"
    voc_train = [f"2007_{k:06d}" for k in range(4)]
    voc_val = [f"2007_{k:06d}" for k in range(100, 102)]
    sbd_only = [f"2008_{k:06d}" for k in range(12)]
    sbd_train = sbd_only[:8] + [voc_train[0], voc_val[0]]      # voc_val[0]: excluded from train_aug
    sbd_val = sbd_only[8:] + [voc_train[1]]
    for image_id in voc_train + voc_val + sbd_only:
        image, cls, inst = _scene(rng, 1 + int(rng.integers(0, 2)), np.arange(1, 21))
        inst, cats, boxes = _instances(cls, inst)
        (voc / "JPEGImages").mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(voc / "JPEGImages" / f"{image_id}.jpg", quality=92)
        write_voc_xml(voc / "Annotations" / f"{image_id}.xml", f"{image_id}.jpg", W, H,
                      [(VOC_CLASSES[c], b) for c, b in zip(cats, boxes)])
        if image_id in voc_train + voc_val:
            edge = (np.abs(np.diff(inst.astype(int), axis=0, prepend=0)) > 0)  # a void outline, as in VOC
            write_palette_png(voc / "SegmentationClass" / f"{image_id}.png", np.where(edge, 255, cls))
            write_palette_png(voc / "SegmentationObject" / f"{image_id}.png", np.where(edge, 255, inst))
        if image_id in sbd_train + sbd_val:
            save_sbd_cls(bench / "cls" / f"{image_id}.mat", cls)
            save_sbd_inst(bench / "inst" / f"{image_id}.mat", inst, cats)
    write_lines(voc / "ImageSets" / "Segmentation" / "train.txt", voc_train)
    write_lines(voc / "ImageSets" / "Segmentation" / "val.txt", voc_val)
    write_lines(bench / "train.txt", sbd_train)
    write_lines(bench / "val.txt", sbd_val)
    return root


def make_siftflow_set(parent: Path, seed: int = 0) -> Path:
    """SiftFlowDataset/ as distributed: Images/ and SemanticLabels/ (S, MATLAB double,
    0 = unlabeled) under the category folder, TestSet1.txt with Windows paths.
    8 training and 2 test images."""
    rng = np.random.default_rng(seed)
    root = parent / "SiftFlowDataset"
    ids = [f"{scene}_{k}" for k, scene in enumerate(["coast_arnat", "forest_for", "street_par", "highway_bost",
                                                     "insidecity_art", "mountain_n", "opencountry_fie",
                                                     "tallbuilding_a", "coast_n", "street_urb"])]
    sky, sea, tree, road = (SIFTFLOW_CLASSES.index(n) for n in ("sky", "sea", "tree", "road"))
    for k, image_id in enumerate(ids):
        s = np.full((H, W), float(sky))
        horizon = int(rng.integers(10, 25))
        s[horizon:] = [sea, tree, road][k % 3]
        s[:2, :3] = 0  # unlabeled
        palette = {0: (0, 0, 0), sky: (120, 170, 230), sea: (20, 60, 140), tree: (30, 110, 40), road: (90, 90, 90)}
        image = np.array([[palette[int(v)] for v in row] for row in s], np.uint8)
        image = np.clip(image.astype(int) + rng.integers(-12, 13, image.shape), 0, 255).astype(np.uint8)
        path = root / "Images" / CATEGORY_FOLDER / f"{image_id}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(path, quality=92)
        label = root / "SemanticLabels" / CATEGORY_FOLDER / f"{image_id}.mat"
        label.parent.mkdir(parents=True, exist_ok=True)
        import scipy.io
        scipy.io.savemat(label, {"S": s, "names": np.array(SIFTFLOW_CLASSES[1:], dtype=object)})
    (root / "TestSet1.txt").write_text("".join(f"Images\\{CATEGORY_FOLDER}\\{i}.jpg\r\n" for i in ids[-2:]))
    return root


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    base = tmp_path_factory.mktemp("datasets")
    vgg = base / "vgg16-partial.pth"
    # a torchvision-format VGG16 state dict (first conv only: enough to exercise the loader)
    torch.save({"features.0.weight": torch.randn(64, 3, 3, 3) * 0.1, "features.0.bias": torch.zeros(64)}, vgg)
    return {"voc2012": make_voc_sbd(base / "voc"), "siftflow": make_siftflow_set(base / "sift"), "vgg": vgg}


def scaled_counts(counts: dict, n: int) -> dict:
    """Table counts scaled to ``n`` images (largest remainder), every non-empty subset kept non-empty."""
    total = sum(counts.values())
    exact = {k: counts[k] * n / total for k in ("pixel", "box", "image")}
    out = {k: int(v) for k, v in exact.items()}
    for k in sorted(exact, key=lambda k: -(exact[k] - out[k]))[: n - sum(out.values())]:
        out[k] += 1
    for k in out:
        if counts[k] and not out[k]:
            out[k] = 1
            out[max(out, key=out.get)] -= 1
    return out


def shrink(config: dict, datasets, n_train: int) -> dict:
    """The config with its dataset root, sizes and iterations made tiny; nothing else touched."""
    c = json.loads(json.dumps(config))
    c["source"].update(root=str(datasets[c["source"]["kind"]]), workers=1)
    c["split"]["counts"] = scaled_counts(config["split"]["counts"], n_train)
    for stage in ("ucm", "labels"):
        c[stage].update(workers=1, shard_size=4)
    c["train"].update(pretrained=str(datasets["vgg"]), threads=2, workers=0, checkpoint_every=1000)
    return c


def invoke(*args):
    r = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    assert r.exit_code == 0, f"mixseg {args[0]} failed:\n{r.output}"
    return r.output


# --------------------------------------------------------------------------- the configs themselves

def test_every_paper_table_has_its_configs():
    assert set(NAMES) == set(TRAINED)
    ref = yaml.safe_load((REPO / "params.yaml").read_text())
    for name in NAMES:
        c = load(name)
        assert set(c) == set(ref), name
        for section in ref:
            if isinstance(ref[section], dict):
                assert set(c[section]) == set(ref[section]), (name, section)
        text = (REPO / "configs" / f"{name}.yaml").read_text()
        assert f"cp configs/{name}.yaml params.yaml && dvc repro" in text  # the documented command
        assert c["train"]["mode"] == "paper" and c["labels"]["rule"] == "paper"


@pytest.mark.parametrize("ratio", sorted(PAPER_COUNTS))
def test_tables_2_and_3_use_table_1_counts_and_the_same_data(ratio):
    fcn, deeplab = load(f"table2-fcn8s-{ratio}"), load(f"table3-deeplab-{ratio}")
    p, b, i = PAPER_COUNTS[ratio]
    for c in (fcn, deeplab):
        assert c["split"]["counts"] == {"pixel": p, "box": b, "image": i} and p + b + i == TRAIN_AUG
        assert c["split"]["ratio"] == [int(x) for x in ratio.split("-")]
        assert c["source"]["kind"] == "voc2012" and c["source"]["voc2012"]["sbd"] is True
        assert c["train"]["variants"] == ["p", "p+i", "p+b", "p+b+i", "ub"]
    assert fcn["train"]["arch"] == "fcn8s" and deeplab["train"]["arch"] == "deeplab_largefov"
    # the DeepLab table trains on the very same split, UCMs and labels as the FCN table
    assert {k: v for k, v in fcn.items() if k != "train"} == {k: v for k, v in deeplab.items() if k != "train"}


def test_tables_4_and_5_settings():
    t4 = load("table4-siftflow-fcn8s-1-0-1")
    assert t4["source"]["kind"] == "siftflow"
    assert t4["split"]["counts"] == {"pixel": SIFT_TRAIN // 2, "box": 0, "image": SIFT_TRAIN // 2}
    assert "p+i" in t4["train"]["variants"] and not {"p+b", "p+b+i"} & set(t4["train"]["variants"])
    t5 = load("table5-fcn8s-1.4k-pixel-9k-box")
    assert t5["split"]["counts"] == {"pixel": 1464, "box": TRAIN_AUG - 1464, "image": 0}
    assert "p+b" in t5["train"]["variants"] and not {"p+i", "p+b+i"} & set(t5["train"]["variants"])


# --------------------------------------------------------------------------- each config, run

@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_config_runs_source_to_evaluate(name, datasets, tmp_path, monkeypatch):
    config = load(name)
    n_train = 8 if config["source"]["kind"] == "siftflow" else 15
    params = shrink(config, datasets, n_train)
    variant = TRAINED[name]
    monkeypatch.chdir(tmp_path)
    Path("params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    P = ("--params", "params.yaml")

    invoke("source", *P, "--no-progress")
    source = json.loads(Path("metrics/source.json").read_text())
    assert source["classes"] == (21 if config["source"]["kind"] == "voc2012" else 34)
    invoke("split", *P)
    split = json.loads(Path("data/split.json").read_text())
    assert split["counts"] == params["split"]["counts"] and sum(split["counts"].values()) == n_train
    invoke("ucm", *P, "--no-progress")
    invoke("labels", *P, "--no-progress")
    labels = json.loads(Path("metrics/labels.json").read_text())
    assert labels["train"] == params["split"]["counts"] and labels["val"] == 2
    reader = ShardReader("data/labels", split="train")
    for image_id in reader.ids_of_kind("box"):  # boxes from the instance masks, labelled with the paper's rule
        boxes = reader.boxes(image_id)
        assert len(boxes) >= 1 and (boxes["strategy"] == 0).all()
    assert reader.label(reader.ids_of_kind("pixel")[0]) is not None

    # every variant of the config has the subsets it needs
    from train.data import variant_items
    for v in config["train"]["variants"]:
        assert variant_items(reader, v)
    n_images = len(variant_items(reader, variant))
    reader.close()

    # train: the config's network, mode and optimiser; 1 iteration (FCN) or 2 (DeepLab)
    iterations = 1 if params["train"]["arch"] == "fcn8s" else 2
    params["train"]["epochs"] = iterations / n_images
    Path("params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = invoke("train", *P, "--variant", variant, "--no-progress")
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["iterations"] == summary["total_iterations"] == iterations
    model = torch.load(f"models/{variant}/model.pt", map_location="cpu", weights_only=False, mmap=True)
    cfg = model["meta"]["config"]
    assert model["meta"]["arch"] == config["train"]["arch"]
    # the typed TrainConfig's settings: mode paper is what makes the loss Eq. 3's sum (TrainConfig.reduction)
    assert (cfg["batch_size"], cfg["crop"], cfg["mode"], cfg["lr"]) == (1, None, "paper", 1e-4)
    invoke("evaluate", *P, "--variant", variant, "--no-progress")
    metrics = json.loads(Path(f"metrics/eval/{variant}.json").read_text())
    detail = json.loads(Path(f"metrics/eval_classes/{variant}.json").read_text())
    assert detail["images"] == 2 and detail["arch"] == config["train"]["arch"]
    assert all(0 <= metrics[k] <= 100 for k in ("pAcc", "mAcc", "mIU", "fwIU"))


@pytest.mark.slow
def test_documented_command_resolves_every_stage_with_dvc(datasets, tmp_path):
    """`cp configs/X.yaml params.yaml && dvc repro`: DVC 3.67 resolves dvc.yaml with each config
    (interpolation of its values, foreach over its variants) -- checked with `dvc stage list`
    (`dvc repro --dry` stops at the first stage whose inputs do not exist yet).  The full
    `dvc repro` of the real dvc.yaml is tested in test_dvc_pipeline.py."""
    proj = tmp_path / "proj"
    proj.mkdir()
    shutil.copy(REPO / "dvc.yaml", proj)
    for package in ("pipeline", "train"):  # the stages' code dependencies
        shutil.copytree(REPO / package, proj / package, ignore=shutil.ignore_patterns("__pycache__"))
    (proj / "configs").mkdir()
    env_run = dict(cwd=proj, capture_output=True, text=True, shell=True)
    assert subprocess.run("git init -q && dvc init -q && dvc config core.analytics false", **env_run).returncode == 0
    # one config per distinct shape: 5 VOC variants (Tables 2 and 3 share it), SIFT Flow, Table 5
    for name in ("table3-deeplab-1-5-10", "table4-siftflow-fcn8s-1-0-1", "table5-fcn8s-1.4k-pixel-9k-box"):
        config = load(name)
        config["source"]["root"] = str(datasets[config["source"]["kind"]])
        (proj / "configs" / f"{name}.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        r = subprocess.run(f"cp configs/{name}.yaml params.yaml && dvc stage list --name-only", **env_run)
        assert r.returncode == 0, f"{name}:\n{r.stdout}\n{r.stderr}"
        stages = set(r.stdout.split())
        want = {"source", "split", "ucm", "labels", "quality", "report"}
        want |= {f"{s}@{v}" for s in ("train", "evaluate") for v in config["train"]["variants"]}
        assert want <= stages, (name, sorted(want - stages))
