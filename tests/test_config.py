"""The typed config: defaults equal params.yaml, every key checked, one-line errors."""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from click.testing import CliRunner

from pipeline.cli import main
from pipeline.core.config import (ARCHS, STRATEGIES, VARIANTS, Config, LabelsConfig, TrainConfig, config_from_dict,
                                  load_config, record)
from pipeline.core.errors import InputError
from pipeline.labels.inspect import shard_strategy

ROOT = Path(__file__).resolve().parent.parent
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())


def leaves(doc, prefix=()):
    """(path, value) of every key of a nested mapping, mappings included."""
    for k, v in doc.items():
        yield prefix + (k,), v
        if isinstance(v, dict):
            yield from leaves(v, prefix + (k,))


def with_value(path, value):
    doc = yaml.safe_load(yaml.safe_dump(PARAMS))
    d = doc
    for k in path[:-1]:
        d = d[k]
    d[path[-1]] = value
    return doc


def field_type(path):
    cls = Config
    for k in path[:-1]:
        cls = typing.get_type_hints(cls)[k]
        cls = next((a for a in typing.get_args(cls) if dataclasses.is_dataclass(a)), cls)
    return typing.get_type_hints(cls)[path[-1]]


def accepts_any_string(tp) -> bool:
    args = typing.get_args(tp) if typing.get_origin(tp) in (typing.Union, types.UnionType) else (tp,)
    return str in args


def test_defaults_are_the_values_params_yaml_ships_with():
    assert record(load_config(ROOT / "params.yaml")) == record(Config())
    assert record(config_from_dict({})) == record(Config())  # a missing section takes its defaults


@pytest.mark.parametrize("path", [p for p, _ in leaves(PARAMS)], ids=lambda p: ".".join(p))
def test_every_key_refuses_a_wrong_type(path):
    tp = field_type(path)
    value = PARAMS
    for k in path:
        value = value[k]
    if isinstance(value, dict):
        bad = 5
    elif accepts_any_string(tp):
        bad = ["a", "list"]
    else:
        bad = "high"
    key = ".".join(path)
    with pytest.raises(InputError, match=rf"^params.yaml: {key.replace('.', '[.]')}: expected ") as e:
        config_from_dict(with_value(path, bad))
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("path", [p for p, _ in leaves(PARAMS)], ids=lambda p: ".".join(p))
def test_every_key_refuses_a_misspelling(path):
    name = path[-1]
    typo = name[:-2] + name[-1] + name[-2] if len(name) > 2 else name + "x"  # swap the last two letters
    doc = with_value(path, None)
    d = doc
    for k in path[:-1]:
        d = d[k]
    d[typo] = d.pop(name)
    key = ".".join(path[:-1] + (typo,))
    with pytest.raises(InputError, match=rf"^params.yaml: {key.replace('.', '[.]')}: unknown key "
                                         rf"\(did you mean {name}\?\)$"):
        config_from_dict(doc)


@pytest.mark.parametrize("section, key, value, message", [
    ("labels", "alpha", "high", "labels.alpha: expected a number in (0, 1], got 'high'"),
    ("labels", "alpha", 0, "labels.alpha: expected a number in (0, 1], got 0"),
    ("labels", "thresholds", [0.5, 0.25], "labels.thresholds: must increase within (0, 1], got [0.5, 0.25]"),
    ("labels", "strategy", "ucm_t2", "labels.strategy: must increase within (0, 1], got [2.0]"),
    ("split", "ratio", "1:5:10", "split.ratio: expected a list of 3 numbers each >= 0, got '1:5:10'"),
    ("split", "ratio", [0, 0, 0], "split.ratio: must not be all zero"),
    ("train", "epochs", "two", "train.epochs: expected a number > 0, got 'two'"),
    ("train", "batch_size", 0, "train.batch_size: expected an integer >= 1, got 0"),
    ("train", "arch", "resnet9000", "train.arch: expected one of small, fcn32s"),
    ("train", "arch", "fcn8", "(did you mean fcn8s?)"),
    ("train", "variants", ["p", "q"], "train.variants: expected one of p, p+i, p+b, p+b+i, ub, got 'q'"),
    ("train", "flip", "yes", "train.flip: expected true or false, got 'yes'"),
    ("train", "pixel_share", 1.0, "train.pixel_share: expected a number in [0, 1), got 1.0"),
    ("ucm", "scales", [], "ucm.scales: expected a non-empty list of numbers each > 0, got []"),
    ("ucm", "method", "external", "ucm.external_dir: must name a folder"),
    ("quality", "strategies", ["ucm", "magic"], "quality.strategies[1]: unknown box strategy 'magic'"),
])
def test_bad_values_are_named_in_one_line(section, key, value, message):
    doc = with_value((section, key), value)
    with pytest.raises(InputError) as e:
        config_from_dict(doc)
    assert str(e.value).startswith("params.yaml: ") and message in str(e.value), str(e.value)


