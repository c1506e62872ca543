"""``mixseg export``: a trained ``model.pt`` as ``model.safetensors`` and ``model.onnx``.

``model.safetensors``
    The network's state dict (the keys of ``model.pt``'s ``model``), with the model's
    ``meta`` in the header's metadata (string values): ``arch``, ``num_classes``,
    ``classes`` (JSON list), ``mean``/``std`` (JSON, of RGB in 0..1), ``input``, ``output``,
    ``mixseg``. ``build_model(arch, num_classes).load_state_dict(load_file(path))`` gives
    the network back.
``model.onnx``
    The network in eval mode, opset :data:`OPSET`; input ``image`` (N, 3, H, W) float32,
    RGB normalised with the ImageNet mean/std of ``train.data`` (what ``mixseg predict``
    feeds); output ``logits`` (N, num_classes, H, W). Batch, height and width are dynamic
    axes. The same metadata as above is in ``metadata_props``. After writing, onnxruntime
    runs the file on a batch of another size than the traced one and the result must match
    torch's (:func:`check_onnx`).

Both files are written atomically. torch, onnx, onnxruntime and safetensors are imported
only when an export runs; a missing onnx, onnxruntime or safetensors is a one-line
:class:`InputError` naming ``pip install -e ".[export]"``. The exporter is torch's TorchScript-based one
(``dynamo=False``): it needs no ``onnxscript`` and keeps the shape arithmetic of the
networks (crops, "SAME" padding, resizes to the input size) symbolic.
"""

from __future__ import annotations

import importlib
import io
import json
import warnings
from pathlib import Path

from pipeline.core.errors import InputError

OPSET = 17
EXPORT_PACKAGES = ("safetensors", "onnx", "onnxruntime")
#: (N, C, H, W) traced, and the other size the exported graph is checked on.
TRACE_SHAPE, CHECK_SHAPE = (1, 3, 96, 128), (2, 3, 75, 101)


def _require_packages() -> None:
    """An InputError naming the first of :data:`EXPORT_PACKAGES` that cannot be imported."""
    for name in EXPORT_PACKAGES:
        try:
            importlib.import_module(name)
        except ImportError:
            raise InputError(name, 'not installed (mixseg export needs onnx, onnxruntime and safetensors): '
                                   'pip install -e ".[export]"') from None


def export_metadata(meta: dict) -> dict:
    """The string metadata written into both files, from a ``model.pt``'s ``meta``."""
    from pipeline import __version__

    from .data import MEAN, STD
    return {"mixseg": __version__, "arch": str(meta["arch"]), "num_classes": str(meta["num_classes"]),
            "classes": json.dumps(list(meta["classes"])), "mean": json.dumps(list(MEAN)), "std": json.dumps(list(STD)),
            "input": "image: (N, 3, H, W) float32 RGB, (rgb / 255 - mean) / std",
            "output": "logits: (N, num_classes, H, W) float32, classes in the order of 'classes'"}


def write_safetensors(model, path, metadata: dict) -> Path:
    """Write ``model``'s state dict to ``path`` (safetensors) atomically, with ``metadata``."""
    from safetensors.torch import save_file

    from pipeline.core.fileio import atomic_path
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata=metadata)
    return Path(path)


def write_onnx(model, path, metadata: dict) -> Path:
    """Trace ``model`` (eval mode, CPU) at :data:`TRACE_SHAPE` and write ONNX opset :data:`OPSET`
    with dynamic batch, height and width to ``path`` atomically."""
    import onnx
    import torch

    from pipeline.core.fileio import atomic_path
    x = torch.rand(TRACE_SHAPE, generator=torch.Generator().manual_seed(0))
    axes = {0: "batch", 2: "height", 3: "width"}
    buf = io.BytesIO()
    with warnings.catch_warnings():  # the TorchScript exporter's deprecation notice and tracer remarks
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(model.eval(), (x,), buf, dynamo=False, opset_version=OPSET, input_names=["image"],
                          output_names=["logits"], dynamic_axes={"image": axes, "logits": axes})
    proto = onnx.load_from_string(buf.getvalue())
    logits = proto.graph.output[0].type.tensor_type.shape.dim[1]
    logits.Clear()  # the exporter leaves it symbolic behind the final resize
    logits.dim_value = int(metadata["num_classes"])
    for key, value in metadata.items():
        proto.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(proto)
    with atomic_path(path) as tmp:
        onnx.save(proto, str(tmp))
    return Path(path)


def check_onnx(model, path, shape=CHECK_SHAPE) -> float:
    """Max abs difference between onnxruntime (CPU) on the ONNX file and torch on ``model``.

    Parameters
    ----------
    model : nn.Module
        The network the file was exported from (eval mode).
    path : str or os.PathLike
        Its ``model.onnx``.
    shape : tuple of int
        (N, 3, H, W) of the random input, best another size than the traced one.

    Raises
    ------
    RuntimeError
        The outputs differ in shape, or by more than ``1e-4 * (1 + max |logit|)``.
    """
    import numpy as np
    import onnxruntime
    import torch
    x = torch.rand(shape, generator=torch.Generator().manual_seed(1)) * 4 - 2
    with torch.no_grad():
        want = model.eval()(x).numpy()
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"image": x.numpy()})[0]
    if got.shape != want.shape:
        raise RuntimeError(f"{path}: onnxruntime gives logits of shape {got.shape} for {shape}, torch {want.shape}")
    diff = float(np.abs(got - want).max())
    if not diff <= 1e-4 * (1 + float(np.abs(want).max())):
        raise RuntimeError(f"{path}: onnxruntime's logits differ from torch's by {diff:.3g} (max abs) for {shape}")
    return diff


def export_model_files(model_path, out_dir=None, log=None) -> list[Path]:
    """Write ``model.safetensors`` and ``model.onnx`` of a trained ``model.pt``.

    Parameters
    ----------
    model_path : str or os.PathLike
        A ``model.pt`` written by training (``train.checkpoint.export_model``).
    out_dir : str or os.PathLike, optional
        Folder for the two files (made if absent); default: the folder of ``model_path``.
    log : callable, optional
        Called with one line: how closely onnxruntime reproduces torch.

    Returns
    -------
    list of Path
        ``[out_dir / "model.safetensors", out_dir / "model.onnx"]``.

    Raises
    ------
    InputError
        A package of :data:`EXPORT_PACKAGES` is missing, or ``model_path`` is not a usable
        model file (``train.checkpoint.load_model``).
    """
    _require_packages()
    from .checkpoint import load_model
    model, meta = load_model(model_path)
    out = Path(model_path).parent if out_dir is None else Path(out_dir)
    metadata = export_metadata(meta)
    paths = [write_safetensors(model, out / "model.safetensors", metadata),
             write_onnx(model, out / "model.onnx", metadata)]
    diff = check_onnx(model, paths[1])
    if log is not None:
        log(f"{paths[1]}: onnxruntime matches torch to {diff:.2g} (max abs) on {'x'.join(map(str, CHECK_SHAPE))}")
    return paths
