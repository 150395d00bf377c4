"""Lava backend: build Lava processes from a :class:`~slt_deploy.compile.ir.LoweredNetwork` and run them.

This is the only module of the package that imports Lava (lazily, on first use), so every other feature works
without it. The network is built and compiled once per call; every population is a ``LIFReset`` whose reset
offset follows its lag (netx's staggered reset), so samples stream back to back with no rebuild and no reset
call between them.

Large inputs are run in chunks of ``chunk_samples`` samples on that one network: the runtime is paused after
each chunk's ``chunk_samples * T`` steps (Lava keeps every process's state and time step between ``run`` calls),
the host refills the input ring buffer with the next chunk, and the recordings of the samples completed so far
are read out. Inputs and recordings live in memory-mapped ring files of about one chunk (plus the latency), so
memory does not grow with N beyond the returned, aligned results. Chunking cannot change a result: Lava sees
the same steps in the same order, only paused in between.

Mapping (see the IR docstring for the equations):

- population -> one ``LIFReset`` (reset by subtraction or a current bias: :class:`.lava_neurons.ProjectLIF`) per
  group of neurons sharing (du, dv, vth), at most
  :data:`MAX_GROUPS_PER_POPULATION` (see :func:`check_lava_limits`);
- projection -> ``Sparse`` (csr weights) or ``Dense`` (dense weights) per (source group, target group) block;
- host layer -> a ``Feeder`` (memory-mapped ring-buffer source) of currents wired straight to the first
  population's ``a_in``;
- chip input -> a ``Feeder`` of spikes feeding the first projections;
- readout -> a ``Recorder`` sink on the readout synapses' ``a_out`` (exact per-step currents; a LIF in Loihi
  fixed point cannot forget its voltage completely, dv <= 4095/4096).

The runtime is always stopped (``finally``), so no Lava process outlives a call, even after an error.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np
import scipy.sparse as sp

from ..compile.errors import CompileError
from ..compile.ir import LoweredNetwork
from ..compile.stream import align, check_input, input_stream, readout_values, to_nir_order, total_steps
from ..errors import MissingDependencyError

INSTALL_HINT = "install Lava with: pip install 'slt-deploy[lava]' (lava-nc 0.10 needs Python 3.10)"

# Lava's CPU runtime runs every process (each LIF group, each Dense/Sparse block between groups, each recorder)
# in its own OS process, and its compiler walks the process graph recursively (compiler_graphs.find_processes /
# flatten_list_recursive). Measured with lava-nc 0.10 on 2 cores: a layer of 32 groups (133 processes) starts in
# ~7 s, 96 groups (389 processes) in ~22 s, and ~2000 processes (300 x 5 groups) end in RecursionError after
# 80 s. Blocks grow as (source groups x target groups), so both the groups of one population and the total are
# capped, and a network beyond either is refused before Lava starts.
MAX_GROUPS_PER_POPULATION = 32
MAX_LAVA_PROCESSES = 512
DEFAULT_CHUNK_SAMPLES = 256  # samples per chunk: a few MB of input and recording buffers for MNIST-size nets


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
    recorder, model, feeder, feeder_models = _recorder_classes()
    return dict(RunSteps=RunSteps, Loihi2SimCfg=Loihi2SimCfg, Dense=Dense, Sparse=Sparse, LIFReset=LIFReset,
                Source=Source, Sink=Sink, Recorder=recorder, RecorderModel=model, Feeder=feeder,
                FeederModels=feeder_models)


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
    """A sink that writes each step's input into a memory-mapped file, and a source that reads one.

    Lava's own ``RingBuffer`` sink is read back with ``Var.get()``, which ships arrays one element per message
    (about 25 us each: minutes for a conv layer over 100 samples). The recorder's model runs in Lava's forked
    worker process and writes into a file the parent maps too, so reading is free. Its model is passed to the
    run config explicitly, which also keeps Lava from importing every module of this package while it looks
    for process models next to the process class. The source (``Feeder``) is the same idea the other way: the
    parent writes the next chunk's inputs into the file while the runtime is paused.
    """
    global _RECORDER
    if _RECORDER is None:
        from lava.magma.core.model.py.ports import PyOutPort
        from lava.magma.core.process.ports.ports import OutPort
        from lava.magma.core.decorator import implements, requires, tag
        from lava.magma.core.model.py.model import PyLoihiProcessModel
        from lava.magma.core.model.py.ports import PyInPort
        from lava.magma.core.model.py.type import LavaPyType
        from lava.magma.core.process.ports.ports import InPort
        from lava.magma.core.process.process import AbstractProcess
        from lava.magma.core.resources import CPU
        from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

        class Recorder(AbstractProcess):
            """Records ``a_in`` at every step into ``path``, a (n, steps) memmap of ``dtype`` used as a ring
            buffer: step ``tau`` goes to column ``(tau - 1) % steps``."""

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
                self.out[:, (self.time_step - 1) % self.out.shape[1]] = np.ravel(data)

        class Feeder(AbstractProcess):
            """Sends column ``(tau - 1) % steps`` of ``path`` (a (n, steps) memmap of ``dtype``) at step
            ``tau``: Lava's ``RingBuffer`` source, but refilled by the host between runs through the file."""

            def __init__(self, *, shape, path: str, steps: int, dtype: str, name=None):
                super().__init__(shape=shape, path=path, steps=steps, dtype=dtype, name=name)
                self.s_out = OutPort(shape=shape)

        class _FeederModel(PyLoihiProcessModel):
            def __init__(self, proc_params):
                super().__init__(proc_params)
                p = self.proc_params
                self.data = np.memmap(p["path"], dtype=p["dtype"], mode="r",
                                      shape=(int(np.prod(p["shape"])), p["steps"]))

            def run_spk(self):
                column = self.data[:, (self.time_step - 1) % self.data.shape[1]]
                self.s_out.send(np.array(column).reshape(self.s_out.shape))

        @implements(proc=Feeder, protocol=LoihiProtocol)
        @requires(CPU)
        @tag("floating_pt")
        class PyFeederFloat(_FeederModel):
            s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)  # as lava.proc.io.source.RingBuffer

        @implements(proc=Feeder, protocol=LoihiProtocol)
        @requires(CPU)
        @tag("fixed_pt")
        class PyFeederFixed(_FeederModel):
            s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32)

        _RECORDER = (Recorder, PyRecorderModel, Feeder, {"floating_pt": PyFeederFloat, "fixed_pt": PyFeederFixed})
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
    chunks: int = 1                     # Lava run calls (chunks of samples) on the one built network

    def predictions(self) -> np.ndarray:
        """Class per sample: logits summed over time (the project's evaluation rule)."""
        return self.outputs.reshape(self.outputs.shape[0], self.outputs.shape[1], -1).sum(axis=1).argmax(axis=1)


