"""lava-dl netx HDF5 export: the input of Intel's Loihi 2 flow (``lava.lib.dl.netx.hdf5.Network``).

The file is written from a fixed-point :class:`~slt_deploy.compile.ir.LoweredNetwork`, so netx runs exactly the
integers our own compile runs (the test checks spike equality). netx can only carry part of what the compiler
chooses, hence ``lower(..., target="fixed_pt", netx_compatible=True)``: weight_exp 0 (netx dense layers have no
weight exponent) and bias_exp 6 (netx maps ``bias`` to ``bias_mant`` with ``bias_exp = 6``).

Layout (REFERENCE 6; read back by lava.lib.dl.netx.hdf5 in lava-dl 0.6.0):

- ``layer/0`` ``input``: the input shape; with ``first_layer="host"`` it also carries the first population's
  CUBA neuron (netx's ``Input`` block is a LIF whose ``a_in`` is the network input), so the host currents are
  fed to the netx network as they are fed to ours;
- one ``dense`` or ``conv`` layer per population (``conv`` when its synapses are exactly one NIR Conv2d node
  and its input is an image; otherwise the composed matrix, e.g. conv+pool, is written as ``dense``), with a
  ``flatten`` layer before a dense layer that follows an image layer (netx flattens in CHW order);
- the readout as a final ``dense`` layer without neuron (netx's default non-leaky integrator).

``shape`` is stored C,H,W (netx reverses it to W,H,C), conv weights in PyTorch layout (C_out, C_in, kH, kW),
stride/padding/dilation as (H, W); dense weights are (n_out, n_in) in NIR (CHW-flat) order on both sides.
Neurons: ``iDecay = du + 1``, ``vDecay = dv``, ``vThMant = vth``. netx's reset offsets start at
``reset_offset + 1`` and grow by one per layer, which equals our lags with ``reset_offset = 0`` for a host-fed
network and ``1`` when the first synapses are on chip (:func:`netx_reset_offset`).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Optional

import h5py
import numpy as np

from ..compile.errors import CompileError
from ..compile.ir import LoweredNetwork, Population, Projection
from ..compile.lower import conv_matrix
from ..errors import ExportError
from ..limits import short
from ..utils import check_output_path, write_bytes_atomic

NETX_BIAS_EXP = 6


def netx_reset_offset(net: LoweredNetwork) -> int:
    """The ``reset_offset`` to give ``netx.hdf5.Network`` so its staggered resets match our lags."""
    return 0 if net.first_layer == "host" else 1


def _nir_matrix(proj: Projection, src_index: np.ndarray, dst_index: Optional[np.ndarray]) -> np.ndarray:
    """The projection's mantissas with rows and columns in NIR flat order (what netx's dense layers use)."""
    w = proj.dense()
    out = np.zeros_like(w)
    rows = dst_index if dst_index is not None else np.arange(w.shape[0])
    out[np.ix_(rows, src_index)] = w
    return out


def _neuron(g: h5py.Group, pop: Population) -> None:
    for what in ("du", "dv", "vth"):
        if np.unique(getattr(pop, what)).size != 1:
            raise ExportError(f"layer {pop.name!r}: netx needs one {what} per layer; this one has several")
    n = g.create_group("neuron")
    n.create_dataset("type", data=np.bytes_("CUBA"))
    n.create_dataset("iDecay", data=int(pop.du[0]) + 1)
    n.create_dataset("vDecay", data=int(pop.dv[0]))
    n.create_dataset("vThMant", data=int(pop.vth[0]))
    n.create_dataset("refDelay", data=1)
    n.create_dataset("gradedSpike", data=False)


def _bias(pop: Population) -> np.ndarray:
    if bool((pop.bias_exp != NETX_BIAS_EXP).any()) and bool((pop.bias_mant != 0).any()):
        raise ExportError(f"layer {pop.name!r}: bias_exp {int(pop.bias_exp.max())} but netx fixes it to 6; lower "
                          f"with netx_compatible=True")
    return pop.bias_mant


def _conv_kernel(proj: Projection, node, src: Population, dst: Population) -> Optional[np.ndarray]:
    """Recover the quantized kernel of a single-Conv2d projection from its matrix, or None if it is not one."""
    weight = np.asarray(node.weight)
    stride, dilation = (tuple(int(v) for v in np.broadcast_to(np.asarray(a).ravel(), (2,)))
                        for a in (node.stride, node.dilation))
    padding = tuple(int(v) for v in np.broadcast_to(np.asarray(node.padding).ravel(), (2,))) \
        if not isinstance(node.padding, str) else None
    if padding is None or len(src.nir_shape) != 3:
        return None
    # a kernel of element ids shows where each kernel element lands in the matrix
    ids = np.arange(1, weight.size + 1, dtype=np.float64).reshape(weight.shape)
    where, out_shape = conv_matrix(ids, src.nir_shape, stride, padding, dilation, int(node.groups))
    if tuple(out_shape) != tuple(dst.nir_shape):
        return None
    where = where.tocoo()
    mat = _nir_matrix(proj, src.nir_index, dst.nir_index)
    kernel = np.zeros(weight.size, dtype=np.int64)
    kernel[where.data.astype(np.int64) - 1] = mat[where.row, where.col]
    return kernel.reshape(weight.shape)


def lowered_to_netx(net: LoweredNetwork, path, graph=None) -> Path:
    """Write a fixed_pt lowered network (a feed-forward chain) as a netx HDF5 file.

    ``graph`` (the NIR graph it was lowered from) lets single-Conv2d projections be written as netx ``conv``
    layers; without it every projection is a ``dense`` layer.
    """
    if net.target != "fixed_pt":
        raise ExportError("netx files hold Loihi fixed-point parameters: lower with target='fixed_pt'")
    if any(p.weight_exp != 0 for p in net.projections):
        bad = next(p for p in net.projections if p.weight_exp != 0)
        raise ExportError(f"projection {bad.name!r} has weight_exp {bad.weight_exp}; netx dense layers carry no "
                          f"weight exponent: lower with netx_compatible=True")
    if net.readout.kind != "current":
        raise ExportError("netx export needs a non-spiking readout (a weight layer before the Output)")
    subtract = [p.name for p in net.populations if p.reset != "zero"]
    if subtract:
        raise ExportError(f"layer(s) {', '.join(subtract)} reset by subtraction; netx's CUBA neuron (lava-dl) resets "
                          f"to zero, so the file would run a different network (slt-deploy simulate runs it in Lava "
                          f"with this project's own subtract-reset process)")
    current = [p.name for p in net.populations if p.current_bias is not None]
    if current:
        raise ExportError(f"layer(s) {', '.join(current)} take a bias into the synaptic current (CubaLIF fed "
                          f"through a bias); netx's CUBA neuron adds its bias to the voltage, so the file would run a "
                          f"different network (slt-deploy simulate runs it in Lava with this project's own process)")
    path = Path(path)
    prev_name, prev_shape_3d = net.input.name, len(net.input.nir_shape) == 3

    def chain_input(target: str) -> Projection:
        incoming = net.incoming(target)
        if len(incoming) != 1 or incoming[0].source != prev_name:
            raise ExportError(f"layer {target!r}: netx export needs a chain of layers, each fed by the previous one")
        return incoming[0]

    pops = list(net.populations)
    check_output_path(path)
    # built in memory, written by Python: HDF5 writing straight to a full disk can crash the process
    # (see exporters.nir_format.write_nir); a Python write raises ENOSPC, reported in one line
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as f:
        root = f.create_group("layer")
        count = 0

        def group(kind: str) -> h5py.Group:
            nonlocal count
            g = root.create_group(str(count))
            g.create_dataset("type", data=np.bytes_(kind))
            count += 1
            return g

        g = group("input")
        if net.host is not None:
            first = pops.pop(0)
            g.create_dataset("shape", data=np.asarray(first.nir_shape))
            _neuron(g, first)
            bias = _bias(first)
            if np.unique(bias).size > 1:
                raise ExportError(f"layer {first.name!r}: netx input layers take one bias for all neurons")
            if bias.size and bias[0] != 0:
                g.create_dataset("bias", data=int(bias[0]))
            prev_name, prev_shape_3d = first.name, len(first.nir_shape) == 3
        else:
            g.create_dataset("shape", data=np.asarray(net.input.nir_shape))
        for pop in pops + [None]:
            target = pop.name if pop is not None else net.readout.name
            proj = chain_input(target)
            src_is_image = prev_shape_3d
            node = graph.nodes.get(proj.nodes[0]) if graph is not None and len(proj.nodes) == 1 else None
            kernel = None
            if pop is not None and src_is_image and node is not None and type(node).__name__ == "Conv2d":
                src = net.population(prev_name) if prev_name != net.input.name else None
                if src is not None:
                    kernel = _conv_kernel(proj, node, src, pop)
            if kernel is not None:
                g = group("conv")
                g.create_dataset("shape", data=np.asarray(pop.nir_shape))
                g.create_dataset("weight", data=kernel)
                for key in ("stride", "padding", "dilation"):
                    g.create_dataset(key, data=np.asarray(np.broadcast_to(np.asarray(getattr(node, key)).ravel(),
                                                                          (2,)), dtype=np.int64))
                g.create_dataset("groups", data=int(node.groups))
                bias = _bias(pop)
                if bool((bias != 0).any()):
                    g.create_dataset("bias", data=bias.reshape(pop.lava_shape))  # netx takes (W, H, C)
                _neuron(g, pop)
                prev_shape_3d = True
            else:
                if src_is_image:
                    group("flatten")  # netx: transpose WHC -> CHW, then flatten
                # image layers arrive CHW-flattened and dense layers output NIR order: columns in NIR order
                src_cols = _source_columns(net, prev_name)
                rows = pop.nir_index if pop is not None else None
                w = proj.dense()
                mat = np.zeros_like(w)
                mat[np.ix_(rows if rows is not None else np.arange(w.shape[0]), src_cols)] = w
                g = group("dense")
                n_out = w.shape[0]
                g.create_dataset("shape", data=np.asarray([n_out]))
                g.create_dataset("weight", data=mat)
                if pop is not None:
                    bias = np.zeros(n_out, dtype=np.int64)
                    bias[pop.nir_index] = _bias(pop)
                    if bool((bias != 0).any()):
                        g.create_dataset("bias", data=bias)
                    _neuron(g, pop)
                prev_shape_3d = False
            prev_name = target
    write_bytes_atomic(path, buffer.getvalue())
    return path


def _source_columns(net: LoweredNetwork, name: str) -> np.ndarray:
    """Where each Lava-order source neuron sits in a netx dense layer's input: its NIR flat index."""
    if name == net.input.name:
        return net.input.nir_index
    return net.population(name).nir_index


