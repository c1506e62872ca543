"""What one shard task carries to a worker does not grow with the index (issue #13 item 6).

The ucm and labels stages used to bind the whole index into every task
(``functools.partial(_ucm_shard, records=records, ...)``): ~19 MB (ucm) and ~110 MB
(labels) per task at COCO size, through the Dask scheduler ~590 times.  Now
``run_sharded`` gets the index as ``by_id`` and each task carries its own shard's
records only.  These tests build the tasks with the stages' real code
(``run_ucm`` / ``run_labels`` down to ``pipeline.core.parallel.shard_calls``, the
generator of the calls joblib pickles) on generated indexes of 1k and 20k images
(the image files need not exist: nothing is run) and pickle them as joblib does.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

cloudpickle = pytest.importorskip("cloudpickle")  # what loky and distributed pickle tasks with

import sys

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from fake_index import fake_index  # noqa: E402

from pipeline.core import parallel  # noqa: E402
from pipeline.core.config import LabelsConfig, UcmConfig
from pipeline.core.parallel import run_sharded, shard_calls, shard_slice
from pipeline.labels import stage as labels_stage
from pipeline.ucm import stage as ucm_stage

SHARD = 100  # 1k images -> 10 shards, 20k -> 200: the same shard size (MIN_SHARDS does not bite)


def task_sizes(monkeypatch, folder: Path, first: int = 5) -> dict:
    """Pickled bytes of the first ``first`` calls each stage hands to joblib (largest of them),
    and the pickled size of the whole index the old tasks carried, built by the real stages."""
    sizes = {}

    def capture(task, shards, out_dir, name_of, workers, desc, progress=True, policy=None, by_id=None):
        calls = list(itertools.islice(shard_calls(task, shards, out_dir, name_of, "fail", None, by_id), first))
        sizes[desc] = max(len(cloudpickle.dumps(c)) for c in calls)
        sizes[desc + "_index"] = len(cloudpickle.dumps(by_id))
        sizes[desc + "_shards"] = len(shards)
        return [len(s) if desc == "ucm" else {"pixel": 0, "box": 0, "image": 0} for s in shards]

    monkeypatch.setattr(ucm_stage, "run_sharded", capture)
    monkeypatch.setattr(labels_stage, "run_sharded", capture)
    ucm_stage.run_ucm(folder / "images.json", folder / "out_ucm", UcmConfig(shard_size=SHARD), progress=False)
    labels_stage.run_labels(folder / "images.json", folder / "annotations.json", folder / "split.json",
                            folder / "ucm", folder / "out_labels",
                            LabelsConfig(strategy="ucm", rule="enclosed", shard_size=SHARD), progress=False)
    return sizes


def test_per_task_payload_does_not_grow_with_the_index(monkeypatch, tmp_path):
    small = task_sizes(monkeypatch, fake_index(tmp_path / "small", 1_000))
    large = task_sizes(monkeypatch, fake_index(tmp_path / "large", 20_000))
    assert large["ucm_shards"] > 10 * small["ucm_shards"]  # the shard size is the same, the count is not
    for stage in ("ucm", "labels"):
        # same shard size, 20x the index: the task is within a small constant of the small index's
        assert abs(large[stage] - small[stage]) < 2_048, (stage, small[stage], large[stage])
        assert large[stage] < 1_000_000
        # and the index (what every task carried before) is not in it
        assert large[stage] * 50 < large[stage + "_index"], (stage, large[stage], large[stage + "_index"])


def test_shard_slice_gives_each_task_its_own_records_only():
    by_id = {"records": {f"i{k}": {"id": f"i{k}", "n": k} for k in range(10)}, "kinds": {f"i{k}": "box" for k in range(10)}}
    assert shard_slice(by_id, ["i3", "i1"]) == {"records": {"i3": {"id": "i3", "n": 3}, "i1": {"id": "i1", "n": 1}},
                                                "kinds": {"i3": "box", "i1": "box"}}
    assert shard_slice(None, ["i1"]) == {}
    with pytest.raises(KeyError):
        shard_slice(by_id, ["nope"])


def _task(ids, path, records, kinds, policy=None, tick=None):
    Path(path).write_text(";".join(f"{i}={records[i]}:{kinds[i]}" for i in ids) + f"|{sorted(records)}")
    return len(ids)


@pytest.mark.parametrize("workers", [1, 2])
def test_run_sharded_passes_the_slices_as_keyword_arguments(tmp_path, workers):
    ids = [f"i{k:02d}" for k in range(12)]
    shards = [ids[k:k + 4] for k in range(0, 12, 4)]
    by_id = {"records": {i: i.upper() for i in ids}, "kinds": {i: "box" for i in ids}}
    out = tmp_path / f"out{workers}"
    assert run_sharded(_task, shards, out, lambda k: f"s{k}.txt", workers, "demo", progress=False,
                       by_id=by_id) == [4, 4, 4]
    for k, part in enumerate(shards):
        assert (out / f"s{k}.txt").read_text() == (";".join(f"{i}={i.upper()}:box" for i in part) + f"|{sorted(part)}")


def test_shard_calls_is_what_run_sharded_sends(monkeypatch, tmp_path):
    """run_sharded builds its joblib calls with shard_calls (so the size test above measures them)."""
    seen = []
    real = parallel.shard_calls

    def spy(*args, **kwargs):
        for call in real(*args, **kwargs):
            seen.append(call)
            yield call
    monkeypatch.setattr(parallel, "shard_calls", spy)
    by_id = {"records": {"a": 1, "b": 2}, "kinds": {"a": "x", "b": "y"}}
    run_sharded(_task, [["a"], ["b"]], tmp_path / "o", lambda k: f"s{k}", 1, "demo", progress=False, by_id=by_id)
    assert len(seen) == 2 and seen[1][1][6] == {"records": {"b": 2}, "kinds": {"b": "y"}}
