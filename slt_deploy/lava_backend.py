"""Lava backend: build Lava processes from a :class:`~slt_deploy.compile.ir.LoweredNetwork` and run them.

This is the only module of the package that imports Lava (lazily, on first use), so every other feature works
without it. One run streams all samples: the network is built and compiled once, every population is a
``LIFReset`` whose reset offset follows its lag (netx's staggered reset), and one ``RingBuffer`` source feeds
the inputs back to back; ``RingBuffer`` sinks record every population's spikes and the readout synapses' output.

Mapping (see the IR docstring for the equations):

- population -> one ``LIFReset`` per group of neurons sharing (du, dv, vth);
- projection -> ``Sparse`` (csr weights) or ``Dense`` (dense weights) per (source group, target group) block;
- host layer -> a ``RingBuffer`` source of currents wired straight to the first population's ``a_in``;
- chip input -> a ``RingBuffer`` source of spikes feeding the first projections;
- readout -> a ``RingBuffer`` sink on the readout synapses' ``a_out`` (exact per-step currents; a LIF in Loihi
  fixed point cannot forget its voltage completely, dv <= 4095/4096).

The runtime is always stopped (``finally``), so no Lava process outlives a call, even after an error.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from dataclasses import dataclass, field
from typing import Dict, List, Tuple

import numpy as np
import scipy.sparse as sp

from .compile.errors import CompileError
from .compile.ir import LoweredNetwork
from .compile.stream import align, check_input, input_stream, readout_values, to_nir_order, total_steps
from .errors import MissingDependencyError

INSTALL_HINT = "install Lava with: pip install 'slt-deploy[lava]' (lava-nc 0.10 needs Python 3.10)"


def import_lava() -> Dict[str, object]:
    """The Lava classes the backend uses; MissingDependencyError when Lava is not installed."""
    _allow_lava_fork()
    try:
        from lava.magma.core.run_conditions import RunSteps
        from lava.magma.core.run_configs import Loihi2SimCfg
        from lava.proc.dense.process import Dense
        from lava.proc.io.sink import RingBuffer as Sink
        from lava.proc.io.source import RingBuffer as Source
        from lava.proc.lif.process import LIFReset
        from lava.proc.sparse.process import Sparse
    except ImportError as exc:
        raise MissingDependencyError(f"Lava is not available ({exc}); {INSTALL_HINT}") from None
    recorder, model = _recorder_classes()
    return dict(RunSteps=RunSteps, Loihi2SimCfg=Loihi2SimCfg, Dense=Dense, Sparse=Sparse, LIFReset=LIFReset,
                Source=Source, Sink=Sink, Recorder=recorder, RecorderModel=model)


_RECORDER = None


def _allow_lava_fork() -> None:
    """Let Lava's import-time ``multiprocessing.set_start_method('fork')`` succeed.

    That call raises "context has already been set" once anything in the process has asked for the start
    method (torch and tqdm do during training), even when it already is 'fork'. If it is 'fork', the choice is
    cleared so Lava can make the same choice again; any other method is an error Lava cannot run under.
    """
    import multiprocessing
    import sys

    if "lava.magma.runtime.message_infrastructure.multiprocessing" in sys.modules:
        return  # Lava is imported already and set 'fork' itself
    current = multiprocessing.get_start_method(allow_none=True)
    if current is None:
        return
    if current != "fork":
        raise CompileError(f"Lava needs the multiprocessing start method 'fork', but this process uses {current!r}")
    multiprocessing.context._default_context._actual_context = None  # noqa: SLF001 - see the docstring


def _recorder_classes():
    """A sink that writes each step's input into a memory-mapped file.

    Lava's own ``RingBuffer`` sink is read back with ``Var.get()``, which ships arrays one element per message
    (about 25 us each: minutes for a conv layer over 100 samples). The recorder's model runs in Lava's forked
    worker process and writes into a file the parent maps too, so reading is free. Its model is passed to the
    run config explicitly, which also keeps Lava from importing every module of this package while it looks
    for process models next to the process class.
    """
    global _RECORDER
    if _RECORDER is None:
        from lava.magma.core.decorator import implements, requires, tag
        from lava.magma.core.model.py.model import PyLoihiProcessModel
        from lava.magma.core.model.py.ports import PyInPort
        from lava.magma.core.model.py.type import LavaPyType
        from lava.magma.core.process.ports.ports import InPort
        from lava.magma.core.process.process import AbstractProcess
        from lava.magma.core.resources import CPU
        from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

        class Recorder(AbstractProcess):
            """Records ``a_in`` at every step into ``path`` (a (n, steps) memmap of ``dtype``)."""

            def __init__(self, *, shape, path: str, steps: int, dtype: str, name=None):
                super().__init__(shape=shape, path=path, steps=steps, dtype=dtype, name=name)
                self.a_in = InPort(shape=shape)

        @implements(proc=Recorder, protocol=LoihiProtocol)
        @requires(CPU)
        @tag("floating_pt", "fixed_pt")
        class PyRecorderModel(PyLoihiProcessModel):
            a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)

            def __init__(self, proc_params):
                super().__init__(proc_params)
                p = self.proc_params
                self.out = np.memmap(p["path"], dtype=p["dtype"], mode="r+",
                                     shape=(int(np.prod(p["shape"])), p["steps"]))

            def run_spk(self):
                data = self.a_in.recv()
                if self.time_step <= self.out.shape[1]:
                    self.out[:, self.time_step - 1] = np.ravel(data)

        _RECORDER = (Recorder, PyRecorderModel)
    return _RECORDER


@dataclass
class LavaResult:
    """What a Lava run gives, aligned with the reference: index [k, t] is sample k, reference step t."""

    outputs: np.ndarray                 # (N, T, *output_shape): per-step logits (or spikes for a spiking readout)
    spikes: Dict[str, np.ndarray]       # population -> (N, T, *nir_shape) spikes (empty if not recorded)
    readout_current: np.ndarray         # (N, T, n): raw readout synapse output (integers in fixed_pt)
    target: str
    steps: int                          # Lava steps run: N*T + latency
    latency: int
    processes: int                      # Lava processes built
    seconds: Dict[str, float] = field(default_factory=dict)  # build, run (compile + execute), read, total

    def predictions(self) -> np.ndarray:
        """Class per sample: logits summed over time (the project's evaluation rule)."""
        return self.outputs.reshape(self.outputs.shape[0], self.outputs.shape[1], -1).sum(axis=1).argmax(axis=1)


class _Builder:
    """Creates the processes and remembers every port, group and sink."""

    def __init__(self, net: LoweredNetwork, lava: Dict[str, object], n: int, t: int, record: bool, tmp: str):
        self.net, self.lava, self.t, self.tmp = net, lava, t, tmp
        self.total = total_steps(net, n, t)
        self.fixed = net.target == "fixed_pt"
        self.procs: List[object] = []
        self.outs: Dict[str, List[Tuple[np.ndarray, object]]] = {}  # name -> (Lava flat indices, OutPort)
        self.ins: Dict[str, List[Tuple[np.ndarray, object]]] = {}   # name -> (indices, InPort)
        self.spike_sinks: Dict[str, List[Tuple[np.ndarray, object]]] = {}
        self.record = record
        self.recorders: List[object] = []

    def add(self, proc):
        self.procs.append(proc)
        return proc

    def recorder(self, size: int, dtype: str):
        """A Recorder process and the (size, total) memmap it writes (zeros until written)."""
        path = os.path.join(self.tmp, f"rec{len(self.recorders)}.bin")
        data = np.memmap(path, dtype=dtype, mode="w+", shape=(size, self.total))
        rec = self.add(self.lava["Recorder"](shape=(size,), path=path, steps=self.total, dtype=dtype))
        self.recorders.append(rec)
        return rec, data

    def scalar(self, value):
        return int(value) if self.fixed else float(value)

    def populations(self) -> None:
        net, lava = self.net, self.lava
        spike_readout = net.readout.source if net.readout.kind == "spikes" else None
        for pop in net.populations:
            self.outs[pop.name], self.ins[pop.name] = [], []
            for g, idx in enumerate(pop.groups()):
                first = idx[0]
                bias = pop.bias_mant[idx].astype(np.int64 if self.fixed else np.float64)
                lif = self.add(lava["LIFReset"](
                    shape=(idx.size,), du=self.scalar(pop.du[first]), dv=self.scalar(pop.dv[first]),
                    vth=self.scalar(pop.vth[first]), bias_mant=bias, bias_exp=pop.bias_exp[idx].astype(np.int64),
                    reset_interval=self.t, reset_offset=(1 + pop.lag) % self.t, name=f"{pop.name}[{g}]"))
                self.outs[pop.name].append((idx, lif.s_out))
                self.ins[pop.name].append((idx, lif.a_in))
                if self.record or pop.name == spike_readout:
                    rec, data = self.recorder(idx.size, "int8")
                    lif.s_out.connect(rec.a_in)
                    self.spike_sinks.setdefault(pop.name, []).append((idx, data))

    def inputs(self, stream: np.ndarray) -> None:
        net, lava = self.net, self.lava
        if net.host is not None:
            for idx, port in self.ins[net.host.target]:
                src = self.add(lava["Source"](data=stream[idx]))
                src.s_out.connect(port)
        else:
            src = self.add(lava["Source"](data=stream))
            self.outs[net.input.name] = [(np.arange(net.input.size), src.s_out)]

    def readout(self):
        r = self.net.readout
        if r.kind != "current":
            return None
        n = int(np.prod(r.nir_shape))
        rec, data = self.recorder(n, "float64")
        self.ins[r.name] = [(np.arange(n), rec.a_in)]
        return data

    def projections(self) -> None:
        for proj in self.net.projections:
            sources, targets = self.outs[proj.source], self.ins[proj.target]
            weight = proj.weight
            for tidx, in_port in targets:
                for sidx, out_port in sources:
                    block = weight[tidx][:, sidx] if sp.issparse(weight) else weight[np.ix_(tidx, sidx)]
                    nnz = block.nnz if sp.issparse(block) else np.count_nonzero(block)
                    if nnz == 0 and (len(sources) > 1 or len(targets) > 1):
                        continue  # an empty block between groups carries nothing
                    kwargs = dict(weight_exp=int(proj.weight_exp), num_weight_bits=8) if self.fixed else {}
                    if sp.issparse(block):
                        dtype = np.int64 if self.fixed else np.float64
                        conn = self.lava["Sparse"](weights=sp.csr_matrix(block, dtype=dtype), name=proj.name,
                                                   **kwargs)
                    else:
                        conn = self.lava["Dense"](weights=np.asarray(block, np.int64 if self.fixed else np.float64),
                                                  name=proj.name, **kwargs)
                    self.add(conn)
                    out_port.connect(conn.s_in)
                    conn.a_out.connect(in_port)


@contextlib.contextmanager
def _runtime(runner):
    """Stop the Lava runtime of ``runner`` on the way out, whether the run finished or failed.

    After a clean run ``stop()`` shuts the worker processes down. After a failure it must not be called: when a
    process model raises, Lava's runtime service reports the error and exits, and ``stop()`` would then wait
    forever for its answer. The failed runtime's remaining workers are terminated instead and its shared
    memory released (Lava 0.10 internals: ``Runtime._messaging_infrastructure``), so nothing outlives the call.
    """
    try:
        yield
    except BaseException:
        _abort(getattr(runner, "runtime", None))
        raise
    else:
        runner.stop()


def _abort(runtime) -> None:
    """Best-effort teardown of a failed runtime; never raises, so the original error reaches the caller."""
    infra = getattr(runtime, "_messaging_infrastructure", None)
    if infra is None:
        return
    actors = list(getattr(infra, "actors", []))
    for actor in actors:  # the worker processes this run started
        try:
            if actor.is_alive():
                actor.terminate()
        except (ValueError, OSError, AttributeError):  # already joined and closed by Lava
            continue
    for actor in actors:
        try:
            actor.join()
        except (ValueError, OSError, AttributeError, AssertionError):
            pass
    smm = getattr(infra, "_smm", None)
    try:
        if smm is not None:
            smm.shutdown()  # the shared-memory manager process
    except Exception:  # noqa: BLE001 - best effort
        pass


def run_lava(lowered: LoweredNetwork, x, *, record_spikes: bool = True) -> LavaResult:
    """Run ``x`` (N, T, *input_shape, NIR order) through Lava in one streamed run.

    Builds the network once, runs N*T + latency steps, and returns outputs and spikes aligned with the
    reference steps (Lava step ``1 + k*T + t + lag`` is sample k, step t). Raises CompileError for bad input
    (checked before Lava starts); the runtime is stopped whatever happens.
    """
    net = lowered
    x = check_input(net, x)
    n, t = x.shape[:2]
    stream = input_stream(net, x)
    lava = import_lava()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="slt-lava-") as tmp:
        b = _Builder(net, lava, n, t, record_spikes, tmp)
        b.populations()
        b.inputs(stream)
        readout_data = b.readout()
        b.projections()
        built = time.perf_counter()
        runner = b.procs[0]
        model = lava["RecorderModel"]
        exceptions = {lava["Recorder"]: model, **{rec: model for rec in b.recorders}}
        with _runtime(runner):
            runner.run(condition=lava["RunSteps"](num_steps=b.total),
                       run_cfg=lava["Loihi2SimCfg"](select_tag=net.target, exception_proc_model_map=exceptions))
        ran = time.perf_counter()
        raw_spikes = {name: [(idx, np.array(d)) for idx, d in sinks] for name, sinks in b.spike_sinks.items()}
        raw_readout = np.array(readout_data) if readout_data is not None else None
    read = time.perf_counter()

    spikes = {}
    for pop in net.populations:
        if pop.name not in raw_spikes:
            continue
        lava_order = np.zeros((n, t, pop.size), dtype=np.int8)
        for idx, data in raw_spikes[pop.name]:
            lava_order[..., idx] = align(data, pop.lag, n, t) != 0
        spikes[pop.name] = to_nir_order(pop, lava_order)
    if net.readout.kind == "current":
        current = align(raw_readout, net.readout.lag, n, t)
        outputs = readout_values(net, current.astype(np.float64))
    else:
        current = np.zeros((n, t, 0))
        outputs = spikes[net.readout.source].astype(np.float64)
    if not record_spikes:
        spikes = {}
    return LavaResult(outputs=outputs, spikes=spikes, readout_current=current, target=net.target, steps=b.total,
                      latency=net.latency, processes=len(b.procs),
                      seconds={"build": built - start, "run": ran - built, "read": read - ran,
                               "total": read - start})


