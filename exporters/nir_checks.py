"""Validation of a NIR file at the door, before and after ``nir.read`` (called by :func:`.nir_format.read_nir`).

Before reading (:func:`check_nir_file`), from the HDF5 structure alone: no links to other files, no
datasets stored outside the file, no dataset and no declared shape (``shape``, ``input_type``,
``output_type``) larger than the element limit, numbers and text only. Nothing is allocated for a
dataset before its declared size is checked, so a compressed billion-element weight is refused unread.

After reading (:func:`check_nir_graph`): every parameter finite, time constants and thresholds positive,
and the metadata slt-deploy reads typed and in range (:class:`GraphMetadata`, :class:`NodeMetadata`,
checked by the same type-driven validation as the settings). Keys other tools write are left alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Optional

import h5py
import nir
import numpy as np

from ..config import DataConfig, from_mapping
from ..errors import ConfigError, ExportError, SltError
from ..limits import check_elements, limits, short

RESET_MODES = ("zero", "subtract", "none", "hold")
SHAPE_KEYS = ("shape", "input_type", "output_type")
_NUMERIC_OR_TEXT = "biufSOU"  # bool, ints, floats, bytes, object (h5py strings), unicode


def _in_range(cond: bool, message: str) -> None:
    if not cond:
        raise ConfigError(message)


@dataclass(frozen=True)
class GraphMetadata:
    """What slt-deploy reads from a graph's metadata (written by ``slt-deploy export``)."""

    format: Optional[str] = None
    model: Optional[str] = None
    method: Optional[str] = None
    source: Optional[str] = None
    dataset: Optional[str] = None
    encoding: Optional[str] = None
    timesteps: Optional[int] = None
    seed: Optional[int] = None
    round: Optional[int] = None
    dt: Optional[float] = None
    sparsity: Optional[float] = None
    accuracy: Optional[float] = None

    def __post_init__(self):
        from ..data import DATASETS

        cap = limits().max_timesteps
        _in_range(self.timesteps is None or 1 <= self.timesteps <= cap,
                  f"timesteps={self.timesteps} must be in 1..{cap} (SLT_DEPLOY_MAX_TIMESTEPS)")
        _in_range(self.seed is None or 0 <= self.seed < 1 << 63, f"seed={self.seed} must be in 0..2**63-1")
        _in_range(self.round is None or self.round >= -1, f"round={self.round} must be >= -1")
        _in_range(self.dt is None or self.dt > 0, f"dt={self.dt} must be > 0 seconds")
        for name in ("sparsity", "accuracy"):
            value = getattr(self, name)
            _in_range(value is None or 0.0 <= value <= 1.0, f"{name}={value} must be a fraction in [0, 1]")
        encodings = DataConfig.__dataclass_fields__["encoding"].metadata["choices"]
        _in_range(self.encoding is None or self.encoding in encodings,
                  f"encoding={short(self.encoding)} is not one of: {', '.join(encodings)}")
        _in_range(self.dataset is None or self.dataset in DATASETS,
                  f"dataset={short(self.dataset)} is not one of: {', '.join(DATASETS)}")


@dataclass(frozen=True)
class NodeMetadata:
    """What slt-deploy reads from a node's metadata."""

    dt: Optional[float] = None
    reset: Optional[str] = None
    beta: Optional[float] = None
    density: Optional[float] = None
    mask_density: Optional[float] = None
    binary: Optional[bool] = None

    def __post_init__(self):
        _in_range(self.dt is None or self.dt > 0, f"dt={self.dt} must be > 0 seconds")
        _in_range(self.reset is None or self.reset in RESET_MODES,
                  f"reset={short(self.reset)} is not one of: {', '.join(RESET_MODES)}")
        _in_range(self.beta is None or 0.0 <= self.beta <= 1.0, f"beta={self.beta} must be in [0, 1]")
        for name in ("density", "mask_density"):
            value = getattr(self, name)
            _in_range(value is None or 0.0 <= value <= 1.0, f"{name}={value} must be a fraction in [0, 1]")


def _plain(value):
    """HDF5 metadata values as Python values (numpy scalars and 0-d arrays, bytes)."""
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value[()]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            pass  # left as bytes: refused as "not a valid str" if the key is one slt-deploy reads
    return value


