"""UCMs computed elsewhere (gPb-OWT-UCM, MCG, COB), in the BSR ``ucm2`` layout of
:mod:`pipeline.ucm.algorithm`: ``<id>.mat`` / ``.npy`` / ``.png`` files in one folder."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from pipeline.core.errors import InputError

EXTERNAL_SUFFIXES = (".mat", ".npy", ".png")


def external_path(folder: Path, image_id: str) -> Path:
    for suffix in EXTERNAL_SUFFIXES:
        p = folder / f"{image_id}{suffix}"
        if p.exists():
            return p
    raise InputError(folder / f"{image_id}.mat", f"no external UCM for image {image_id} "
                     f"(looked for {', '.join(EXTERNAL_SUFFIXES)})")


def _read_mat(path: Path) -> np.ndarray:
    import scipy.io

    try:
        data = scipy.io.loadmat(str(path))
        variables = {k: v for k, v in data.items() if not k.startswith("__")}
    except NotImplementedError:  # MATLAB v7.3 files are HDF5; h5py reads them transposed
        import h5py

        try:
            with h5py.File(path, "r") as f:
                variables = {k: np.asarray(f[k]).T for k in f.keys() if isinstance(f[k], h5py.Dataset)}
        except OSError as e:
            raise InputError(path, f"unreadable MATLAB v7.3 file ({e})") from None
    except Exception as e:  # scipy's MAT parser raises many types on corrupt files
        raise InputError(path, f"unreadable .mat file ({e})") from None
    if "ucm2" in variables:
        return np.asarray(variables["ucm2"])
    if "ucm" in variables:
        return np.asarray(variables["ucm"])
    raise InputError(path, f"no variable 'ucm2' (or 'ucm') in the .mat file; it has {sorted(variables)}")


def _read_png(path: Path) -> np.ndarray:
    arr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise InputError(path, "unreadable PNG")
    if arr.ndim == 3:
        if arr.shape[2] == 1 or all(np.array_equal(arr[..., 0], arr[..., c]) for c in range(1, min(arr.shape[2], 3))):
            arr = arr[..., 0]
        else:
            raise InputError(path, f"UCM PNG must be single-channel (grey), got {arr.shape[2]} different channels")
    return arr


def load_external_ucm2(path, height: int, width: int) -> np.ndarray:
    """Load a UCM computed elsewhere (gPb-OWT-UCM, MCG, COB) in the ucm2 layout.

    Parameters
    ----------
    path : str or Path
        ``.mat`` (variable ``ucm2``, as BSR and MCG save it, or ``ucm`` when it
        has the doubled shape; MATLAB v7.3 files are read with h5py), ``.npy`` or
        ``.png`` (8- or 16-bit grey).
    height, width : int
        Size H, W of the image the UCM belongs to.

    Returns
    -------
    ucm2 : (2H+1, 2W+1) float32 ndarray
        The stored values; integer data (PNG, or integer arrays in .mat/.npy) are
        divided by their dtype's maximum (255, 65535, ...).  Nothing else is rescaled.

    Raises
    ------
    InputError
        Naming ``path``: unreadable or unsupported file, wrong shape, NaN/inf,
        or values outside [0, 1].
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if not path.is_file():
        raise InputError(path, "UCM file not found")
    if suffix == ".mat":
        arr = _read_mat(path)
    elif suffix == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as e:
            raise InputError(path, f"unreadable .npy file ({e})") from None
    elif suffix == ".png":
        arr = _read_png(path)
    else:
        raise InputError(path, f"unsupported UCM format {suffix!r} (expected .mat, .npy or .png)")

    arr = np.asarray(arr)
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8)
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise InputError(path, f"UCM must hold numbers, got dtype {arr.dtype}")
    expected = (2 * int(height) + 1, 2 * int(width) + 1)
    if arr.shape != expected:
        shape = "x".join(str(s) for s in arr.shape)
        raise InputError(
            path,
            f"UCM has shape {shape}, expected (2H+1)x(2W+1)={expected[0]}x{expected[1]} "
            f"for a {height}x{width} image",
        )
    if np.issubdtype(arr.dtype, np.integer):
        info = np.iinfo(arr.dtype)
        out = arr.astype(np.float64) / float(info.max)
    else:
        out = arr.astype(np.float64)
        if not np.isfinite(out).all():
            raise InputError(path, "UCM contains NaN/inf values")
    lo, hi = float(out.min()), float(out.max())
    if lo < 0.0 or hi > 1.0:
        raise InputError(path, f"UCM values must lie in [0, 1] (after scaling), found [{lo:g}, {hi:g}]")
    return out.astype(np.float32)