# ---------------------------------------------------------------------------------- limits (no Lava needed)

def _blocks(net: LoweredNetwork, proj, groups: Dict[str, List[np.ndarray]]):
    """(target indices, source indices, block) of the Dense/Sparse processes of one projection; empty blocks
    between groups carry nothing and are left out (a single block is kept even when empty)."""
    sources, targets = groups[proj.source], groups[proj.target]
    weight = proj.weight
    for tidx in targets:
        for sidx in sources:
            block = weight[tidx][:, sidx] if sp.issparse(weight) else weight[np.ix_(tidx, sidx)]
            nnz = block.nnz if sp.issparse(block) else np.count_nonzero(block)
            if nnz == 0 and (len(sources) > 1 or len(targets) > 1):
                continue
            yield tidx, sidx, block


def _lava_groups(net: LoweredNetwork) -> Dict[str, List[np.ndarray]]:
    """Lava flat indices of every Lava process per layer: populations by group, input and readout whole."""
    groups = {p.name: p.groups() for p in net.populations}
    groups[net.input.name] = [np.arange(net.input.size)]
    groups[net.readout.name] = [np.arange(int(np.prod(net.readout.nir_shape)))]
    return groups


def lava_process_count(lowered: LoweredNetwork, record_spikes: bool = True) -> int:
    """How many Lava processes :func:`run_lava` builds for ``lowered`` (without importing Lava)."""
    net = lowered
    groups = _lava_groups(net)
    spike_readout = net.readout.source if net.readout.kind == "spikes" else None
    count = 0
    for pop in net.populations:
        g = len(groups[pop.name])
        count += g * (2 if record_spikes or pop.name == spike_readout else 1)  # LIF (+ its recorder)
    count += len(groups[net.host.target]) if net.host is not None else 1      # input feeders
    count += 1 if net.readout.kind == "current" else 0                        # readout recorder
    count += sum(1 for proj in net.projections for _ in _blocks(net, proj, groups))
    count += sum(len(groups[proj.source]) for proj in net.projections if proj.recurrent)  # sample gates
    return count