def write_netx(graph, path, *, first_layer: str = "host") -> LoweredNetwork:
    """Lower ``graph`` for netx (fixed_pt, netx-compatible), write it to ``path``, return the lowered network."""
    from ..compile import lower

    try:
        net = lower(graph, "fixed_pt", first_layer=first_layer, netx_compatible=True)
    except CompileError as exc:
        raise ExportError(f"cannot export to netx: {exc}") from None
    lowered_to_netx(net, path, graph)
    return net


def is_netx(path) -> bool:
    """An HDF5 file laid out as a netx network (a ``layer`` group, no NIR ``node`` group)."""
    try:
        with h5py.File(path, "r") as f:
            return "layer" in f and "node" not in f
    except OSError:
        return False


def _scalar(value):
    value = value[()] if isinstance(value, h5py.Dataset) else value
    if isinstance(value, bytes):
        return value.decode()
    return value.item() if hasattr(value, "item") and np.ndim(value) == 0 else value


def describe_netx(path) -> list:
    """One row per netx layer (``slt-deploy inspect``): type, shape, weights, sparsity, bias, neuron parameters.

    Raises ExportError naming the file and layer when the file is not a readable netx network."""
    path = Path(path)
    rows = []
    try:
        with h5py.File(path, "r") as f:
            layers = f["layer"]
            for key in sorted(layers, key=lambda k: int(k) if str(k).isdigit() else -1):
                g = layers[key]
                if "type" not in g:
                    raise ExportError(f"{path}: netx layer {key} has no type")
                row = {"layer": key, "type": _scalar(g["type"]),
                       "shape": "x".join(str(int(d)) for d in np.ravel(g["shape"][()])) if "shape" in g else "-"}
                if "weight" in g:
                    w = np.asarray(g["weight"][()])
                    row.update(weights="x".join(map(str, w.shape)), nonzero=int(np.count_nonzero(w)),
                               sparsity=f"{100 * (1 - np.count_nonzero(w) / w.size):.2f} %" if w.size else "-",
                               levels=int(np.unique(w[w != 0]).size))
                else:
                    row.update(weights="-", nonzero="-", sparsity="-", levels="-")
                row["bias"] = "yes" if "bias" in g else "no"
                if "neuron" in g:
                    n = g["neuron"]
                    row["neuron"] = (f"{_scalar(n['type']) if 'type' in n else '?'} "
                                     + " ".join(f"{k}={_scalar(n[k])}" for k in ("iDecay", "vDecay", "vThMant")
                                                if k in n))
                else:
                    row["neuron"] = "-"
                rows.append(row)
    except (OSError, KeyError, ValueError) as exc:
        raise ExportError(f"{path}: not a readable netx file ({str(exc).splitlines()[0]})") from None
    if not rows:
        raise ExportError(f"{path}: netx file without layers")
    return rows


