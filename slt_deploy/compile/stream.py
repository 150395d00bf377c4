"""Streaming N samples through one compiled network, without Lava (shared by the Lava backend and simulators).

Sample ``k``, reference step ``t`` enters at Lava step ``tau = 1 + k*T + t`` (column ``k*T + t`` of the input
stream) and population ``p`` handles it at column ``k*T + t + p.lag`` of its recordings (see
:mod:`slt_deploy.compile.ir`). A run lasts ``N*T + latency`` steps so the last sample reaches the readout.
"""

from __future__ import annotations

import numpy as np

from .errors import CompileError
from .ir import LoweredNetwork, Population


def as_array(x) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor, without importing torch here
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def check_shape(net: LoweredNetwork, shape: tuple) -> None:
    """The input's shape must be (N, T, *input shape) with N, T >= 1 (shared with simulators that hold the
    input elsewhere, e.g. on a GPU)."""
    shape = tuple(shape)
    if len(shape) < 2 or shape[2:] != tuple(net.input.nir_shape):
        dims = ", ".join(map(str, net.input.nir_shape))
        raise CompileError(f"input of shape {shape} does not match (N, T, {dims})")
    if shape[0] < 1 or shape[1] < 1:
        raise CompileError(f"input of shape {shape} has no samples or no timesteps")


NOT_FINITE = "input has NaN or infinite values"


def check_input(net: LoweredNetwork, x) -> np.ndarray:
    x = as_array(x)
    check_shape(net, x.shape)
    if not np.isfinite(x).all():
        raise CompileError(NOT_FINITE)
    return x


def total_steps(net: LoweredNetwork, n: int, t: int) -> int:
    return n * t + net.latency


def input_stream(net: LoweredNetwork, x, *, pad: bool = True, first_sample: int = 0) -> np.ndarray:
    """(n, N*T + latency): host currents for the first population or input spikes, Lava flat order.

    floating_pt host currents are ``W x + b``; fixed_pt ones are ``round(scale * (W x + b))`` (half to even),
    checked against Loihi's a_in range. Spike input must be 0/1. Every column is computed on its own, so a
    slice of samples gives the same columns as the whole input: ``pad=False`` leaves out the ``latency`` zero
    columns and ``first_sample`` numbers the samples in error messages (both for streaming in chunks).
    """
    x = check_input(net, x)
    n, t = x.shape[:2]
    flat = x.reshape(n * t, -1)[:, net.input.nir_index]  # rows: (k, t); columns: Lava input order
    if net.host is not None:
        host = net.host
        cur = (host.weight @ flat.T) + host.bias[:, None]
        if net.target == "fixed_pt":
            cur = np.round(cur * host.scale[:, None])
            worst = np.abs(cur).max(axis=0)
            bad = np.flatnonzero(worst > host.limit)
            if bad.size:
                k, step = divmod(int(bad[0]), t)
                k += first_sample
                raise CompileError(f"layer {host.target!r}: host current {worst[bad[0]]:.0f} (sample {k}, step "
                                   f"{step}) exceeds Loihi's a_in range {host.limit:.0f} (the 24-bit current "
                                   f"would wrap); inputs are too large for the threshold")
            cur = cur.astype(np.int64)
        data = cur
    else:
        if not bool(np.isin(flat, (0.0, 1.0)).all()):
            raise CompileError("first_layer='chip' needs binary spike input (0/1); real-valued (direct) input "
                               "needs first_layer='host'")
        data = flat.T.astype(np.int64 if net.target == "fixed_pt" else np.float64)
    if not pad:
        return data
    return np.concatenate([data, np.zeros((data.shape[0], net.latency), dtype=data.dtype)], axis=1)


def align(recording: np.ndarray, lag: int, n: int, t: int) -> np.ndarray:
    """(rows, total steps) recording -> (N, T, rows) aligned with the reference steps."""
    return recording[:, lag:lag + n * t].reshape(recording.shape[0], n, t).transpose(1, 2, 0)


def to_nir_order(pop: Population, lava_order: np.ndarray) -> np.ndarray:
    """(N, T, n) in Lava flat order -> (N, T, *nir_shape)."""
    out = np.empty_like(lava_order)
    out[..., pop.nir_index] = lava_order
    return out.reshape(out.shape[:2] + tuple(pop.nir_shape))


def readout_values(net: LoweredNetwork, current: np.ndarray) -> np.ndarray:
    """(N, T, n) readout synapse output -> per-step logits (N, T, *shape): a / scale + bias, then the LI filter."""
    r = net.readout
    logits = current / r.scale + r.bias
    if r.decay is not None:
        y = np.zeros_like(logits[:, 0])
        for step in range(logits.shape[1]):
            y = r.decay * y + r.gain * logits[:, step]
            logits[:, step] = y
    return logits.reshape(logits.shape[:2] + tuple(r.nir_shape))

