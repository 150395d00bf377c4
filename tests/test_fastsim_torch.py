"""The torch fast simulator (issue 16) against the numpy one, bit for bit, on the numpy simulator's own stress
cases (24-bit current wrap, voltage clipping, int32 wrap, negative exponents shifted per source process,
CubaLIF, branches, spike readout); on the CPU here, on the GPU where there is one (tests marked ``gpu``).
The numpy simulator is itself checked against Lava fixed_pt in tests/test_fastsim.py, on the same cases."""

from __future__ import annotations

import importlib.util
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from slt_deploy.compile import first_mismatch
from slt_deploy.simulate import fastsim_torch
from slt_deploy.simulate.fastsim import FastSim, SimError, simulate
from slt_deploy.simulate.fastsim_torch import TorchFastSim, fast_simulator


def _load_cases():
    """The stress cases of tests/test_fastsim.py (pytest imports test files by path, not as a package)."""
    spec = importlib.util.spec_from_file_location("fastsim_cases", Path(__file__).with_name("test_fastsim.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


CASES_MODULE = _load_cases()
CASES = CASES_MODULE.CASES


def assert_bit_exact(ours, ref):
    assert first_mismatch(ours.spikes, ref.spikes) is None
    assert sorted(ours.spikes) == sorted(ref.spikes)
    for name in ref.spikes:
        assert ours.spikes[name].dtype == ref.spikes[name].dtype
        np.testing.assert_array_equal(ours.spikes[name], ref.spikes[name])
    np.testing.assert_array_equal(ours.readout_current, ref.readout_current)
    np.testing.assert_array_equal(ours.outputs, ref.outputs)
    assert ours.counts == ref.counts
    assert ours.limits == ref.limits
    assert ours.steps == ref.steps


@pytest.mark.parametrize("case", CASES, ids=lambda c: c[0])
def test_torch_backend_on_cpu_is_bit_exact_with_numpy(case):
    net, x = CASES_MODULE.case_network(case)
    ref = simulate(net, x)
    ours = TorchFastSim(net, "cpu").run(x)
    CASES_MODULE.check_exercised(net, ours, case[5])  # the stress regime is reached by this backend too
    assert_bit_exact(ours, ref)


@pytest.mark.parametrize("name", ["neg-exp-groups", "branches-chip", "lif-host"])
def test_sparse_weights_and_chunks_give_the_same_bits(name, monkeypatch):
    net, x = CASES_MODULE.case_network(CASES_MODULE.CASE[name])
    ref = simulate(net, x)
    monkeypatch.setattr(fastsim_torch, "GPU_DENSE_MAX_ENTRIES", 0)  # every block as sparse CSR
    sim = TorchFastSim(net, "cpu")
    assert all(not dense for blocks in sim._blocks.values() for _, _, dense in blocks)
    assert_bit_exact(sim.run(x, chunk=1), ref)
    quiet = sim.run(x, record_spikes=False, count=False)
    assert quiet.spikes == {} and quiet.counts == ()
    np.testing.assert_array_equal(quiet.outputs, ref.outputs)


@pytest.mark.parametrize("name", ["lif-host", "groups-bias", "random0-LIF-host", "random2-IF-host"])
def test_host_currents_on_the_device_are_fastsims(name):
    """The host layer's float64 sums follow scipy's order: the same currents to the bit (inputs x 3 put
    many of them near Loihi's range and rounding boundaries)."""
    _, kwargs, first_layer, _, t, _ = CASES_MODULE.CASE[name]
    net = CASES_MODULE.lowered(CASES_MODULE.random_graph(**kwargs), "fixed_pt", first_layer)
    flat = CASES_MODULE.inputs(kwargs["seed"], 200, t, net.input.size, first_layer).reshape(-1, net.input.size) * 3
    ours = TorchFastSim(net, "cpu")._host_currents_on_device(torch.as_tensor(flat))
    np.testing.assert_array_equal(ours.numpy(), FastSim(net)._host_currents(flat).T)


def test_refuses_floating_pt_and_features_it_does_not_implement():
    _, kwargs, first_layer, _, _, _ = CASES_MODULE.CASE["lif-host"]
    flt = CASES_MODULE.lowered(CASES_MODULE.random_graph(**kwargs), "floating_pt", first_layer)
    with pytest.raises(SimError) as info:
        TorchFastSim(flt, "cpu")
    assert str(info.value) == ("the torch fast simulator runs fixed_pt networks only, not 'floating_pt'; "
                               "floating_pt runs on the numpy FastSim")

    net, _ = CASES_MODULE.case_network(CASES_MODULE.CASE["lif-host"])
    # a population setting it does not implement (the subtract reset, added to the IR by issue 13) is refused,
    # not ignored; its default value is what this backend implements
    pop = net.populations[0]
    TorchFastSim(replace(net, populations=(replace(pop, reset="zero"), *net.populations[1:])), "cpu")
    changed = replace(net, populations=(replace(pop, reset="subtract"), *net.populations[1:]))
    with pytest.raises(SimError) as info:
        TorchFastSim(changed, "cpu")
    assert str(info.value) == (f"population {pop.name!r}: reset='subtract' is not implemented by the torch "
                               f"fast simulator; use the numpy FastSim")

    back = net.projections[1]
    recurrent = replace(net, projections=(net.projections[0], replace(back, source=back.target, target=back.source),
                                          *net.projections[2:]))
    with pytest.raises(SimError, match=r"is not feed-forward \(recurrent\)"):
        TorchFastSim(recurrent, "cpu")


def test_automatic_choice():
    net, _ = CASES_MODULE.case_network(CASES_MODULE.CASE["lif-host"])
    assert type(fast_simulator(net, 10)) is FastSim
    assert type(fast_simulator(net, 10 ** 6, device="cpu")) is FastSim
    expected = TorchFastSim if torch.cuda.is_available() else FastSim
    assert type(fast_simulator(net, 10 ** 6)) is expected
    if not torch.cuda.is_available():
        with pytest.raises(SimError, match=r"^device 'cuda': no CUDA GPU is available"):
            fast_simulator(net, 10, device="cuda")


@pytest.mark.gpu
@pytest.mark.parametrize("case", CASES, ids=lambda c: c[0])
def test_torch_backend_on_the_gpu_is_bit_exact_with_numpy(case):
    net, x = CASES_MODULE.case_network(case)
    assert_bit_exact(TorchFastSim(net, "cuda").run(x), simulate(net, x))


@pytest.mark.gpu
def test_gpu_backend_on_a_large_batch_and_sparse_weights(monkeypatch):
    net, _ = CASES_MODULE.case_network(CASES_MODULE.CASE["groups-bias"])
    rng = np.random.default_rng(5)
    x = rng.random((3000, 8, net.input.size))
    ref = simulate(net, x)
    assert_bit_exact(fast_simulator(net, len(x)).run(x), ref)
    monkeypatch.setattr(fastsim_torch, "GPU_DENSE_MAX_ENTRIES", 0)
    assert_bit_exact(TorchFastSim(net, "cuda").run(x), ref)


@pytest.mark.gpu
@pytest.mark.parametrize("name", ["lif-host", "groups-bias", "random0-LIF-host", "random2-IF-host"])
def test_host_currents_on_the_gpu_are_fastsims(name):
    _, kwargs, first_layer, _, t, _ = CASES_MODULE.CASE[name]
    net = CASES_MODULE.lowered(CASES_MODULE.random_graph(**kwargs), "fixed_pt", first_layer)
    flat = CASES_MODULE.inputs(kwargs["seed"], 2000, t, net.input.size, first_layer).reshape(-1, net.input.size) * 3
    ours = TorchFastSim(net, "cuda")._host_currents_on_device(torch.as_tensor(flat, device="cuda"))
    np.testing.assert_array_equal(ours.cpu().numpy(), FastSim(net)._host_currents(flat).T)