def check_lava_limits(lowered: LoweredNetwork, record_spikes: bool = True) -> int:
    """Raise CompileError when Lava could not build or start the network in reasonable time; else the process
    count. See :data:`MAX_GROUPS_PER_POPULATION` and :data:`MAX_LAVA_PROCESSES`."""
    net = lowered
    for pop in net.populations:
        groups = pop.groups()
        if len(groups) <= MAX_GROUPS_PER_POPULATION:
            continue
        n_vth = int(np.unique(pop.vth).size)
        n_decay = int(np.unique(np.stack([pop.du, pop.dv], axis=1), axis=0).shape[0])
        if net.target == "floating_pt" and n_decay <= MAX_GROUPS_PER_POPULATION:
            advice = (f"compile with target='fixed_pt', which folds per-neuron thresholds into the weights "
                      f"({n_decay} process(es) left)")
        else:
            advice = ("per-neuron decays cannot be folded: share them (e.g. one per channel), or use the fast "
                      "simulator, which has no such limit")
        raise CompileError(f"layer {pop.name!r}: {len(groups)} distinct (du, dv, vth) combinations ({n_vth} distinct "
                           f"threshold(s), {n_decay} distinct decay pair(s)) would need {len(groups)} Lava LIF "
                           f"processes, more than MAX_GROUPS_PER_POPULATION={MAX_GROUPS_PER_POPULATION} (Lava runs "
                           f"every process as an OS process and its compiler recurses over them); {advice}")
    count = lava_process_count(net, record_spikes)
    if count > MAX_LAVA_PROCESSES:
        raise CompileError(f"the network needs {count} Lava processes (groups x blocks between them), more than "
                           f"MAX_LAVA_PROCESSES={MAX_LAVA_PROCESSES}; reduce the distinct per-neuron parameters "
                           f"(target='fixed_pt' folds thresholds) or use the fast simulator")
    return count


# ---------------------------------------------------------------------------------------------- building

