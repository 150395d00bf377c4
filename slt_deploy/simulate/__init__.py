"""The simulate stage: run a compiled NIR graph on test data and check it against the reference.

Takes a NIR graph (and its test data, :mod:`.workload`); gives a :class:`SimulationResult` per backend:
accuracy, agreement with the reference executor (predictions, spikes per layer, first difference) and speed.

Modules: :mod:`.run` (the :func:`simulate` entry and the backend registry), :mod:`.reference` (the NIR
reference executor, spike-exact with snnTorch; the one reading of a NIR graph into torch ops),
:mod:`.lava` (Lava processes from the compiler's IR; Lava is imported only there), :mod:`.fastsim` (a
vectorized simulator bit-exact with Lava fixed point; :mod:`.fastsim_torch` is its torch twin for a GPU) and :mod:`.workload` (the test data of a ticket or graph).
"""

from .run import BACKENDS, BackendRun, SimulationResult, simulate

__all__ = ["BACKENDS", "BackendRun", "SimulationResult", "simulate"]
