"""Determinism: the same inputs and params give byte-identical UCM and label shards and the
same split on every run, in this process or another one, with 1 or 2 workers."""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from pipeline.cli import main
from pipeline.core.shards import bitset_dtype, write_label_shard
from pipeline.sources.synthetic import generate


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("det")
    generate(root / "data/raw/synthetic", num_train=12, num_val=3, height=40, width=56, num_classes=5, seed=7,
             progress=False)
    params = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())
    params["source"]["workers"] = 1
    params["split"].update(ratio=[1, 2, 1], seed=3)
    params["ucm"].update(workers=1, shard_size=2)
    params["labels"].update(workers=1, shard_size=2, strategy="ucm")
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    cwd = os.getcwd()
    os.chdir(root)
    try:
        assert CliRunner().invoke(main, ["source", "--no-progress"]).exit_code == 0
    finally:
        os.chdir(cwd)
    return root


def run(project, *args):
    cwd = os.getcwd()
    os.chdir(project)
    try:
        result = CliRunner().invoke(main, list(args))
    finally:
        os.chdir(cwd)
    assert result.exit_code == 0, result.output
    return result


def digest(folder):
    """{file name: sha256} of every file of a stage's output folder."""
    folder = Path(folder)
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_the_split_is_the_same_on_every_run_and_depends_on_the_seed(project):
    run(project, "split", "--out", "s1.json")
    run(project, "split", "--out", "s2.json")
    s1 = (project / "s1.json").read_bytes()
    assert s1 == (project / "s2.json").read_bytes()
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["split"]["seed"] = 4
    (project / "params_seed4.yaml").write_text(yaml.safe_dump(params))
    run(project, "split", "--params", "params_seed4.yaml", "--out", "s3.json")
    a1 = json.loads(s1)["assignment"]
    a3 = json.loads((project / "s3.json").read_text())["assignment"]
    assert a1 != a3 and sorted(a1) == sorted(a3)  # a real function of the seed, over the same ids


def test_ucm_and_label_shards_are_byte_identical_across_runs_and_worker_counts(project):
    run(project, "split")
    outs = {}
    for workers in ("1", "2"):  # (test_crash_safety compares repeated runs in other processes too)
        tag = f"w{workers}-{len(outs)}"
        run(project, "ucm", "--no-progress", "--workers", workers, "--out", f"ucm-{tag}")
        run(project, "labels", "--no-progress", "--workers", workers, "--ucm", f"ucm-{tag}",
            "--out", f"labels-{tag}", "--metrics", f"metrics-{tag}.json")
        outs[tag] = (digest(project / f"ucm-{tag}"), digest(project / f"labels-{tag}"),
                     (project / f"metrics-{tag}.json").read_text())
    (u1, l1, m1), *others = outs.values()
    assert len([n for n in u1 if n.endswith(".h5")]) == 8 and len([n for n in l1 if n.endswith(".h5")]) >= 8
    for u, l, m in others:
        assert u == u1, "UCM shards differ between runs or worker counts"
        assert l == l1, "label shards differ between runs or worker counts"
        assert m == m1
    with h5py.File(project / "labels-w2-1" / "labels-train-00000.h5", "r") as f:
        params = json.loads(f.attrs["params"])
    assert "workers" not in params and params["strategy"] == "ucm"  # run-only knobs are not recorded


def test_changing_a_param_changes_the_bytes(project):
    """The digests above are sensitive: another alpha gives other label shards, same UCMs."""
    run(project, "split")
    run(project, "ucm", "--no-progress", "--out", "ucm-a")
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["labels"]["alpha"] = 0.9
    (project / "params_alpha.yaml").write_text(yaml.safe_dump(params))
    run(project, "labels", "--no-progress", "--ucm", "ucm-a", "--out", "labels-a", "--metrics", "ma.json")
    run(project, "labels", "--no-progress", "--ucm", "ucm-a", "--out", "labels-b", "--metrics", "mb.json",
        "--params", "params_alpha.yaml")
    a, b = digest(project / "labels-a"), digest(project / "labels-b")
    assert a.keys() == b.keys() and a != b


WRITE_SHARD = """
import sys, numpy as np
from pipeline.core.shards import bitset_dtype, write_label_shard
sys.path.insert(0, {tests!r})
from test_determinism import shard_records
junk = [np.random.default_rng(k).integers(0, 2**32, 1 << 16, dtype=np.uint64).copy() for k in range(4)]
write_label_shard(sys.argv[1], shard_records(), [f"c{{k}}" for k in range(20)], "train", params={{"a": 1}})
"""


def shard_records():
    rng = np.random.default_rng(11)
    dt = bitset_dtype(20)
    recs = []
    for k in range(6):
        h, w = int(rng.integers(20, 120)), int(rng.integers(20, 160))
        cm = np.zeros((h, w), np.int64)
        for _ in range(5):  # blobby maps, as real labels are
            y, x, r = rng.integers(0, h), rng.integers(0, w), rng.integers(3, 40)
            yy, xx = np.ogrid[:h, :w]
            cm[(yy - y) ** 2 + (xx - x) ** 2 < r * r] = rng.integers(0, 20)
        lab = (np.uint64(1) << cm.astype(np.uint64)).astype(dt)
        lab[rng.random((h, w)) < 0.02] = 0
        recs.append({"id": f"im{k}", "kind": "box", "height": h, "width": w, "tags": [1, 3],
                     "image_bytes": rng.bytes(100), "label": lab, "truth": lab})
    return recs


def test_a_shard_written_in_another_process_has_the_same_bytes(tmp_path):
    write_label_shard(tmp_path / "here.h5", shard_records(), [f"c{k}" for k in range(20)], "train",
                      params={"a": 1})
    script = WRITE_SHARD.format(tests=str(Path(__file__).parent))
    for k in range(2):
        subprocess.run([sys.executable, "-c", script, str(tmp_path / f"there{k}.h5")], check=True)
        assert (tmp_path / f"there{k}.h5").read_bytes() == (tmp_path / "here.h5").read_bytes()