# ------------------------------------------------------------------------------------------ reading

NETX_LAYER_TYPES = ("input", "dense", "conv", "flatten", "pool", "average", "concat")
NETX_NEURON_TYPES = ("CUBA", "LOIHI")


def check_netx_file(path) -> int:
    """Validate a netx HDF5 file before lava-dl reads it (lava-dl trusts it and fails deep inside Lava on a
    bad one); gives the number of layers. Structure and declared sizes first (as for NIR files: no links to
    other files, nothing above the element limit), then each ``layer/<i>``: a known ``type``, a positive
    ``shape``, finite numeric weights of the right rank, integer neuron constants in Loihi's ranges."""
    from .nir_checks import check_nir_file

    path = Path(path)
    if not path.is_file():
        raise ExportError(f"{path}: no such netx file")
    if not h5py.is_hdf5(path):
        raise ExportError(f"{path}: not a netx file (not HDF5)")
    check_nir_file(path)  # the HDF5-level checks are the same for both formats
    with h5py.File(path, "r") as f:
        root = f.get("layer")
        if not isinstance(root, h5py.Group):
            raise ExportError(f"{path}: not a netx file (no 'layer' group)")
        names = sorted(root, key=lambda n: (len(n), n))
        if names != [str(i) for i in range(len(names))] or len(names) < 2:
            raise ExportError(f"{path}: layer: expected groups 0..n-1 with n >= 2, found {short(names)}")
        for i, name in enumerate(names):
            _check_netx_layer(root[name], f"{path}: layer/{name}", first=i == 0)
    return len(names)