def check_metadata(meta, schema, where: str):
    """The keys of ``meta`` that ``schema`` (a dataclass) knows, converted to their types and checked."""
    if meta is None:
        meta = {}
    if not isinstance(meta, dict):
        raise ExportError(f"{where}: metadata is a {type(meta).__name__}, not a mapping")
    known = {f.name for f in fields(schema)}
    try:
        return from_mapping(schema, {k: _plain(v) for k, v in meta.items() if k in known}, where, strict=True)
    except ConfigError as exc:
        raise ExportError(str(exc)) from None


def check_nir_file(path: Path) -> None:
    """The file's HDF5 structure, before ``nir.read`` allocates anything."""
    where = str(path)
    try:
        with h5py.File(path, "r") as f:
            total = _check_group(f, where, "")
    except SltError:
        raise
    except Exception as exc:  # h5py: OSError, RuntimeError, KeyError, ValueError for damaged structures
        text = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise ExportError(f"{path}: corrupt or truncated HDF5 file ({text})") from None
    check_elements(total, where, "the datasets of the file")


def _check_group(group: h5py.Group, where: str, prefix: str, depth: int = 0) -> int:
    if depth > 64:
        raise ExportError(f"{where}: groups nested more than 64 deep at {short(prefix)}")
    total = 0
    for name in group:
        path = f"{prefix}/{name}"
        link = group.get(name, getlink=True)
        if not isinstance(link, h5py.HardLink):  # soft or external link: may point anywhere, even other files
            raise ExportError(f"{where}: {short(path)} is a {type(link).__name__}; NIR files hold their data "
                              f"themselves")
        obj = group[name]
        if isinstance(obj, h5py.Group):
            total += _check_group(obj, where, path, depth + 1)
            continue
        if not isinstance(obj, h5py.Dataset):
            raise ExportError(f"{where}: {short(path)} is a {type(obj).__name__}, not a dataset or group")
        if obj.is_virtual or obj.external:
            raise ExportError(f"{where}: dataset {short(path)} is stored outside the file")
        if obj.dtype.kind not in _NUMERIC_OR_TEXT:
            raise ExportError(f"{where}: dataset {short(path)} has dtype {obj.dtype}, not numbers or text")
        size = 0 if obj.shape is None else math.prod(obj.shape)
        check_elements(size, where, f"dataset {short(path)}")
        total += size
        if name in SHAPE_KEYS or path.rsplit("/", 2)[-2:-1] in (["input_type"], ["output_type"]):
            _check_shape(obj, where, path)
    return total


def _check_shape(obj: h5py.Dataset, where: str, path: str) -> None:
    """A declared tensor shape: a few positive integers whose product is within the element limit."""
    if obj.shape is None or obj.ndim > 1 or (obj.ndim == 1 and obj.shape[0] > 8) or obj.dtype.kind not in "iu":
        raise ExportError(f"{where}: {short(path)} is not a tensor shape (up to 8 integers)")
    dims = np.atleast_1d(obj[()]).astype(np.int64)
    if (dims < 1).any():
        raise ExportError(f"{where}: {short(path)}={short(dims.tolist())} has a dimension < 1")
    check_elements(math.prod(int(d) for d in dims), where, f"{short(path)}={short(dims.tolist())}")


def check_nir_graph(graph, path: Path, prefix: str = "") -> None:
    """A graph ``nir.read`` built: finite parameters, positive time constants and thresholds, typed metadata."""
    where = str(path)
    if not prefix:
        check_metadata(graph.metadata, GraphMetadata, f"{where}: metadata")
    for name, node in graph.nodes.items():
        full = f"{prefix}.{name}" if prefix else name
        if isinstance(node, nir.NIRGraph):
            check_nir_graph(node, path, full)
            continue
        label = f"{where}: node {full!r} ({type(node).__name__})"
        check_metadata(getattr(node, "metadata", None), NodeMetadata, f"{label} metadata")
        for field, value in vars(node).items():
            if field in ("metadata", "input_type", "output_type"):
                continue
            arr = np.asarray(value) if isinstance(value, (np.ndarray, float, int)) else None
            if arr is None or arr.dtype.kind not in "biuf":
                continue
            if arr.dtype.kind == "f" and not bool(np.isfinite(arr).all()):
                raise ExportError(f"{label} has NaN or infinite values in {field!r}")
            if field in ("tau", "tau_mem", "tau_syn", "v_threshold") and not bool((arr > 0).all()):
                raise ExportError(f"{label}: {field} must be > 0 (found {short(float(arr.min()))})")
