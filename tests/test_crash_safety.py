"""Crash safety (SPEC section 2): a stage killed at any moment leaves its output folder either
the complete old version or the complete new one (never a half-written or half-deleted
folder, never a temporary a reader would take for a shard), and the rerun writes exactly the
bytes of an uninterrupted run.

The end-to-end test starts `mixseg ucm` and `mixseg labels` as subprocesses, watches the
output folder while they run, sends SIGKILL at seeded random moments of the write and reruns.
The unit tests kill a forked writer at each step of `atomic_path`."""

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from pipeline.core import fileio
from pipeline.cli import main
from pipeline.core.fileio import atomic_path, remove_stale_temps
from pipeline.core.shards import ShardReader, UcmReader
from pipeline.sources.synthetic import generate
from pipeline.core.verify import verify

SEED = 20240611
KILLS = 2  # per stage


# ----------------------------------------------------------------------------- atomic_path, step by step

def _write_folder(path, files):
    with atomic_path(path) as tmp:
        tmp.mkdir()
        for name, data in files.items():
            (tmp / name).write_bytes(data)


def _snapshot(path):
    path = Path(path)
    return {p.name: p.read_bytes() for p in sorted(path.iterdir())} if path.exists() else None


def _die_in_child(fn):
    """Run ``fn`` in a forked child that may die (os._exit) half way; return its exit code."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover  (child)
        try:
            fn()
        finally:
            os._exit(0)
    return os.waitpid(pid, 0)[1] >> 8


OLD = {"a.h5": b"old a", "b.h5": b"old b", "c.h5": b"old c"}
NEW = {"a.h5": b"new a", "b.h5": b"new b"}


@pytest.mark.parametrize("step", ["before_rename", "after_exchange", "fallback_between_renames",
                                  "half_way_deleting_old"])
def test_a_writer_killed_at_any_step_leaves_old_new_or_nothing_and_is_cleaned_up(tmp_path, monkeypatch, step):
    out = tmp_path / "data" / "ucm"
    _write_folder(out, OLD)

    def killed_writer():
        if step == "before_rename":
            monkeypatch.setattr(fileio.os, "replace", lambda *a: os._exit(9))
            monkeypatch.setattr(fileio, "_exchange", lambda *a: os._exit(9))
        elif step == "after_exchange":
            real = fileio._exchange
            monkeypatch.setattr(fileio, "_exchange", lambda a, b: real(a, b) and os._exit(9))
        elif step == "fallback_between_renames":
            real = os.replace
            calls = []

            def replace_then_die(a, b):
                calls.append(a)
                real(a, b)
                if len(calls) == 1:
                    os._exit(9)
            monkeypatch.setattr(fileio, "_exchange", lambda *a: False)
            monkeypatch.setattr(fileio.os, "replace", replace_then_die)
        else:  # die after removing one file of the old folder
            monkeypatch.setattr(fileio.shutil, "rmtree", lambda p, **kw: (next(Path(p).iterdir()).unlink(),
                                                                            os._exit(9)))
        _write_folder(out, NEW)

    assert _die_in_child(killed_writer) == 9
    state = _snapshot(out)
    assert state in (OLD, NEW, None), state
    if step in ("before_rename", "after_exchange", "half_way_deleting_old"):
        assert state == (OLD if step == "before_rename" else NEW)  # the swap itself is atomic
    leftovers = [p.name for p in out.parent.iterdir() if p.name != "ucm"]
    assert leftovers and all(n.startswith(".ucm.") for n in leftovers)  # hidden, next to, not inside
    _write_folder(out, NEW)  # the rerun removes what the dead writer left
    assert _snapshot(out) == NEW
    assert [p.name for p in out.parent.iterdir()] == ["ucm"]


def test_temporaries_of_a_live_writer_are_not_touched(tmp_path):
    target = tmp_path / "x.json"
    live = tmp_path / f".x.json.tmp-{os.getpid()}-0123abcd"
    dead = tmp_path / ".x.json.tmp-999999999-0123abcd"
    legacy = tmp_path / ".x.json.tmp-0123abcd"
    other = tmp_path / ".y.json.tmp-999999999-0123abcd"
    for p in (live, dead, legacy, other):
        p.write_text("")
    assert sorted(remove_stale_temps(target)) == sorted([dead, legacy])
    assert live.exists() and other.exists()


def test_a_failed_file_write_keeps_the_old_file(tmp_path):
    p = tmp_path / "f.json"
    fileio.write_json(p, {"v": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(p) as tmp:
            tmp.write_text("half")
            raise RuntimeError
    assert fileio.read_json(p) == {"v": 1} and [x.name for x in tmp_path.iterdir()] == ["f.json"]


# ----------------------------------------------------------------------------- SIGKILL end to end

@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("crash")
    generate(root / "data/raw/synthetic", num_train=12, num_val=4, height=40, width=56, num_classes=4, seed=3,
             progress=False)
    params = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())
    params["source"]["workers"] = 1
    params["split"]["ratio"] = [1, 2, 1]
    params["ucm"].update(workers=1, shard_size=2)
    params["labels"].update(workers=1, shard_size=2, strategy="ucm")
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    old = yaml.safe_load(yaml.safe_dump(params))  # a different "previous" output of each stage
    old["ucm"]["scales"] = [1.0]
    old["labels"]["alpha"] = 0.3   # not the default (0.5)
    (root / "params_old.yaml").write_text(yaml.safe_dump(old))
    cwd = os.getcwd()
    os.chdir(root)
    try:
        for stage in ("source", "split"):
            args = [stage] + (["--no-progress"] if stage == "source" else [])
            assert CliRunner().invoke(main, args).exit_code == 0
    finally:
        os.chdir(cwd)
    return root


def _stage_cmd(stage, out, params="params.yaml"):
    return [sys.executable, "-m", "pipeline.cli", stage, "--no-progress", "--params", params, "--out", out]


def _consistent_snapshot(path: Path):
    """Names and bytes of the folder at ``path`` as one consistent state (None: absent)."""
    for _ in range(50):
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        except FileNotFoundError:
            return None
        try:
            names = sorted(os.listdir(fd))
            snap = {}
            for n in names:
                f = os.open(n, os.O_RDONLY, dir_fd=fd)
                with os.fdopen(f, "rb") as fh:
                    snap[n] = fh.read()
            same = os.fstat(fd).st_ino == os.stat(path).st_ino  # still the folder at `path`: not mid-delete
        except FileNotFoundError:
            same = False
        finally:
            os.close(fd)
        if same:
            return snap
    raise AssertionError(f"{path} kept changing under the reader")


def _run_watched(cmd, cwd, out: Path, allowed=None, kill_at=None):
    """Run ``cmd``; while it runs, check that ``out`` is always absent or one of ``allowed``
    (default: the state it ends in).  ``kill_at``: seconds after the stage's temporary folder
    appears to SIGKILL it (the whole process group).  Returns (seconds the temporary folder
    existed: the stage's writing time, return code)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    seen = {}
    prefix = f".{out.name}.tmp-"

    def watch():
        while proc.poll() is None:
            s = _consistent_snapshot(out)
            if s is not None:
                seen.setdefault(tuple(sorted(s.items())), s)
            time.sleep(0.002)

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    t_tmp = t_gone = None
    while proc.poll() is None:
        tmp_there = any(p.name.startswith(prefix) for p in out.parent.iterdir())
        if t_tmp is None and tmp_there:
            t_tmp = time.monotonic()
        if t_tmp is not None and t_gone is None and not tmp_there:
            t_gone = time.monotonic()  # renamed into place (and the old version removed)
        if t_tmp is not None and kill_at is not None and time.monotonic() - t_tmp >= kill_at:
            os.killpg(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.001)
    rc = proc.wait()
    t.join()
    end = t_gone or time.monotonic()
    err = proc.stderr.read().decode()
    proc.stderr.close()
    if kill_at is None:
        assert rc == 0, err
    allowed = [_snapshot(out)] if allowed is None else allowed
    bad = [s for s in seen.values() if s not in allowed]
    assert not bad, f"a reader saw {out} neither old nor new: {sorted(bad[0])}"
    return (end - t_tmp) if t_tmp is not None else 0.0, rc


def _item_count(stage, out):
    """What a reader of ``out`` sees: every shard opens and every id is listed (else it raises)."""
    r = UcmReader(out) if stage == "ucm" else ShardReader(out)
    n = len(r.ids)
    for i in r.ids:
        r[i] if stage == "ucm" else r.image_bytes(i)
    r.close()
    return n


def _in_process(project, stage, params="params.yaml"):
    """Run a stage in this process."""
    cwd = os.getcwd()
    os.chdir(project)
    try:
        result = CliRunner().invoke(main, [stage, "--no-progress", "--params", params])
    finally:
        os.chdir(cwd)
    assert result.exit_code == 0, result.output


@pytest.mark.slow
def test_sigkill_at_random_moments_then_rerun_gives_the_uninterrupted_bytes(project):
    rng = np.random.default_rng(SEED)
    kills = 0
    for stage in ("ucm", "labels"):
        out = project / "data" / stage
        ref = project / "ref" / stage
        # the uninterrupted output, and a previous output (other params) to be replaced
        work, _ = _run_watched(_stage_cmd(stage, f"ref/{stage}"), project, ref)
        new = _snapshot(ref)
        n_new = _item_count(stage, ref)
        assert verify([ref]).problems == [] and ("skipped.json" in new or stage == "labels")
        _in_process(project, stage, "params_old.yaml")
        old = _snapshot(out)
        saved_old = project / "saved" / stage
        shutil.copytree(out, saved_old)
        n_old = _item_count(stage, out)
        assert old != new and n_old == n_new

        for kill_at in rng.uniform(0.0, 1.3 * work, size=KILLS):
            _, rc = _run_watched(_stage_cmd(stage, f"data/{stage}"), project, out, allowed=[old, new],
                                 kill_at=kill_at)
            kills += rc == -signal.SIGKILL
            state = _snapshot(out)
            assert state in (old, new), f"after SIGKILL at {kill_at:.2f}s {out} is neither old nor new"
            assert _item_count(stage, out) == n_new
            hidden = [p.name for p in out.parent.iterdir() if p.name.startswith(f".{stage}.")]
            assert all(".tmp-" in h or ".old-" in h for h in hidden), hidden  # hidden siblings only
            _in_process(project, stage)  # the rerun after the crash
            assert _snapshot(out) == new, "the rerun did not reproduce the uninterrupted bytes"
            assert [p.name for p in out.parent.iterdir() if p.name.startswith(f".{stage}.")] == []
            shutil.rmtree(out)
            shutil.copytree(saved_old, out)
        _in_process(project, stage)  # leave the new output: the labels stage reads data/ucm
    assert kills >= 2, f"only {kills} kills landed while the stages ran"