def test_a_pixel_share_needs_mixed_batches():
    doc = with_value(("train", "pixel_share"), 0.25)
    doc["train"]["sampling"] = "subset"
    with pytest.raises(InputError) as e:
        config_from_dict(doc)
    assert str(e.value) == ("params.yaml: train.pixel_share: needs sampling: mixed (each batch from one subset "
                            "cannot hold a share of another), not subset")


def test_a_misspelt_section_is_refused():
    doc = dict(PARAMS)
    doc["lables"] = doc.pop("labels")
    with pytest.raises(InputError, match=r"^params.yaml: lables: unknown key \(did you mean labels\?\)$"):
        config_from_dict(doc)


def test_commands_print_one_line_and_exit_2(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    Path("params.yaml").write_text(yaml.safe_dump(with_value(("labels", "alpah"), 0.3)))
    for args in (["split"], ["ucm"], ["labels"], ["train", "--variant", "p"], ["report"]):
        result = runner.invoke(main, args)
        assert result.exit_code == 2, result.output
        assert result.output == f"mixseg {args[0]}: error: params.yaml: labels.alpah: unknown key " \
                                "(did you mean alpha?)\n"
    result = runner.invoke(main, ["train", "--variant", "q"])
    assert result.exit_code == 2 and "'q' is not one of 'p', 'p+i', 'p+b', 'p+b+i', 'ub'" in result.output


def test_paper_mode_is_resolved_in_the_config():
    t = config_from_dict({"train": {"mode": "paper", "batch_size": 8, "crop": [96, 128]}}).train
    assert (t.batch_size, t.crop, t.sampling, t.lr, t.schedule, t.warmup, t.reduction) == \
        (1, None, "subset", 1e-4, "constant", 0, "paper")
    t = config_from_dict({"train": {"mode": "paper", "lr": 0.01}}).train
    assert t.lr == 0.01
    assert TrainConfig().reduction == "mean"


def test_strategy_suffixes_are_resolved_once():
    labels = LabelsConfig(rule="enclosed", alpha=0.25)
    s = labels.box_strategy("ucm_paper_a0.3")
    assert (s.base, s.rule, s.alpha, s.thresholds, s.code, s.needs) == ("ucm", "paper", 0.3, (0.25, 0.5, 0.75), 0,
                                                                        "ucm")
    assert labels.box_strategy("grabcut").needs == "image" and labels.box_strategy("raw_box").needs is None
    assert LabelsConfig(strategy="hard_t0.5").box.thresholds == (0.5,)


def test_inspect_draws_the_rule_the_shard_was_labelled_with():
    # Fig. 4 used to read labels.rule and ignore the strategy's suffix: ucm_paper_a0.3 drew the enclosed rule
    params = record(LabelsConfig(strategy="ucm_paper_a0.3", rule="enclosed"))
    reader = SimpleNamespace(params=params, _shards=SimpleNamespace(paths=["labels-train-00000.h5"]))
    assert shard_strategy(reader).rule == "paper"
    reader.params = {**params, "strategy": "ucm"}
    assert shard_strategy(reader).rule == "enclosed"


def test_names_match_the_code_that_uses_them():
    from pipeline.labels.strategies import REGISTRY
    from train.data import VARIANTS as data_variants
    from train.networks import ARCHS as network_archs
    assert tuple(REGISTRY) == STRATEGIES
    assert tuple(data_variants) == VARIANTS
    assert tuple(network_archs) == ARCHS  # tests/test_networks.py builds every one of them


def test_dvc_yaml_params_exist_in_the_config():
    dvc = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    known = {".".join(p) for p, _ in leaves(record(Config()))}
    for name, stage in dvc["stages"].items():
        body = stage.get("do", stage)
        for p in body.get("params", []):
            assert p in known, f"dvc.yaml stage {name}: params key {p} is not in the config"
