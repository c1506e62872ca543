"""Fixtures shared by the stage tests: a tiny synthetic VOC dataset and a project folder around it."""

import shutil
from pathlib import Path

import pytest
import yaml

from pipeline.sources.synthetic import generate

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    """8 train + 2 val synthetic images, 48x36, 4 classes, in the VOC layout (``<root>/synthetic``)."""
    root = tmp_path_factory.mktemp("raw")
    generate(root / "synthetic", num_train=8, num_val=2, height=36, width=48, num_classes=4, seed=1,
             progress=False)
    return root


@pytest.fixture
def project(tmp_path, tiny_dataset, monkeypatch):
    """A working folder with ``data/raw`` = the tiny dataset and the repository's ``params.yaml``
    (1 worker, ratio 1:1:1, shards of 4); the current directory for the test."""
    shutil.copytree(tiny_dataset, tmp_path / "data/raw")
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["source"]["workers"] = 1
    params["split"]["ratio"] = [1, 1, 1]
    for stage in ("ucm", "labels"):
        params[stage].update(workers=1, shard_size=4)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(tmp_path)
    return tmp_path
