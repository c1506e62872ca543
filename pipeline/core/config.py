"""Reading ``params.yaml``: every knob of every stage lives there."""

from __future__ import annotations

from pathlib import Path

import yaml

from pipeline.core.errors import InputError


def load_params(path="params.yaml") -> dict:
    path = Path(path)
    try:
        with open(path) as f:
            doc = yaml.safe_load(f) or {}
    except FileNotFoundError:
        raise InputError(path, "params file not found") from None
    except yaml.YAMLError as e:
        raise InputError(path, f"not valid YAML ({e})") from None
    if not isinstance(doc, dict):
        raise InputError(path, "params file must be a mapping of stage sections")
    return doc


def section(params: dict, name: str, path="params.yaml") -> dict:
    s = params.get(name)
    if s is None:
        raise InputError(path, f"missing section {name!r}")
    if not isinstance(s, dict):
        raise InputError(path, f"section {name!r} must be a mapping")
    return s
