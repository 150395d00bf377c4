"""The simulate stage: run a compiled NIR graph on test data and check it against the reference.

Takes a NIR graph (and its test data, :mod:`.workload`); gives a :class:`SimulationResult` per backend:
accuracy, agreement with the reference executor (predictions, spikes per layer, first difference) and speed.

Modules: :mod:`.run` (the :func:`simulate` entry), :mod:`.backends` (the backend registry every backend,
the vendors' :mod:`.xylo` and :mod:`.speck` included, registers in), :mod:`.reference` (the NIR
reference executor, spike-exact with snnTorch; the one reading of a NIR graph into torch ops),
:mod:`.lava` (Lava processes from the compiler's IR; Lava is imported only there and in :mod:`.lava_neurons`,
the project's own Lava processes: subtract reset and the sample gate of recurrent paths), :mod:`.fastsim` (a
vectorized simulator bit-exact with Lava fixed point; :mod:`.fastsim_torch` is its torch twin for a GPU) and
:mod:`.workload` (the samples a ticket or graph runs on: its dataset, or arrays / an input file / any dataset for
graphs written by other tools).
"""

from .backends import BACKENDS, BackendRun
from .run import SimulationResult, simulate

__all__ = ["BACKENDS", "BackendRun", "SimulationResult", "simulate"]