def _text(group, key: str, where: str) -> str:
    value = group.get(key)
    raw = value[()] if isinstance(value, h5py.Dataset) and value.shape == () else None
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", "replace")
    if not isinstance(raw, str):
        raise ExportError(f"{where}: {key} must be a text value")
    return raw


def _ints(group, key: str, where: str, low: int, high: int, required: bool = True) -> Optional[np.ndarray]:
    value = group.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, h5py.Dataset) or value.dtype.kind not in "iu" or value.size > 8:
        raise ExportError(f"{where}: {key} must be up to 8 integers")
    arr = np.atleast_1d(value[()]).astype(np.int64)
    if ((arr < low) | (arr > high)).any():
        raise ExportError(f"{where}: {key}={short(arr.tolist())} is outside {low}..{high}")
    return arr


def _check_netx_layer(g, where: str, first: bool) -> None:
    from ..limits import check_elements

    if not isinstance(g, h5py.Group):
        raise ExportError(f"{where}: not a group")
    kind = _text(g, "type", where)
    if kind not in NETX_LAYER_TYPES:
        raise ExportError(f"{where}: type={short(kind)} is not one of: {', '.join(NETX_LAYER_TYPES)}")
    if first != (kind == "input"):
        raise ExportError(f"{where}: type={kind!r}; the first layer (and only it) must be 'input'")
    if kind != "flatten":
        shape = _ints(g, "shape", where, 1, 1 << 40)
        check_elements(int(np.prod(shape)), where, f"shape={short(shape.tolist())}")
    if "weight" in g:
        w = g["weight"]
        rank = {"dense": 2, "conv": 4}.get(kind)
        if not isinstance(w, h5py.Dataset) or w.dtype.kind not in "iuf" or w.ndim != rank:
            raise ExportError(f"{where}: weight must be a {rank}-d numeric array for a {kind} layer")
        if w.dtype.kind == "f" and not bool(np.isfinite(w[()]).all()):
            raise ExportError(f"{where}: weight has NaN or infinite values")
    elif kind in ("dense", "conv"):
        raise ExportError(f"{where}: a {kind} layer needs a weight")
    if "bias" in g and (not isinstance(g["bias"], h5py.Dataset) or g["bias"].dtype.kind not in "iu"):
        raise ExportError(f"{where}: bias must be integers (Loihi bias mantissas)")
    for key in ("stride", "padding", "dilation", "groups"):
        _ints(g, key, where, 0 if key == "padding" else 1, 1 << 16, required=False)
    if "neuron" in g:
        n = g["neuron"]
        nwhere = f"{where}/neuron"
        if not isinstance(n, h5py.Group):
            raise ExportError(f"{nwhere}: not a group")
        ntype = _text(n, "type", nwhere)
        if ntype not in NETX_NEURON_TYPES:
            raise ExportError(f"{nwhere}: type={short(ntype)} is not one of: {', '.join(NETX_NEURON_TYPES)}")
        _ints(n, "vThMant", nwhere, 1, (1 << 17) - 1)
        _ints(n, "iDecay", nwhere, 0, 4096)
        _ints(n, "vDecay", nwhere, 0, 4096)
        _ints(n, "refDelay", nwhere, 0, 1 << 16, required=False)
