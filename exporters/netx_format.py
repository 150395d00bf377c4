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