class _Builder:
    """Creates the processes and remembers every port, group, feeder and recorder.

    Feeders and recorders are ring buffers of ``ring`` steps (column ``(tau - 1) % ring``); a run of at most
    ``ring`` steps never overwrites what the host has not read or written yet (see :func:`run_lava`).
    """

    def __init__(self, net: LoweredNetwork, lava: Dict[str, object], n: int, t: int, record: bool, tmp: str,
                 ring: Optional[int] = None):
        self.net, self.lava, self.t, self.tmp = net, lava, t, tmp
        self.total = total_steps(net, n, t)
        self.ring = self.total if ring is None else ring
        self.fixed = net.target == "fixed_pt"
        self.groups = _lava_groups(net)
        self.procs: List[object] = []
        self.outs: Dict[str, List[Tuple[np.ndarray, object]]] = {}  # name -> (Lava flat indices, OutPort)
        self.ins: Dict[str, List[Tuple[np.ndarray, object]]] = {}   # name -> (indices, InPort)
        self.spike_sinks: Dict[str, List[Tuple[np.ndarray, object]]] = {}
        self.record = record
        self.recorders: List[object] = []
        self.feeders: List[Tuple[np.ndarray, np.memmap]] = []      # (stream rows, ring file)
        self.feeder_procs: List[object] = []
        self.gates: List[object] = []                               # sample gates of recurrent paths

    def add(self, proc):
        self.procs.append(proc)
        return proc

    def _file(self, kind: str, size: int, dtype: str) -> Tuple[str, np.memmap]:
        path = os.path.join(self.tmp, f"{kind}{len(self.procs)}.bin")
        return path, np.memmap(path, dtype=dtype, mode="w+", shape=(size, self.ring))

    def recorder(self, size: int, dtype: str):
        """A Recorder process and the (size, ring) memmap it writes (zeros until written)."""
        path, data = self._file("rec", size, dtype)
        rec = self.add(self.lava["Recorder"](shape=(size,), path=path, steps=self.ring, dtype=dtype))
        self.recorders.append(rec)
        return rec, data

    def feeder(self, rows: np.ndarray):
        """A Feeder process sending ``stream[rows]``; the host fills its (rows, ring) file."""
        path, data = self._file("in", rows.size, "int32" if self.fixed else "float64")
        src = self.add(self.lava["Feeder"](shape=(rows.size,), path=path, steps=self.ring, dtype=str(data.dtype)))
        self.feeders.append((rows, data))
        self.feeder_procs.append(src)
        return src

    def feed(self, start: int, columns: np.ndarray) -> None:
        """Write ``columns`` (n_input, steps) of the input stream for Lava steps ``start + 1 ...``."""
        cols = np.arange(start, start + columns.shape[1]) % self.ring
        for rows, data in self.feeders:
            data[:, cols] = columns[rows]

    def scalar(self, value):
        return int(value) if self.fixed else float(value)

    def populations(self) -> None:
        net, lava = self.net, self.lava
        spike_readout = net.readout.source if net.readout.kind == "spikes" else None
        for pop in net.populations:
            self.outs[pop.name], self.ins[pop.name] = [], []
            for g, idx in enumerate(self.groups[pop.name]):
                first = idx[0]
                bias = pop.bias_mant[idx].astype(np.int64 if self.fixed else np.float64)
                process, own = lava["LIFReset"], {}
                if pop.own_process:
                    from .lava_neurons import project_lif_classes

                    process = project_lif_classes()[0]
                    own = dict(subtract=pop.reset == "subtract", current_bias=0 if pop.current_bias is None else
                               pop.current_bias[idx].astype(np.int64 if self.fixed else np.float64))
                lif = self.add(process(**own,
                    shape=(idx.size,), du=self.scalar(pop.du[first]), dv=self.scalar(pop.dv[first]),
                    vth=self.scalar(pop.vth[first]), bias_mant=bias, bias_exp=pop.bias_exp[idx].astype(np.int64),
                    reset_interval=self.t, reset_offset=(1 + pop.lag) % self.t, name=f"{pop.name}[{g}]"))
                self.outs[pop.name].append((idx, lif.s_out))
                self.ins[pop.name].append((idx, lif.a_in))
                if self.record or pop.name == spike_readout:
                    rec, data = self.recorder(idx.size, "int8")
                    lif.s_out.connect(rec.a_in)
                    self.spike_sinks.setdefault(pop.name, []).append((idx, data))

    def inputs(self) -> None:
        net = self.net
        if net.host is not None:
            for idx, port in self.ins[net.host.target]:
                self.feeder(idx).s_out.connect(port)
        else:
            (idx,) = self.groups[net.input.name]
            self.outs[net.input.name] = [(idx, self.feeder(idx).s_out)]

    def readout(self):
        r = self.net.readout
        if r.kind != "current":
            return None
        (idx,) = self.groups[r.name]
        rec, data = self.recorder(idx.size, "float64")
        self.ins[r.name] = [(idx, rec.a_in)]
        return data

    def projections(self) -> None:
        for proj in self.net.projections:
            sources = dict((id(i), p) for i, p in self.outs[proj.source])
            targets = dict((id(i), p) for i, p in self.ins[proj.target])
            if proj.recurrent:  # a sample's last spikes must not reach the next sample: gate each source group
                from .lava_neurons import sample_gate_classes

                gate = sample_gate_classes()[0]
                lag = self.net.population(proj.source).lag
                for key, port in list(sources.items()):
                    g = self.add(gate(shape=port.shape, interval=self.t, lag=lag, name=f"{proj.name}:gate"))
                    self.gates.append(g)
                    port.connect(g.s_in)
                    sources[key] = g.s_out
            for tidx, sidx, block in _blocks(self.net, proj, self.groups):
                kwargs = dict(weight_exp=int(proj.weight_exp), num_weight_bits=8) if self.fixed else {}
                if sp.issparse(block):
                    dtype = np.int64 if self.fixed else np.float64
                    conn = self.lava["Sparse"](weights=sp.csr_matrix(block, dtype=dtype), name=proj.name, **kwargs)
                else:
                    conn = self.lava["Dense"](weights=np.asarray(block, np.int64 if self.fixed else np.float64),
                                              name=proj.name, **kwargs)
                self.add(conn)
                sources[id(sidx)].connect(conn.s_in)
                conn.a_out.connect(targets[id(tidx)])

    def model_map(self) -> Dict[type, type]:
        """The process models given to the run config explicitly (see :func:`_recorder_classes`)."""
        lava = self.lava
        models = {lava["Recorder"]: lava["RecorderModel"], lava["Feeder"]: lava["FeederModels"][self.net.target]}
        models.update({rec: lava["RecorderModel"] for rec in self.recorders})
        models.update({src: lava["FeederModels"][self.net.target] for src in self.feeder_procs})
        if self.gates:
            from .lava_neurons import sample_gate_classes

            gate, gate_models = sample_gate_classes()
            models[gate] = gate_models[self.net.target]
            models.update({g: gate_models[self.net.target] for g in self.gates})
        if any(p.own_process for p in self.net.populations):
            from .lava_neurons import project_lif_classes

            process, own_models = project_lif_classes()
            models[process] = own_models[self.net.target]
            models.update({proc: own_models[self.net.target] for proc in self.procs if isinstance(proc, process)})
        return models


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