def run_netx(path, lowered: LoweredNetwork, x, *, num_layers=None) -> Tuple[Dict[str, np.ndarray], Dict[str, float]]:
    """Load a netx HDF5 file with ``lava.lib.dl.netx.hdf5.Network`` and stream ``x`` through it in fixed_pt.

    ``lowered`` is the network the file was written from (it gives the input stream, the lags and the layer
    names). Returns ({population: spikes (N, T, *nir_shape)}, seconds) for every netx layer built
    (``num_layers`` as in netx: a count of file entries, flatten included; default: all but the readout).
    """
    net = lowered
    x = check_input(net, x)
    n, t = x.shape[:2]
    stream = input_stream(net, x)
    lava = import_lava()
    try:
        from lava.lib.dl import netx
    except ImportError as exc:
        raise MissingDependencyError(f"lava-dl netx is not available ({exc}); {INSTALL_HINT}") from None
    from .exporters.netx_format import netx_reset_offset

    start = time.perf_counter()
    if num_layers is None:  # every spiking layer; the readout (the last entry, netx's integrator) is left out
        import h5py

        with h5py.File(path, "r") as f:
            num_layers = len(f["layer"]) - 1
    network = netx.hdf5.Network(net_config=str(path), num_layers=num_layers, reset_interval=t,
                                reset_offset=netx_reset_offset(net))
    if net.host is not None:
        # lava-dl 0.6.0's netx Input block never connects its ``inp`` port to its neuron (netx examples drive
        # input layers through the bias), so the host currents go straight to that neuron's a_in
        target = network.layers[0].neuron.a_in
    else:
        target = network.inp
    in_shape = tuple(target.shape)
    if len(in_shape) == 1 and net.host is None:  # a dense first layer reads the input in NIR (CHW-flat) order
        data = np.empty_like(stream)
        data[net.input.nir_index] = stream
    else:
        data = stream.reshape(in_shape + (stream.shape[1],))  # Lava flat order is C-order over (W, H, C)
    source = lava["Source"](data=data)
    source.s_out.connect(target)
    with tempfile.TemporaryDirectory(prefix="slt-netx-") as tmp:
        b = _Builder(net, lava, n, t, True, tmp)
        taps = []
        for pop, layer in zip(net.populations, network.layers):
            rec, buf = b.recorder(int(np.prod(layer.out.shape)), "int8")
            layer.out.reshape((int(np.prod(layer.out.shape)),)).connect(rec.a_in)
            taps.append((pop, layer, buf))
        model = lava["RecorderModel"]
        exceptions = {lava["Recorder"]: model, **{rec: model for rec in b.recorders}}
        with _runtime(source):
            source.run(condition=lava["RunSteps"](num_steps=b.total),
                       run_cfg=lava["Loihi2SimCfg"](select_tag="fixed_pt", exception_proc_model_map=exceptions))
        spikes = {}
        for pop, layer, buf in taps:
            aligned = (align(np.array(buf), pop.lag, n, t) != 0).astype(np.int8)
            if len(layer.out.shape) == 3:  # image layers keep Lava's (W, H, C) order
                spikes[pop.name] = to_nir_order(pop, aligned)
            else:                           # dense layers were written in NIR order
                spikes[pop.name] = aligned.reshape(aligned.shape[:2] + tuple(pop.nir_shape))
    return spikes, {"total": time.perf_counter() - start}


__all__ = ["LavaResult", "run_lava", "run_netx", "import_lava"]
