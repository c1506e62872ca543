"""Progress from the first second: per-image ticks from worker processes, a warm-up note."""

from __future__ import annotations

import functools
from pathlib import Path

from pipeline.core.errors import ErrorPolicy
from pipeline.core.parallel import each_item, run_sharded


def _task(ids, path, policy=None, tick=None):
    done = each_item(ids, lambda i: i.upper(), policy, tick)
    Path(path).write_text(",".join(v for _, v in done))
    return len(done)


def test_per_image_progress_from_workers_and_no_trace_in_the_output(tmp_path, capsys):
    shards = [[f"a{i}" for i in range(k, k + 5)] for k in range(0, 20, 5)]
    out = tmp_path / "out"
    res = run_sharded(functools.partial(_task), shards, out, lambda k: f"s{k}.txt", 2, "demo", progress=True,
                      policy=ErrorPolicy("fail"))
    assert res == [5, 5, 5, 5]
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "s0.txt", "s1.txt", "s2.txt", "s3.txt", "skipped.json"]
    err = capsys.readouterr().err
    assert "20/20" in err and "demo" in err


def test_each_item_ticks_once_per_id_and_skips_bad_ones():
    from pipeline.core.errors import InputError
    ticks = []

    def make(i):
        if i == "b":
            raise InputError(f"{i}.jpg", "unreadable")
        return i * 2
    policy = ErrorPolicy("skip")
    assert each_item(["a", "b", "c"], make, policy, lambda: ticks.append(1)) == [("a", "aa"), ("c", "cc")]
    assert len(ticks) == 3 and policy.skipped == [{"id": "b", "path": "b.jpg", "reason": "unreadable"}]
