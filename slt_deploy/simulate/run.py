"""The simulate() entry: run a NIR graph on its test data with a chosen backend and check it against the
reference, the snnTorch-exact NIR executor.

Backends (registry :data:`BACKENDS`):

``reference``   :class:`~slt_deploy.simulate.reference.NIRExecutor` (float32, spike-exact with the snnTorch ticket)
``lava-float``  compiled to Lava ``floating_pt`` processes and run in Lava (expected: spike-identical)
``lava-fixed``  compiled to Loihi fixed point, run in Lava's bit-accurate ``fixed_pt`` models
``fast-fixed``  the same fixed-point network in :mod:`slt_deploy.simulate.fastsim` (bit-exact with ``lava-fixed``);
                on a GPU, runs of 1,000 samples or more use its torch twin :mod:`.fastsim_torch` (same bits)
``fast-float``  the ``floating_pt`` network in :mod:`slt_deploy.simulate.fastsim`

A dataset is compiled once and streamed through one run. Event data (``events`` encoding) is binary
spikes and enters the chip directly (``first_layer="chip"``); other encodings feed the first layer's currents
from the host. The result reports accuracy, agreement with the
reference (predictions, spikes per layer, the first differing layer and step), spikes per layer and
samples per second.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import torch

from ..errors import ConfigError
from .workload import encoded_test_samples, nir_data, nir_metadata


@dataclass(frozen=True)
class BackendRun:
    """What a backend returns: per-step outputs (N, T, classes) and spikes per layer (N, T, ...)."""

    outputs: np.ndarray
    spikes: Dict[str, np.ndarray]
    seconds: float
    notes: Tuple[str, ...] = ()


@dataclass
class SimulationResult:
    file: str
    backend: str
    samples: int
    timesteps: int
    dataset: str
    encoding: str
    accuracy: float
    reference_accuracy: float
    prediction_agreement: float
    spike_agreement: Dict[str, float]       # layer -> fraction of (sample, step, neuron) entries equal
    first_mismatch: Optional[str]           # first differing layer and step, or None
    spikes_per_sample: Dict[str, float]     # layer -> spikes per sample, summed over time
    samples_per_s: float
    seconds: float
    notes: List[str] = field(default_factory=list)  # e.g. the per-layer fixed-point quantization

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        lines = [f"{self.backend} on {self.samples} {self.dataset} test samples (T={self.timesteps}, "
                 f"{self.encoding} encoding): accuracy {100 * self.accuracy:.2f} % "
                 f"(reference {100 * self.reference_accuracy:.2f} %), {self.samples_per_s:.1f} samples/s",
                 f"  agreement with the reference: predictions {100 * self.prediction_agreement:.2f} %, "
                 + ("spikes identical in every layer" if self.first_mismatch is None else
                    f"first mismatch: {self.first_mismatch}")]
        for name, agree in self.spike_agreement.items():
            lines.append(f"  {name:16s} spikes/sample {self.spikes_per_sample.get(name, 0.0):10.1f}   "
                         f"agreement {100 * agree:7.3f} %")
        lines += [f"  {n}" for n in self.notes]
        return "\n".join(lines)


def _reference(graph, x: np.ndarray) -> BackendRun:
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
    def run(graph, x: np.ndarray, first_layer: str = "host") -> BackendRun:
        from ..compile import lower

        start = time.perf_counter()
        lowered = lower(graph, target, first_layer=first_layer)
        if engine == "lava":
            from .lava import run_lava

            result = run_lava(lowered, x)
        else:
            from .fastsim_torch import fast_simulator  # the torch one on a GPU for large fixed_pt runs

            result = fast_simulator(lowered, len(x)).run(x, count=False)
        notes = tuple(lowered.summary().splitlines())
        return BackendRun(np.asarray(result.outputs), dict(result.spikes), time.perf_counter() - start, notes)
    return run


BACKENDS: Dict[str, Callable] = {
    "reference": _reference,
    "lava-float": _compiled("floating_pt", "lava"),
    "lava-fixed": _compiled("fixed_pt", "lava"),
    "fast-fixed": _compiled("fixed_pt", "fast"),
    "fast-float": _compiled("floating_pt", "fast"),
}


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


def simulate(nir_path: str | Path, backend: str, samples: int = 100, progress: bool = True) -> SimulationResult:
    """Run the NIR graph at ``nir_path`` on its first ``samples`` test samples with ``backend``."""
    from ..compile import first_mismatch
    from ..exporters.nir_format import read_nir

    if backend not in BACKENDS:
        raise ConfigError(f"unknown backend {backend!r}; available: {', '.join(BACKENDS)}")
    if samples < 1:
        raise ConfigError(f"samples={samples} must be >= 1")
    path = Path(nir_path)
    graph = read_nir(path)
    data = nir_data(graph, path)
    seed = int(nir_metadata(graph).get("seed", 0))
    xs, ys = [], []
    for x_seq, y in encoded_test_samples(data, samples, seed, progress, f"data {path.name}", str(path)):
        xs.append(x_seq.transpose(0, 1).numpy())  # (B, T, ...): the backends take samples first
        ys.append(y.numpy())
    x, y = np.concatenate(xs), np.concatenate(ys)

    reference = _reference(graph, x)
    # Event data is spikes from the sensor, so the first synapse layer runs on chip like the others; the host
    # layer is for real-valued (direct) input, and summed binary inputs can exceed Loihi's host current range.
    first_layer = "chip" if data.encoding == "events" else "host"
    run = reference if backend == "reference" else BACKENDS[backend](graph, x, first_layer=first_layer)
    pred = run.outputs.reshape(len(x), x.shape[1], -1).sum(1).argmax(1)
    ref_pred = reference.outputs.reshape(len(x), x.shape[1], -1).sum(1).argmax(1)
    spike_layers = [n for n in _spiking_nodes(graph) if n in reference.spikes]
    aligned = {n: run.spikes[n].reshape(reference.spikes[n].shape) for n in spike_layers if n in run.spikes}
    return SimulationResult(
        file=str(path), backend=backend, samples=len(x), timesteps=x.shape[1], dataset=data.dataset,
        encoding=data.encoding, accuracy=float((pred == y).mean()), reference_accuracy=float((ref_pred == y).mean()),
        prediction_agreement=float((pred == ref_pred).mean()),
        spike_agreement=_agreement(aligned, {n: reference.spikes[n] for n in spike_layers}),
        first_mismatch=first_mismatch(aligned, {n: reference.spikes[n] for n in spike_layers}, spike_layers),
        spikes_per_sample={n: float(np.count_nonzero(run.spikes[n])) / len(x) for n in spike_layers if n in run.spikes},
        samples_per_s=len(x) / run.seconds if run.seconds > 0 else float("inf"), seconds=run.seconds,
        notes=list(run.notes))
