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
from typing import Any, Optional

import h5py
import nir
import numpy as np

from ..config import DataConfig, from_mapping
from ..errors import ConfigError, ExportError, SltError
from ..limits import check_elements, limits, short

RESET_MODES = ("zero", "subtract", "none", "hold")
SHAPE_KEYS = ("shape", "input_type", "output_type")
_NUMERIC_OR_TEXT = "biufSOU"  # bool, ints, floats, bytes, object (h5py strings), unicode
_TEXT_KEYS = ("type", "edges", "padding", "format", "version")  # where NIR stores text outside metadata


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
    beta: Any = None              # one value, or one per neuron (a list)
    density: Optional[float] = None
    mask_density: Optional[float] = None
    binary: Optional[bool] = None

    def __post_init__(self):
        _in_range(self.dt is None or self.dt > 0, f"dt={self.dt} must be > 0 seconds")
        _in_range(self.reset is None or self.reset in RESET_MODES,
                  f"reset={short(self.reset)} is not one of: {', '.join(RESET_MODES)}")
        if self.beta is not None:
            try:
                beta = np.asarray(self.beta, dtype=np.float64)
            except (TypeError, ValueError):
                beta = np.asarray(np.nan)
            _in_range(bool(np.all((beta >= 0.0) & (beta <= 1.0))), f"beta={short(self.beta)} must be in [0, 1]")
        for name in ("density", "mask_density"):
            value = getattr(self, name)
            _in_range(value is None or 0.0 <= value <= 1.0, f"{name}={value} must be a fraction in [0, 1]")


def _plain(value):
    """HDF5 metadata values as Python values (numpy scalars and 0-d arrays, bytes)."""
    if isinstance(value, np.ndarray):
        value = value[()] if value.ndim == 0 else value.tolist()
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
            total = _check_group(f.id, where, "", limits().max_elements)
    except SltError:
        raise
    except Exception as exc:  # h5py: OSError, RuntimeError, KeyError, ValueError for damaged structures
        text = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise ExportError(f"{path}: corrupt or truncated HDF5 file ({text})") from None
    check_elements(total, where, "the datasets of the file")


_LINK_KIND = {h5py.h5l.TYPE_SOFT: "SoftLink", h5py.h5l.TYPE_EXTERNAL: "ExternalLink"}


def _check_group(gid, where: str, prefix: str, cap: int, depth: int = 0) -> int:
    """Walk with h5py's low-level ids: the high-level objects cost more than nir.read itself."""
    if depth > 64:
        raise ExportError(f"{where}: groups nested more than 64 deep at {short(prefix)}")
    links = []
    gid.links.iterate(lambda name, info: links.append((name, info.type)), info=True)
    total = 0
    for raw_name, link_type in links:
        name = raw_name.decode("utf-8", "replace")
        path = f"{prefix}/{name}"
        if link_type != h5py.h5l.TYPE_HARD:  # soft or external link: may point anywhere, even other files
            raise ExportError(f"{where}: {short(path)} is a {_LINK_KIND.get(link_type, 'link')}; NIR files hold "
                              f"their data themselves")
        oid = h5py.h5o.open(gid, raw_name)
        if isinstance(oid, h5py.h5g.GroupID):
            total += _check_group(oid, where, path, cap, depth + 1)
            continue
        if not isinstance(oid, h5py.h5d.DatasetID):
            raise ExportError(f"{where}: {short(path)} is neither a dataset nor a group")
        plist = oid.get_create_plist()
        if plist.get_layout() == h5py.h5d.VIRTUAL or plist.get_external_count() > 0:
            raise ExportError(f"{where}: dataset {short(path)} is stored outside the file")
        dtype = oid.dtype
        if dtype.kind not in _NUMERIC_OR_TEXT:
            raise ExportError(f"{where}: dataset {short(path)} has dtype {dtype}, not numbers or text")
        if dtype.kind in "SOU" and name not in _TEXT_KEYS and "/metadata" not in path:
            raise ExportError(f"{where}: dataset {short(path)} holds text where NIR stores numbers")
        shape = oid.shape
        size = 0 if shape is None else math.prod(shape)
        if size > cap:
            check_elements(size, where, f"dataset {short(path)}")
        total += size
        if name in SHAPE_KEYS or path.rsplit("/", 2)[-2:-1] in (["input_type"], ["output_type"]):
            _check_shape(h5py.Dataset(oid), where, path)
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
            if isinstance(value, (str, bytes)) and field != "padding":  # Conv padding may be 'same'/'valid'
                raise ExportError(f"{label}: {field} is text ({short(value)}), not numbers")
            arr = np.asarray(value) if isinstance(value, (np.ndarray, float, int)) else None
            if arr is None:
                continue
            if arr.dtype.kind not in "biuf":
                raise ExportError(f"{label}: {field} has dtype {arr.dtype}, not numbers")
            if arr.dtype.kind == "f" and not bool(np.isfinite(arr).all()):
                raise ExportError(f"{label} has NaN or infinite values in {field!r}")
            if field in ("tau", "tau_mem", "tau_syn", "v_threshold") and not bool((arr > 0).all()):
                raise ExportError(f"{label}: {field} must be > 0 (found {short(float(arr.min()))})")
            own_dt = (getattr(node, "metadata", None) or {}).get("dt")
            if field in ("tau", "tau_mem", "tau_syn") and own_dt is not None:
                # a step the node states itself (no --dt changes it): tau < dt is unstable on every backend
                try:
                    euler_step(full, field, arr, float(own_dt))
                except ExportError as exc:
                    raise ExportError(f"{where}: {exc} (the node's own dt metadata)") from None


#: Relative slack on tau >= dt: snnTorch's beta = 0 gives tau = dt exactly in float64, but a tau stored as float32
#: can fall a few 1e-8 below it; that is decay 0, not an unstable step.
EULER_SLACK = 1e-6


def euler_step(name: str, what: str, tau, dt: float) -> np.ndarray:
    """``k = dt / tau`` of one forward-Euler step of ``tau dv/dt = -v + ...`` (decay ``1 - k``), refused in one
    line naming the node when a time constant is not > 0 or is shorter than the step (``tau < dt``): the decay
    ``1 - dt/tau`` is then negative, the state flips sign every step, and no backend can run what the graph
    means. Loihi's fixed point cannot hold it (dv > 4095); the float executors refuse it the same way, so every
    backend gives the same answer for the same graph."""
    tau = np.asarray(tau, dtype=np.float64)
    if not bool((tau > 0).all()):
        raise ExportError(f"node {name!r}: time constants must be > 0 ({what} min {float(tau.min()):.6g})")
    k = dt / tau
    worst = float(k.max()) if k.size else 0.0
    if worst > 1.0 + EULER_SLACK:
        shortest = float(tau.min())
        raise ExportError(f"node {name!r}: {what}={shortest:.6g} s is shorter than the time step dt={dt:.6g} s, so "
                          f"the forward-Euler decay 1 - dt/{what} = {1.0 - worst:.6g} is negative (unstable: the "
                          f"state flips sign every step): the step must be <= {shortest:.6g} s")
    return k
