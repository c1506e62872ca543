"""The ucm and labels stages on a Dask cluster (joblib's dask backend, pipeline/core/cluster.py).

A ``dask.distributed.LocalCluster`` of two worker *processes* on loopback stands in
for a cluster: tasks and their arguments are pickled to other processes, which
write the shards themselves.  Outputs must be byte-identical to the local run.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

pytest.importorskip("distributed")

from pipeline.cli import main  # noqa: E402
from pipeline.core.cluster import ENV, joblib_backend, scheduler_from_env  # noqa: E402
from pipeline.core.index import write_index  # noqa: E402
from pipeline.core.config import LabelsConfig, SourceConfig, UcmConfig, record  # noqa: E402
from pipeline.labels.stage import run_labels  # noqa: E402
from pipeline.sources import load_source  # noqa: E402
from pipeline.split import split_ids  # noqa: E402
from pipeline.sources.synthetic import generate  # noqa: E402
from pipeline.ucm.stage import run_ucm  # noqa: E402

pytestmark = pytest.mark.slow

UCM = UcmConfig(method="mixseg", scales=(1.0, 2.0, 4.0), shard_size=3, workers=1)
LABELS = LabelsConfig(strategy="ucm", rule="enclosed", shard_size=3, workers=1)


def tree_bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(Path(folder).iterdir())}


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A project folder whose index holds *relative* image paths (as `mixseg source`
    writes them), with the local run's UCM and label shards as the reference."""
    proj = tmp_path_factory.mktemp("proj")
    old = os.getcwd()
    os.chdir(proj)
    try:
        generate("raw", num_train=20, num_val=4, height=40, width=56, num_classes=4, seed=5, n_jobs=1,
                 progress=False)
        write_index(load_source(SourceConfig(kind="synthetic", root="raw")), "source", progress=False)
        images = json.loads(Path("source/images.json").read_text())["items"]
        assert not Path(images[0]["path"]).is_absolute()
        train = [r["id"] for r in images if r["split"] == "train"]
        assignment = split_ids(train, set(train), counts={"pixel": 4, "box": 10, "image": 6}, seed=0)
        Path("split.json").write_text(json.dumps({"format": "mixseg-split", "version": 1, "seed": 0,
                                                  "assignment": assignment}))
        run_ucm("source/images.json", "ref/ucm", UCM, progress=False)
        run_labels("source/images.json", "source/annotations.json", "split.json", "ref/ucm", "ref/labels", LABELS,
                   progress=False)
        Path("params.yaml").write_text(yaml.safe_dump({"ucm": record(UCM), "labels": record(LABELS)}))
    finally:
        os.chdir(old)
    return proj


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    from dask.distributed import LocalCluster
    # started from another folder than the project: the workers' cwd differs from the client's
    old = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("elsewhere"))
    try:
        c = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                         dashboard_address=None, worker_dashboard_address=None)
    finally:
        os.chdir(old)
    yield c
    c.close()


def test_scheduler_from_env(monkeypatch):
    for value in ("", "  ", "loky", "local"):
        monkeypatch.setenv(ENV, value)
        assert scheduler_from_env() is None
    monkeypatch.delenv(ENV)
    assert scheduler_from_env() is None
    monkeypatch.setenv(ENV, "tcp://10.0.0.5:8786")
    assert scheduler_from_env() == "tcp://10.0.0.5:8786"


def test_without_a_scheduler_the_block_runs_locally(monkeypatch):
    import joblib
    monkeypatch.delenv(ENV, raising=False)
    with joblib_backend() as client:
        assert client is None
        backend, _ = joblib.parallel.get_active_backend()
        assert type(backend).__name__ == "LokyBackend"


def test_stages_on_a_dask_cluster_write_byte_identical_shards(project, cluster, monkeypatch):
    from distributed import get_task_stream
    monkeypatch.chdir(project)  # relative paths, as under dvc repro; the workers are elsewhere
    with joblib_backend(cluster.scheduler_address) as client:
        import joblib
        client.wait_for_workers(2, timeout=120)  # under load the workers may still be registering
        workers = set(client.scheduler_info()["workers"])
        assert type(joblib.parallel.get_active_backend()[0]).__name__ == "DaskDistributedBackend"
        with get_task_stream(client) as ts:
            ucm = run_ucm("source/images.json", "dask/ucm", UCM, progress=False)
            summary = run_labels("source/images.json", "source/annotations.json", "split.json", "dask/ucm",
                                 "dask/labels", LABELS, progress=False)
        # every worker changed into the client's folder
        assert set(client.run(os.getcwd).values()) == {str(project)}
    assert ucm["images"] == 20 and summary["train"] == {"pixel": 4, "box": 10, "image": 6}
    ran_on = {t["worker"] for t in ts.data}
    assert ts.data and ran_on <= workers, "the shards were not computed on the cluster's workers"
    for stage in ("ucm", "labels"):
        ref, got = tree_bytes(project / "ref" / stage), tree_bytes(project / "dask" / stage)
        assert sorted(got) == sorted(ref) and len(ref) >= 8
        assert all(got[name] == ref[name] for name in ref), f"{stage} shards differ from the local run"


def test_mixseg_commands_use_the_cluster_named_by_the_environment(project, cluster, monkeypatch):
    monkeypatch.chdir(project)
    before = cluster.scheduler.transition_counter
    env = {ENV: cluster.scheduler_address}
    r = CliRunner().invoke(main, ["ucm", "--images", "source/images.json", "--out", "cli/ucm", "--no-progress"],
                           env=env)
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, ["labels", "--index", "source", "--split", "split.json", "--ucm", "cli/ucm",
                                  "--out", "cli/labels", "--metrics", "cli/labels.json", "--no-progress"], env=env)
    assert r.exit_code == 0, r.output
    # tasks went through the scheduler (>= one per shard and stage, each several transitions)
    assert cluster.scheduler.transition_counter - before >= 2 * 8
    for stage in ("ucm", "labels"):
        assert tree_bytes(project / "cli" / stage) == tree_bytes(project / "ref" / stage)


def test_unreachable_or_missing_scheduler_is_a_clear_error(project, monkeypatch, tmp_path):
    import dask
    monkeypatch.chdir(project)
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        r = CliRunner().invoke(main, ["ucm", "--images", "source/images.json", "--out", str(tmp_path / "u"),
                                      "--no-progress"], env={ENV: "tcp://127.0.0.1:9"})
    assert r.exit_code == 2 and f"mixseg ucm: error: {ENV}: cannot connect" in r.output
    assert not (tmp_path / "u").exists()
    r = CliRunner().invoke(main, ["labels", "--index", "source", "--split", "split.json", "--ucm", "ref/ucm",
                                  "--out", str(tmp_path / "l"), "--metrics", str(tmp_path / "m.json"),
                                  "--no-progress"], env={ENV: str(tmp_path / "scheduler.json")})
    assert r.exit_code == 2 and "scheduler.json: Dask scheduler file" in r.output
    assert not (tmp_path / "l").exists()
