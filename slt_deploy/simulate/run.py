"""The simulate() entry: run a NIR graph on its test data with a chosen backend and check it against the
reference, the snnTorch-exact NIR executor.

Backends (registry :data:`BACKENDS`):

``reference``   :class:`~slt_deploy.simulate.reference.NIRExecutor` (float32, spike-exact with the snnTorch ticket)
``lava-float``  compiled to Lava ``floating_pt`` processes and run in Lava (expected: spike-identical)
``lava-fixed``  compiled to Loihi fixed point, run in Lava's bit-accurate ``fixed_pt`` models
``fast-fixed``  the same fixed-point network in :mod:`slt_deploy.simulate.fastsim` (bit-exact with ``lava-fixed``);
                on a GPU, runs of 1,000 samples or more use its torch twin :mod:`.fastsim_torch` (same bits)
``fast-float``  the ``floating_pt`` network in :mod:`slt_deploy.simulate.fastsim`
``xylosim``     quantised for Xylo Audio 2 and run in SynSense's bit-accurate xylosim (:mod:`.xylo`)
``sinabs``      sinabs IAF layers, as DYNAP-CNN / Speck run them (:mod:`.speck`)

Each registers itself with :func:`~slt_deploy.simulate.backends.register_backend`; the two vendor simulators
(registered ``whole_chip``) run every layer on their chip, the first included. Which backend a hardware profile
runs on is the profile's ``simulator`` field (the cost stage's profiles; the driver passes the name here).

A graph is compiled once and its samples streamed through one run. The samples are the graph's own dataset
(metadata written by ``slt-deploy export``) or given (arrays, an input file, any dataset: :mod:`.workload`).
Event data (``events`` encoding) and binary sequences given as they are enter the chip directly
(``first_layer="chip"``); other input feeds the first layer's currents from the host. The result reports
accuracy, agreement with the reference (predictions, spikes per layer, the first differing layer and step),
spikes per layer and samples per second.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import torch

from ..data.encoding import first_layer_on_host
from ..errors import ConfigError, SltError
from .backends import BACKENDS  # noqa: F401  (the registry, read here by the tests and benchmarks)
from .backends import NEURON_TYPES, BackendRun, graph_dt, register_backend, runs_whole_chip
from .backends import backend as _backend


@dataclass
class SimulationResult:
    file: str
    backend: str
    samples: int
    timesteps: int
    dataset: str                            # where the samples came from: a dataset's test split or a file
    encoding: str
    accuracy: Optional[float]               # None: no labels (agreement is still measured)
    reference_accuracy: Optional[float]
    prediction_agreement: float
    spike_agreement: Dict[str, float]       # layer -> fraction of (sample, step, neuron) entries equal
    first_mismatch: Optional[str]           # first differing layer and step, or None
    spikes_per_sample: Dict[str, float]     # layer -> spikes per sample, summed over time
    samples_per_s: float
    seconds: float
    notes: List[str] = field(default_factory=list)  # e.g. the per-layer fixed-point quantization
    dt: Optional[float] = None              # the graph's time step in seconds as run (assumed when not stored)
    first_layer: str = "host"
    warnings: List[str] = field(default_factory=list)  # an assumed dt, no spikes at all, silent layers
    silent: bool = False                    # no neuron spiked in the reference nor in the backend's run

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        acc = (f"accuracy {100 * self.accuracy:.2f} % (reference {100 * self.reference_accuracy:.2f} %)"
               if self.accuracy is not None else "accuracy unknown (no labels)")
        if self.silent:
            spikes = "NO SPIKES in any layer of either run: the agreement is trivial, not a check"
        elif self.first_mismatch is None:
            spikes = "spikes identical in every layer"
        else:
            spikes = f"first mismatch: {self.first_mismatch}"
        lines = [f"warning: {w}" for w in self.warnings]
        lines += [f"{self.backend} on {self.samples} samples of {self.dataset} (T={self.timesteps}, "
                  f"{self.encoding} input, first layer on {self.first_layer}): {acc}, "
                  f"{self.samples_per_s:.1f} samples/s",
                  f"  agreement with the reference: predictions {100 * self.prediction_agreement:.2f} %, {spikes}"]
        for name, agree in self.spike_agreement.items():
            lines.append(f"  {name:16s} spikes/sample {self.spikes_per_sample.get(name, 0.0):10.1f}   "
                         f"agreement {100 * agree:7.3f} %")
        lines += [f"  {n}" for n in self.notes]
        return "\n".join(lines)


@register_backend("reference")
def _reference(graph, x: np.ndarray, first_layer: str = "host") -> BackendRun:
    from .reference import NIRExecutor

    start = time.perf_counter()
    executor = NIRExecutor(graph)
    outputs, spikes = [], {}
    for i in range(0, len(x), 100):
        x_seq = torch.from_numpy(x[i:i + 100]).transpose(0, 1)  # (T, B, ...)
        out, trace = executor.run(x_seq, record=True)
        outputs.append(out.transpose(0, 1).numpy())
        for name in _spiking_nodes(graph):
            spikes.setdefault(name, []).append(trace[name].transpose(0, 1).numpy())
    return BackendRun(np.concatenate(outputs), {k: np.concatenate(v) for k, v in spikes.items()},
                      time.perf_counter() - start)


def _compiled(target: str, engine: str) -> Callable:
    def run(graph, x: np.ndarray, first_layer: str = "host", device: str = "auto") -> BackendRun:
        from ..compile import lower

        start = time.perf_counter()
        lowered = lower(graph, target, first_layer=first_layer)
        if engine == "lava":
            from .lava import run_lava

            result = run_lava(lowered, x)
        else:
            from .fastsim_torch import fast_simulator  # the torch one on a GPU for large fixed_pt runs

            result = fast_simulator(lowered, len(x), device).run(x, count=False)
        notes = tuple(lowered.summary().splitlines())
        return BackendRun(np.asarray(result.outputs), dict(result.spikes), time.perf_counter() - start, notes)
    return run


register_backend("lava-float")(_compiled("floating_pt", "lava"))
register_backend("lava-fixed")(_compiled("fixed_pt", "lava"))
register_backend("fast-fixed")(_compiled("fixed_pt", "fast"))
register_backend("fast-float")(_compiled("floating_pt", "fast"))

# The vendors' simulators register their own backends (after the project's, which keeps the registry's order);
# each imports its vendor library only when it runs.
from . import xylo, speck  # noqa: E402,F401  isort: skip


def loihi_backend() -> Tuple[str, str]:
    """The Loihi fixed-point simulator for this environment and why, in one line: Lava's bit-accurate
    ``fixed_pt`` models where Lava is installed, else the fast simulator, bit-exact with them (checked against
    Lava's recorded outputs, tests/data/lava_recorded, on every Python)."""
    import importlib.util
    import platform

    if importlib.util.find_spec("lava") is not None:
        return "lava-fixed", "Lava is installed: its bit-accurate fixed_pt models are the reference"
    return "fast-fixed", (f"Lava is not installed (lava-nc 0.10.0 needs Python 3.10, this is "
                          f"{platform.python_version()}); the fast simulator is bit-exact with Lava's fixed_pt "
                          f"on the networks Lava recorded (tests/data/lava_recorded)")


def _spiking_nodes(graph) -> List[str]:
    import nir

    return [name for name, node in graph.nodes.items() if isinstance(node, (nir.LIF, nir.IF, nir.CubaLIF))]


def _agreement(actual: Dict[str, np.ndarray], expected: Dict[str, np.ndarray]) -> Dict[str, float]:
    out = {}
    for name, e in expected.items():
        a = actual.get(name)
        if a is None or a.size != e.size:
            out[name] = float("nan")
            continue
        out[name] = float((a.reshape(e.shape) == e).mean())
    return out


def _check_steps(graph, run_dt: float, where: str) -> None:
    """Each neuron node's time constants against the step the executors give it (its own ``dt`` metadata, else
    the graph's)."""
    from ..exporters.nir_checks import euler_step

    for name, node in graph.nodes.items():
        own = "dt" in (node.metadata or {})
        node_dt = float(node.metadata["dt"]) if own else run_dt
        for what in ("tau", "tau_mem", "tau_syn"):
            if type(node).__name__ in NEURON_TYPES and getattr(node, what, None) is not None:
                try:
                    euler_step(name, what, getattr(node, what), node_dt)
                except SltError as exc:
                    hint = ("; this node's step is its own dt metadata, which --dt does not change" if own
                            else "; set the step with --dt")
                    raise type(exc)(f"{where + ': ' if where else ''}{exc}{hint}") from None


def with_dt(graph, dt: Optional[float], where: str = "") -> Tuple[object, float, List[str]]:
    """(graph to run, its dt, warnings): ``dt`` (when given) becomes the graph's ``dt`` metadata (nodes that
    state their own keep it); a graph with no dt at all runs at DEFAULT_DT, with a warning naming it. Every
    neuron's time constants are checked against the step it will run at before anything else is done (tau < dt
    is refused in one line naming ``where`` and the node, on every backend: :func:`euler_step`)."""
    import copy

    from ..exporters.nir_format import DEFAULT_DT

    if dt is not None:
        if not (dt > 0 and np.isfinite(dt)):
            raise ConfigError(f"dt={dt} must be a positive number of seconds")
        graph = copy.copy(graph)
        graph.metadata = {**(graph.metadata or {}), "dt": float(dt)}
        _check_steps(graph, float(dt), where)
        return graph, float(dt), []
    stated = graph_dt(graph)
    _check_steps(graph, DEFAULT_DT if stated is None else stated, where)
    if stated is not None:
        return graph, stated, []
    return graph, DEFAULT_DT, [f"the graph states no dt; assuming dt = {DEFAULT_DT:g} s (snnTorch's export "
                               f"convention). Tools that integrate one input per step (sinabs IF, r = 1) need "
                               f"--dt 1 (dt= in Python)"]


def load_graph(model, lenient: bool = False) -> Tuple[object, str, List[str]]:
    """(graph, where, repairs): a ``nir.NIRGraph`` as it is, or a file read with
    :func:`~slt_deploy.exporters.nir_format.read_nir` (``lenient``: the unit-dimension repairs it made)."""
    import warnings

    import nir

    from ..exporters.nir_format import read_nir

    if isinstance(model, nir.NIRGraph):
        return model, "<graph>", []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        graph = read_nir(Path(model), lenient=lenient)
    return graph, str(model), [str(w.message) for w in caught if issubclass(w.category, UserWarning)]


def first_difference(actual: Dict[str, np.ndarray], expected: Dict[str, np.ndarray],
                     layers: List[str]) -> Optional[Tuple[str, int, int, int, float, float]]:
    """(layer, sample, step, flat neuron, backend value, reference value) of the first difference, in the order
    :func:`slt_deploy.compile.first_mismatch` reports it; None when all agree."""
    for name in layers:
        if name not in actual:
            continue
        a = np.asarray(actual[name]).reshape(actual[name].shape[0], actual[name].shape[1], -1)
        e = np.asarray(expected[name]).reshape(a.shape)
        diff = a != e
        if diff.any():
            t = int(np.flatnonzero(diff.any(axis=(0, 2)))[0])
            k = int(np.flatnonzero(diff[:, t].any(axis=1))[0])
            i = int(np.flatnonzero(diff[k, t])[0])
            return name, k, t, i, float(a[k, t, i]), float(e[k, t, i])
    return None


def _spike_warnings(spikes: Dict[str, np.ndarray], layers: List[str], what: str) -> List[str]:
    silent = [n for n in layers if n in spikes and not np.any(spikes[n])]
    if not silent or len(silent) == len(layers):
        return []
    return [f"no spike at all in layer(s) {', '.join(silent)} of the {what} run"]


def simulate(model, backend: Optional[str] = None, samples: int = 100, progress: bool = True, *, x=None, y=None,
             input=None, data=None, dt: Optional[float] = None, first_layer: Optional[str] = None,
             encoding: Optional[str] = None, timesteps: Optional[int] = None,
             lenient: bool = False, device: str = "auto") -> SimulationResult:
    """Run a NIR graph (a path or a ``nir.NIRGraph``) on ``samples`` samples with ``backend`` (default: the
    Loihi simulator of this environment, :func:`loihi_backend`) and compare it with the reference executor.

    The samples are, in this order of preference: arrays ``x`` (N, T, *input) as they are or (N, *input)
    values to encode with ``encoding`` over ``timesteps`` steps, with labels ``y`` or none; an ``input`` file
    (.npz with ``x`` and optional ``y``, or .npy); a dataset (``data``, a :class:`~slt_deploy.config.DataConfig`);
    else the test split of the dataset the graph's metadata names. ``dt`` sets the graph's time step (a graph
    that states none runs at 1e-4 s, with a warning). ``first_layer``: ``chip`` feeds the input to the first
    synapse layer on chip (binary spikes only), ``host`` computes it off-chip; default: chip for event data and
    for binary sequences given as they are, host otherwise. ``lenient``: read a file whose declared shapes differ
    only by unit dimensions (each repair is listed in the result's warnings). ``device``: where the fast
    simulator runs (``auto``: the torch one on a GPU for 1,000 samples or more, :func:`.fastsim_torch.fast_simulator`;
    ``cpu``: numpy; ``cuda``/``cuda:N``: torch there); the other backends ignore it.
    """
    from ..compile import first_mismatch
    from .workload import graph_workload

    backend = backend or loihi_backend()[0]
    run_backend = _backend(backend)
    if samples < 1:
        raise ConfigError(f"samples={samples} must be >= 1")
    if first_layer not in (None, "host", "chip"):
        raise ConfigError(f"first_layer={first_layer!r} must be host or chip")
    graph, where, repairs = load_graph(model, lenient)
    graph, run_dt, warned = with_dt(graph, dt, where)
    warned = repairs + warned
    work = graph_workload(graph, where, samples=samples, progress=progress, x=x, y=y, input=input, data=data,
                          encoding=encoding, timesteps=timesteps)
    x, y = work.x, work.y
    if first_layer is None:
        # Event data is spikes from the sensor, so the first synapse layer runs on chip like the others; the host
        # layer is for real-valued (direct) input, and summed binary inputs can exceed Loihi's host current range.
        first_layer = "host" if first_layer_on_host(work.encoding, work.binary) else "chip"
        first_layer = "chip" if runs_whole_chip(backend) else first_layer  # the chip takes its input itself
    elif first_layer == "chip" and not work.binary:
        raise ConfigError(f"{where}: first_layer=chip needs binary spike input; the input has other values "
                          f"(use first_layer=host)")

    reference = _reference(graph, x)
    if backend == "reference":
        run = reference
    elif backend.startswith("fast"):
        run = run_backend(graph, x, first_layer=first_layer, device=device)
    else:
        run = run_backend(graph, x, first_layer=first_layer)
    pred = run.outputs.reshape(len(x), x.shape[1], -1).sum(1).argmax(1)
    ref_pred = reference.outputs.reshape(len(x), x.shape[1], -1).sum(1).argmax(1)
    spike_layers = [n for n in _spiking_nodes(graph) if n in reference.spikes]
    aligned = {n: run.spikes[n].reshape(reference.spikes[n].shape) for n in spike_layers if n in run.spikes}
    silent = not any(np.any(reference.spikes[n]) for n in spike_layers) and \
        not any(np.any(a) for a in aligned.values())
    if silent:
        warned.append(f"no neuron spiked in any layer, in the reference or the {backend} run, on {len(x)} samples "
                      f"(dt = {run_dt:g} s): predictions come from biases alone and agreeing on silence proves "
                      f"nothing; check dt and the input's scale")
    else:
        warned += _spike_warnings(reference.spikes, spike_layers, "reference")
        if backend != "reference":
            warned += _spike_warnings(aligned, spike_layers, backend)
    notes = list(run.notes)
    where_first = first_difference(aligned, reference.spikes, spike_layers) if run.explain else None
    if where_first is not None:
        layer, k, t, i, a, e = where_first
        notes.insert(0, f"first difference: layer {layer}, sample {k}, step {t}, neuron {i}: {backend} {a:g} "
                        f"spike(s), reference {e:g}; why: {run.explain(layer, t, a, e)}")
    return SimulationResult(
        file=where, backend=backend, samples=len(x), timesteps=x.shape[1], dataset=work.source,
        encoding=work.encoding,
        accuracy=float((pred == y).mean()) if y is not None else None,
        reference_accuracy=float((ref_pred == y).mean()) if y is not None else None,
        prediction_agreement=float((pred == ref_pred).mean()),
        spike_agreement=_agreement(aligned, {n: reference.spikes[n] for n in spike_layers}),
        first_mismatch=first_mismatch(aligned, {n: reference.spikes[n] for n in spike_layers}, spike_layers),
        spikes_per_sample={n: float(np.count_nonzero(run.spikes[n])) / len(x) for n in spike_layers if n in run.spikes},
        samples_per_s=len(x) / run.seconds if run.seconds > 0 else float("inf"), seconds=run.seconds,
        notes=notes, dt=run_dt, first_layer=first_layer, warnings=warned, silent=silent)
