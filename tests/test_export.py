"""``mixseg export``: model.pt -> model.safetensors + model.onnx, checked with onnxruntime.

Nothing is trained: a freshly initialised network is saved the way training saves it
(``train.checkpoint.export_model``), exported, and the ONNX graph is run with onnxruntime on
CPU at sizes other than the traced one (dynamic batch / height / width).
"""

import json
import sys

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from pipeline.core.errors import InputError
from train.checkpoint import export_model, load_model
from train.cli import export_cmd
from train.export import OPSET, TRACE_SHAPE, export_model_files
from train.networks import build_model

onnx = pytest.importorskip("onnx")
onnxruntime = pytest.importorskip("onnxruntime")
safetensors_torch = pytest.importorskip("safetensors.torch")

CLASSES = ["background", "cat", "dog"]


def save_model_pt(path, arch):
    """A model.pt of an untrained ``arch`` for :data:`CLASSES`, as training writes it."""
    torch.manual_seed(0)
    model = build_model(arch, len(CLASSES))
    with torch.no_grad():  # logits of order 1 (the classifiers start near 0) and BatchNorm statistics of its own
        for name, p in model.named_parameters():
            if "classifier" in name and name.endswith("weight"):
                p.normal_(0, 0.5)
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
    export_model(path, model, {"arch": arch, "variant": "p", "classes": CLASSES, "num_classes": len(CLASSES),
                               "images": 1})
    return path


@pytest.mark.parametrize("arch", ["small", "efficientnet_lite0"])
def test_export_round_trips_through_onnxruntime_and_safetensors(tmp_path, arch):
    model_pt = save_model_pt(tmp_path / "models/p/model.pt", arch)
    lines = []
    paths = export_model_files(model_pt, tmp_path / "out", log=lines.append)
    assert paths == [tmp_path / "out/model.safetensors", tmp_path / "out/model.onnx"]
    assert len(lines) == 1 and "onnxruntime matches torch" in lines[0]
    model, meta = load_model(model_pt)

    proto = onnx.load(str(paths[1]))
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= OPSET
    dims = [[d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
            for v in (proto.graph.input[0], proto.graph.output[0])]
    assert dims == [["batch", 3, "height", "width"], ["batch", len(CLASSES), "height", "width"]]
    props = {p.key: p.value for p in proto.metadata_props}
    assert props["arch"] == arch and json.loads(props["classes"]) == CLASSES
    session = onnxruntime.InferenceSession(str(paths[1]), providers=["CPUExecutionProvider"])
    for shape in [(2, 3, 41, 57), (1, 3, 64, 48), TRACE_SHAPE]:
        x = torch.randn(shape, generator=torch.Generator().manual_seed(2))
        with torch.no_grad():
            want = model(x).numpy()
        got = session.run(["logits"], {"image": x.numpy()})[0]
        assert got.shape == (shape[0], len(CLASSES), *shape[2:])
        assert np.abs(got - want).max() <= 1e-4, shape
        assert np.abs(want).max() > 0.5  # a real comparison, not of near-zeros

    state = safetensors_torch.load_file(str(paths[0]))
    own = model.state_dict()
    assert state.keys() == own.keys() and all(torch.equal(state[k], own[k]) for k in own)
    from safetensors import safe_open
    with safe_open(str(paths[0]), "pt") as f:
        header = f.metadata()
    assert header["arch"] == arch and header["num_classes"] == "3" and json.loads(header["mean"])[0] == 0.485
    again = build_model(header["arch"], int(header["num_classes"])).eval()
    again.load_state_dict(state, strict=True)
    x = torch.randn(1, 3, 33, 47)
    with torch.no_grad():
        assert torch.equal(again(x), model(x))


def test_command_writes_beside_the_model_by_default(tmp_path):
    model_pt = save_model_pt(tmp_path / "model.pt", "small")
    result = CliRunner().invoke(export_cmd, ["--model", str(model_pt)])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [f"wrote {tmp_path / 'model.safetensors'}", f"wrote {tmp_path / 'model.onnx'}"]
    assert "onnxruntime matches torch" in result.stderr


@pytest.mark.parametrize("package", ["onnx", "onnxruntime", "safetensors"])
def test_a_missing_package_is_one_line(tmp_path, monkeypatch, package):
    model_pt = save_model_pt(tmp_path / "model.pt", "small")
    monkeypatch.setitem(sys.modules, package, None)  # import fails as if not installed
    with pytest.raises(InputError) as e:
        export_model_files(model_pt)
    assert str(e.value) == (f'{package}: not installed (mixseg export needs onnx, onnxruntime and safetensors): '
                            f'pip install -e ".[export]"')
    result = CliRunner().invoke(export_cmd, ["--model", str(model_pt)])
    assert result.exit_code == 2 and result.stderr == f"mixseg export: error: {e.value}\n"
    assert not (tmp_path / "model.onnx").exists() and not (tmp_path / "model.safetensors").exists()


def test_a_missing_model_is_one_line(tmp_path):
    result = CliRunner().invoke(export_cmd, ["--model", str(tmp_path / "absent/model.pt")])
    assert result.exit_code == 2
    assert result.stderr == (f"mixseg export: error: {tmp_path / 'absent/model.pt'}: model file not found "
                             f"(train the variant first)\n")
