"""The report says whether a run of the default settings is healthy (reference runs over seeds)."""

from __future__ import annotations

import json
from pathlib import Path

from pipeline.core.config import Config, config_from_dict
from train.report import reference_check

REPO = Path(__file__).resolve().parents[1]


def test_the_default_run_is_checked_against_the_committed_reference():
    ref = json.loads((REPO / "report/reference.json").read_text())
    mean_ub = sum(r["mIU"] for r in ref["runs"]["ub"].values()) / len(ref["runs"]["ub"])
    results = {"ub": {"mIU": mean_ub + 1}, "p+b+i": {"mIU": 10.0}}
    text = reference_check(results, REPO / "report/reference.json", Config())
    rows = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| ")}
    assert rows["ub"].rstrip().endswith("| ok |")
    assert "outside: check this run" in rows["p+b+i"]


def test_other_settings_get_no_verdict(tmp_path):
    cfg = config_from_dict({"labels": {"alpha": 0.3}, "train": {"threads": 1, "seed": 7}})
    text = reference_check({"ub": {"mIU": 90.0}}, REPO / "report/reference.json", cfg)
    assert text.startswith("No reference for these settings") and "labels.alpha" in text
    assert "train.threads" not in text and "train.seed" not in text  # run knobs and the seed never matter
    assert reference_check({}, tmp_path / "none.json", cfg).startswith("No reference runs")


def test_a_broken_reference_file_is_one_line(tmp_path):
    import pytest
    from pipeline.core.errors import InputError
    bad = tmp_path / "reference.json"
    for text in ("{not json", '{"params": {}}'):
        bad.write_text(text)
        with pytest.raises(InputError, match="not a reference file of mixseg report"):
            reference_check({"ub": {"mIU": 90.0}}, bad, Config())


def test_a_missing_curve_is_named_before_anything_is_written(tmp_path):
    import pytest
    from pipeline.core.errors import InputError
    from train.report import read_curves
    tsv = tmp_path / "p" / "live" / "plots" / "metrics" / "train" / "loss.tsv"
    tsv.parent.mkdir(parents=True)
    tsv.write_text("step\tloss\n10\t1.5\n20\t0.5\n")
    assert read_curves(tmp_path, ["p"]) == {"p": ([10, 20], [1.5, 0.5])}
    with pytest.raises(InputError, match=r"ub/live/plots/metrics/train/loss.tsv: no training curve for ub "
                                         r"\(make it with dvc repro train@ub\)"):
        read_curves(tmp_path, ["p", "ub"])
