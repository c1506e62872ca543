"""A `dvc repro` killed while DVC writes dvc.lock or holds its locks: the documented recoveries.

(DVC's own state, not the stages': the data itself stays intact -- tests/test_crash_safety.py.)
"""

from __future__ import annotations

import json

import pytest

from test_dvc_pipeline import make_project, run, tiny_params

pytestmark = pytest.mark.slow


def test_a_corrupt_dvc_lock_and_its_one_command_recovery(tmp_path):
    proj = make_project(tmp_path, tiny_params())
    run("dvc repro split", proj)
    split = (proj / "data/split.json").read_bytes()
    lock = (proj / "dvc.lock").read_text()
    # SIGKILL while DVC rewrote dvc.lock: the last stage's entry cut off after its name
    (proj / "dvc.lock").write_text(lock[:lock.index("  split:")] + "  split:\n")
    broken = run("dvc repro split", proj, check=False)
    assert broken.returncode != 0 and "dvc.lock" in broken.stdout + broken.stderr
    run("rm dvc.lock", proj)  # README, Crash safety: or `git checkout dvc.lock` when it is committed
    again = run("dvc repro split", proj).stdout
    assert "'split' is cached - skipping run" in again and "'source' is cached - skipping run" in again
    assert (proj / "data/split.json").read_bytes() == split
    assert run("dvc status split", proj).stdout.strip().endswith("Data and pipelines are up to date.")


def test_a_stale_rwlock_of_a_killed_dvc_is_cleared(tmp_path):
    proj = make_project(tmp_path, tiny_params())
    run("dvc repro source", proj)
    rw = proj / ".dvc/tmp/rwlock"
    dead = 2 ** 22 + 4321  # above the default pid_max: no such process
    rw.write_text(json.dumps({"write": {str(proj / "data/source"): {"pid": dead, "cmd": "dvc repro"}}, "read": {}}))
    out = run("dvc repro source", proj)
    assert "had been killed. Auto removed it from the lock file" in out.stdout + out.stderr
    assert json.loads(rw.read_text()) == {}