def run_lava(lowered: LoweredNetwork, x, *, record_spikes: bool = True,
             chunk_samples: int = DEFAULT_CHUNK_SAMPLES) -> LavaResult:
    """Run ``x`` (N, T, *input_shape, NIR order) through Lava, streaming ``chunk_samples`` samples per run call.

    Builds and compiles the network once, then runs it chunk after chunk (N*T + latency steps in all, the last
    chunk carrying the latency), refilling the input ring buffer between chunks; the result does not depend on
    ``chunk_samples``, only memory does (see the module docstring). Returns outputs and spikes aligned with the
    reference steps (Lava step ``1 + k*T + t + lag`` is sample k, step t). Raises CompileError for bad input and
    for networks beyond :func:`check_lava_limits`, both checked before Lava starts; the runtime is stopped
    whatever happens.
    """
    net = lowered
    x = check_input(net, x)
    n, t = x.shape[:2]
    if int(chunk_samples) < 1:
        raise CompileError(f"chunk_samples={chunk_samples} must be >= 1")
    chunk = min(int(chunk_samples), n)
    starts = list(range(0, n, chunk))
    for k in starts:  # every input error before Lava starts (the host layer is cheap next to a Lava run)
        input_stream(net, x[k:k + chunk], pad=False, first_sample=k)
    check_lava_limits(net, record_spikes)
    lava = import_lava()
    start = time.perf_counter()
    latency = net.latency
    # a run spans at most chunk*T + latency steps; a sample still unread when a run starts began at most T
    # steps earlier, so T more columns keep it from being overwritten before it is read
    ring = chunk * t + latency + t
    lava_spikes = {}
    with tempfile.TemporaryDirectory(prefix="slt-lava-") as tmp:
        b = _Builder(net, lava, n, t, record_spikes, tmp, ring=ring)
        b.populations()
        b.inputs()
        readout_data = b.readout()
        b.projections()
        built = time.perf_counter()
        for name, sinks in b.spike_sinks.items():
            lava_spikes[name] = np.zeros((n, t, net.population(name).size), dtype=np.int8)
        current = np.zeros((n, t, readout_data.shape[0] if readout_data is not None else 0))
        done = {name: 0 for name in b.spike_sinks}   # samples read out so far, per recording
        if readout_data is not None:
            done[net.readout.name] = 0

        def read(end: int) -> None:
            """Copy every sample whose steps all lie before Lava step ``end`` (inclusive) out of the rings."""
            jobs = [(name, net.population(name).lag, sinks) for name, sinks in b.spike_sinks.items()]
            if readout_data is not None:
                jobs.append((net.readout.name, net.readout.lag, None))
            for name, lag, sinks in jobs:
                first, last = done[name], min(n, max(0, (end - lag) // t))
                if last <= first:
                    continue
                cols = np.arange(first * t + lag, last * t + lag) % ring
                if sinks is None:
                    current[first:last] = readout_data[:, cols].reshape(-1, last - first, t).transpose(1, 2, 0)
                else:
                    for idx, data in sinks:
                        block = data[:, cols].reshape(idx.size, last - first, t).transpose(1, 2, 0)
                        lava_spikes[name][first:last][..., idx] = block != 0
                done[name] = last

        runner = b.procs[0]
        run_cfg = lava["Loihi2SimCfg"](select_tag=net.target, exception_proc_model_map=b.model_map())
        reading = 0.0
        with _runtime(runner):
            step = 0
            for k in starts:
                columns = input_stream(net, x[k:k + chunk], pad=False, first_sample=k)
                if k + chunk >= n:  # the last chunk also runs the latency, with no input
                    columns = np.concatenate([columns, np.zeros((columns.shape[0], latency), columns.dtype)], 1)
                b.feed(step, columns)
                runner.run(condition=lava["RunSteps"](num_steps=columns.shape[1]), run_cfg=run_cfg)
                step += columns.shape[1]
                before = time.perf_counter()
                read(step)
                reading += time.perf_counter() - before
        ran = time.perf_counter()
    assert step == b.total and all(v == n for v in done.values()), (step, done)

    spikes = {pop.name: to_nir_order(pop, lava_spikes[pop.name]) for pop in net.populations
              if pop.name in lava_spikes}
    if net.readout.kind == "current":
        outputs = readout_values(net, current)
    else:
        outputs = spikes[net.readout.source].astype(np.float64)
    if not record_spikes:
        spikes = {}
    end = time.perf_counter()
    return LavaResult(outputs=outputs, spikes=spikes, readout_current=current, target=net.target, steps=b.total,
                      latency=latency, processes=len(b.procs), chunks=len(starts),
                      seconds={"build": built - start, "run": ran - built - reading,
                               "read": reading + end - ran, "total": end - start})


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
    from ..exporters.netx_format import check_netx_file, netx_reset_offset

    start = time.perf_counter()
    layers = check_netx_file(path)  # lava-dl trusts the file; a bad one fails deep inside Lava
    if num_layers is None:  # every spiking layer; the readout (the last entry, netx's integrator) is left out
        num_layers = layers - 1
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
        exceptions = b.model_map()
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


__all__ = ["LavaResult", "run_lava", "run_netx", "import_lava", "check_lava_limits", "lava_process_count",
           "MAX_GROUPS_PER_POPULATION", "MAX_LAVA_PROCESSES", "DEFAULT_CHUNK_SAMPLES"]
