"""Lava processes of this project's own: LIF with reset by subtraction (snnTorch's default), and the sample gate
of recurrent paths (:func:`sample_gate_classes`).

Lava 0.10's LIF models only reset to zero. :class:`LIFSubtractReset` is Lava's ``LIFReset`` (same ports,
variables and periodic per-sample state reset) plus one variable, ``s_prev``, the spikes of the previous step;
its process models subclass Lava's own ``LIFReset`` models and change only the reset, so everything else stays
Lava's arithmetic. At each step the threshold is subtracted, undecayed, from the neurons that spiked at the
previous step, as snnTorch does (``mem = beta*mem + input - threshold*reset``)::

    floating_pt:  v = v*(1 - dv) + u + bias_mant - vth*s_prev
    fixed_pt:     v = clip(trunc0(v*(4096 - dv)/4096) + u + (bias_mant << bias_exp) - (vth << 6)*s_prev)

(fixed point: the subtraction joins the bias inside Lava's clip, bit-accurate Loihi arithmetic otherwise), then
``s = v > vth`` with no zeroing. The fast simulator (:mod:`.fastsim`) implements the same equations and is
checked bit for bit against these models. Loihi 2's programmable neurons can run this; Loihi 1's fixed
compartment cannot (see the ``reset_modes`` of the hardware profiles).

Lava is imported only when :func:`subtract_reset_classes` is first called.
"""

from __future__ import annotations

from typing import Dict, Tuple

import numpy as np

_CLASSES = None


def subtract_reset_classes() -> Tuple[type, Dict[str, type]]:
    """(the process class, {"floating_pt": float model, "fixed_pt": bit-accurate model})."""
    global _CLASSES
    if _CLASSES is None:
        from lava.magma.core.decorator import implements, requires, tag
        from lava.magma.core.model.py.type import LavaPyType
        from lava.magma.core.process.variable import Var
        from lava.magma.core.resources import CPU
        from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol
        from lava.proc.lif.models import PyLifResetModelBitAcc, PyLifResetModelFloat
        from lava.proc.lif.process import LIFReset

        class LIFSubtractReset(LIFReset):
            """Lava's LIFReset with reset by subtraction of the threshold at the step after a spike."""

            def __init__(self, **kwargs):
                super().__init__(**kwargs)
                self.s_prev = Var(shape=kwargs["shape"], init=0)

        def _periodic_reset(model) -> None:
            if (model.time_step % model.reset_interval) == model.reset_offset:
                model.s_prev[:] = 0  # Lava's run_spk clears u and v at the same step

        @implements(proc=LIFSubtractReset, protocol=LoihiProtocol)
        @requires(CPU)
        @tag("floating_pt")
        class PyLifSubtractResetModelFloat(PyLifResetModelFloat):
            # Lava's @implements refuses a subclass of a model that implements another process; the link to
            # LIFReset is inherited, not meant: cleared here so the decorator links this model to its own process
            implements_process = None
            s_prev: np.ndarray = LavaPyType(np.ndarray, float)

            def subthr_dynamics(self, activation_in: np.ndarray):
                _periodic_reset(self)
                super().subthr_dynamics(activation_in)
                self.v[:] = self.v - self.vth * self.s_prev

            def reset_voltage(self, spike_vector: np.ndarray):
                self.s_prev[:] = spike_vector  # no zeroing: the threshold is subtracted at the next step

        @implements(proc=LIFSubtractReset, protocol=LoihiProtocol)
        @requires(CPU)
        @tag("bit_accurate_loihi", "fixed_pt")
        class PyLifSubtractResetModelBitAcc(PyLifResetModelBitAcc):
            implements_process = None  # as above
            s_prev: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=1)

            def subthr_dynamics(self, activation_in: np.ndarray):
                _periodic_reset(self)
                # Lava's scale_bias() set effective_bias for this step; the subtraction joins it inside the clip
                self.effective_bias = self.effective_bias - self.effective_vth * self.s_prev.astype(np.int32)
                super().subthr_dynamics(activation_in)

            def reset_voltage(self, spike_vector: np.ndarray):
                self.s_prev[:] = spike_vector != 0

        _CLASSES = (LIFSubtractReset, {"floating_pt": PyLifSubtractResetModelFloat,
                                       "fixed_pt": PyLifSubtractResetModelBitAcc})
    return _CLASSES


_GATE = None


def sample_gate_classes() -> Tuple[type, Dict[str, type]]:
    """(SampleGate, {"floating_pt": model, "fixed_pt": model}): a pass-through on a recurrent path that sends zeros
    at the last step of every sample, so no spike of one sample reaches the next one through the recurrent
    synapses (the populations' state is reset there; the synapse buffers are not)."""
    global _GATE
    if _GATE is None:
        from lava.magma.core.decorator import implements, requires, tag
        from lava.magma.core.model.py.model import PyLoihiProcessModel
        from lava.magma.core.model.py.ports import PyInPort, PyOutPort
        from lava.magma.core.model.py.type import LavaPyType
        from lava.magma.core.process.ports.ports import InPort, OutPort
        from lava.magma.core.process.process import AbstractProcess
        from lava.magma.core.resources import CPU
        from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

        class SampleGate(AbstractProcess):
            """Forwards ``s_in`` to ``s_out``, except zeros at the steps with ``(tau - lag) % interval == 0``."""

            def __init__(self, *, shape, interval: int, lag: int, name=None):
                super().__init__(shape=shape, interval=interval, lag=lag, name=name)
                self.s_in = InPort(shape=shape)
                self.s_out = OutPort(shape=shape)

        class _GateModel(PyLoihiProcessModel):
            def run_spk(self):
                data = self.s_in.recv()
                p = self.proc_params
                if (self.time_step - p["lag"]) % p["interval"] == 0:
                    data = np.zeros_like(data)
                self.s_out.send(data)

        @implements(proc=SampleGate, protocol=LoihiProtocol)
        @requires(CPU)
        @tag("floating_pt")
        class PySampleGateFloat(_GateModel):
            s_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
            s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)

        @implements(proc=SampleGate, protocol=LoihiProtocol)
        @requires(CPU)
        @tag("fixed_pt")
        class PySampleGateFixed(_GateModel):
            s_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
            s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)

        _GATE = (SampleGate, {"floating_pt": PySampleGateFloat, "fixed_pt": PySampleGateFixed})
    return _GATE
