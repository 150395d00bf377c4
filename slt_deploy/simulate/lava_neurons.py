"""Lava processes of this project's own: LIF with reset by subtraction (snnTorch's default) and with a current
bias (NIR's CubaLIF fed through a bias), and the sample gate of recurrent paths (:func:`sample_gate_classes`).

Lava 0.10's LIF models only reset to zero and add their bias to the voltage. :class:`ProjectLIF` is Lava's
``LIFReset`` (same ports, variables and periodic per-sample state reset) plus two variables: ``s_prev``, the
spikes of the previous step, and ``current_bias``, added to the synaptic input ``a_in`` before Lava's own update
(so it accumulates in the current ``u``, where NIR's CubaLIF puts the bias of the layer before it). Its process
models subclass Lava's own ``LIFReset`` models and change only these two things, so everything else stays Lava's
arithmetic::

    floating_pt:  u = u*(1 - du) + (a_in + current_bias)
                  v = v*(1 - dv) + u + bias_mant - vth*s_prev                     (subtract reset)
    fixed_pt:     u = wrap24(trunc0(u*(4096 - (du + 1))/4096) + ((a_in + current_bias) << 6))
                  v = clip(trunc0(v*(4096 - dv)/4096) + u + (bias_mant << bias_exp) - (vth << 6)*s_prev)

(fixed point: the subtraction joins the bias inside Lava's clip, bit-accurate Loihi arithmetic otherwise), then
``s = v > vth`` with no zeroing for the subtract reset, Lava's zeroing otherwise. The fast simulator
(:mod:`.fastsim`) implements the same equations and is checked bit for bit against these models. Loihi 2's
programmable neurons can run this; Loihi 1's fixed compartment cannot (see the ``reset_modes`` of the hardware
profiles).

Lava is imported only when :func:`project_lif_classes` is first called.
"""

from __future__ import annotations

from typing import Dict, Tuple

import numpy as np

_CLASSES = None


def project_lif_classes() -> Tuple[type, Dict[str, type]]:
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

        class ProjectLIF(LIFReset):
            """Lava's LIFReset with a current bias and, with ``subtract=True``, reset by subtraction of the
            threshold at the step after a spike."""

            def __init__(self, *, subtract: bool = False, current_bias=0, **kwargs):
                super().__init__(**kwargs)
                self.proc_params["subtract"] = bool(subtract)
                self.s_prev = Var(shape=kwargs["shape"], init=0)
                self.current_bias = Var(shape=kwargs["shape"], init=current_bias)

        def _periodic_reset(model) -> None:
            if (model.time_step % model.reset_interval) == model.reset_offset:
                model.s_prev[:] = 0  # Lava's run_spk clears u and v at the same step

        @implements(proc=ProjectLIF, protocol=LoihiProtocol)
        @requires(CPU)
        @tag("floating_pt")
        class PyProjectLIFModelFloat(PyLifResetModelFloat):
            # Lava's @implements refuses a subclass of a model that implements another process; the link to
            # LIFReset is inherited, not meant: cleared here so the decorator links this model to its own process
            implements_process = None
            s_prev: np.ndarray = LavaPyType(np.ndarray, float)
            current_bias: np.ndarray = LavaPyType(np.ndarray, float)

            def subthr_dynamics(self, activation_in: np.ndarray):
                _periodic_reset(self)
                super().subthr_dynamics(activation_in + self.current_bias)
                if self.proc_params["subtract"]:
                    self.v[:] = self.v - self.vth * self.s_prev

            def reset_voltage(self, spike_vector: np.ndarray):
                if self.proc_params["subtract"]:
                    self.s_prev[:] = spike_vector  # no zeroing: the threshold is subtracted at the next step
                else:
                    super().reset_voltage(spike_vector)

        @implements(proc=ProjectLIF, protocol=LoihiProtocol)
        @requires(CPU)
        @tag("bit_accurate_loihi", "fixed_pt")
        class PyProjectLIFModelBitAcc(PyLifResetModelBitAcc):
            implements_process = None  # as above
            s_prev: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=1)
            current_bias: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)

            def subthr_dynamics(self, activation_in: np.ndarray):
                _periodic_reset(self)
                if self.proc_params["subtract"]:
                    # Lava's scale_bias() set effective_bias for this step; the subtraction joins it inside the clip
                    self.effective_bias = self.effective_bias - self.effective_vth * self.s_prev.astype(np.int32)
                # a_in arrives as Lava's int32 channel; the bias joins it before the << 6 (int32 wrap as Lava's)
                super().subthr_dynamics((activation_in.astype(np.int64) + self.current_bias).astype(np.int32))

            def reset_voltage(self, spike_vector: np.ndarray):
                if self.proc_params["subtract"]:
                    self.s_prev[:] = spike_vector != 0
                else:
                    super().reset_voltage(spike_vector)

        _CLASSES = (ProjectLIF, {"floating_pt": PyProjectLIFModelFloat, "fixed_pt": PyProjectLIFModelBitAcc})
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
