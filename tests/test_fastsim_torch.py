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
import scipy.sparse as sp
import torch

from slt_deploy.compile import first_mismatch
from slt_deploy.compile.errors import CompileError
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


@pytest.mark.parametrize("name", ["lif-host", "random2-IF-host"])
def test_host_currents_summed_in_order_where_the_bound_cannot_decide(name, monkeypatch):
    """Every current near a half-integer (here: all, by a huge safety factor) is recomputed in scipy's order:
    the same bits, and the ordered sum really ran on every sample; with the real bound on these inputs, no
    sample needs it."""
    _, kwargs, first_layer, _, t, _ = CASES_MODULE.CASE[name]
    net = CASES_MODULE.lowered(CASES_MODULE.random_graph(**kwargs), "fixed_pt", first_layer)
    flat = CASES_MODULE.inputs(kwargs["seed"], 100, t, net.input.size, first_layer).reshape(-1, net.input.size) * 3
    ref = FastSim(net)._host_currents(flat).T
    sim = TorchFastSim(net, "cpu")
    redone = []
    ordered = sim._host_currents_ordered
    monkeypatch.setattr(sim, "_host_currents_ordered", lambda f: redone.append(len(f)) or ordered(f))
    np.testing.assert_array_equal(sim._host_currents_on_device(torch.as_tensor(flat)).numpy(), ref)
    assert redone == []
    monkeypatch.setattr(fastsim_torch, "HOST_BOUND_SAFETY", 1e30)
    np.testing.assert_array_equal(sim._host_currents_on_device(torch.as_tensor(flat)).numpy(), ref)
    assert redone == [len(flat)]


def test_a_current_exactly_halfway_is_summed_in_order(monkeypatch):
    """A scaled current of exactly k + 1/2 (round half to even decides it) is always recomputed in order."""
    net, _ = CASES_MODULE.case_network(CASES_MODULE.CASE["lif-host"])
    sim = TorchFastSim(net, "cpu")
    values, columns, bias, scale = sim._host
    # host matrix: one weight 0.25, the first stored entry of row 0; no bias; scale 2 (all exact in binary)
    w = sim.host_weight
    data = np.zeros_like(w.data)
    data[0] = 0.25
    one = sp.csr_matrix((data, w.indices, w.indptr), shape=w.shape)
    first = torch.zeros_like(values)
    first[0, 0] = 0.25  # (k-th stored entry, row) table of the ordered sum
    sim._host = (first, columns, torch.zeros_like(bias), torch.full_like(scale, 2.0))
    sim._host_product = (sim._product_matrix(one.data, one), sim._product_matrix(np.abs(one.data), one),
                         sim._host_product[2])
    flat = np.zeros((2, net.input.size))
    flat[0, w.indices[0]] = 5.0   # 2 * 0.25 * 5 = 2.5 -> 2 (to even)
    flat[1, w.indices[0]] = 7.0   # 3.5 -> 4
    redone = []
    ordered = sim._host_currents_ordered
    monkeypatch.setattr(sim, "_host_currents_ordered", lambda f: redone.append(len(f)) or ordered(f))
    out = sim._host_currents_on_device(torch.as_tensor(flat)).numpy()
    assert out[:, 0].tolist() == [2.0, 4.0] and redone == [2]


def test_input_sent_as_it_comes_and_checked_on_the_device():
    """float32 arrays and torch tensors give the bits of their float64 values; bad input raises the numpy
    simulator's (and so the Lava backend's) errors; the lowered network is left as it was."""
    net, x = CASES_MODULE.case_network(CASES_MODULE.CASE["lif-host"])
    weight = net.host.weight.copy()
    sim = TorchFastSim(net, "cpu")
    assert np.array_equal(net.host.weight.indices, weight.indices)  # stored order (scipy's sum order) kept
    assert np.array_equal(net.host.weight.data, weight.data)
    x32 = x.astype(np.float32)
    ref = simulate(net, x32.astype(np.float64))
    assert_bit_exact(sim.run(x32), ref)
    assert_bit_exact(sim.run(torch.as_tensor(x32)), ref)
    bad = x.copy()
    bad[1, 2, 3] = np.nan
    for wrong in (bad, x[..., :-1], x[:0]):
        with pytest.raises(CompileError) as numpy_error:
            simulate(net, wrong)
        with pytest.raises(CompileError) as torch_error:
            sim.run(torch.as_tensor(wrong))
        assert str(torch_error.value) == str(numpy_error.value)
    loud = x.copy()
    loud[2, 3] *= 1e6
    with pytest.raises(CompileError, match=r"sample 2, step 3"):
        sim.run(loud, chunk=1)
    chip, xc = CASES_MODULE.case_network(CASES_MODULE.CASE["cubalif-chip"])
    with pytest.raises(CompileError, match="binary spike input"):
        TorchFastSim(chip, "cpu").run(xc * 0.5)


def test_refuses_floating_pt_and_features_it_does_not_implement():
    _, kwargs, first_layer, _, _, _ = CASES_MODULE.CASE["lif-host"]
    flt = CASES_MODULE.lowered(CASES_MODULE.random_graph(**kwargs), "floating_pt", first_layer)
    with pytest.raises(SimError) as info:
        TorchFastSim(flt, "cpu")
    assert str(info.value) == ("the torch fast simulator runs fixed_pt networks only, not 'floating_pt'; "
                               "floating_pt runs on the numpy FastSim")

    net, _ = CASES_MODULE.case_network(CASES_MODULE.CASE["lif-host"])
    # a projection setting it does not implement (a recurrent projection, issue 13) is refused, not ignored;
    # its default value is what this backend implements
    proj = net.projections[0]
    TorchFastSim(replace(net, projections=(replace(proj, recurrent=False), *net.projections[1:])), "cpu")
    changed = replace(net, projections=(replace(proj, recurrent=True), *net.projections[1:]))
    with pytest.raises(SimError) as info:
        TorchFastSim(changed, "cpu")
    assert str(info.value) == (f"projection {proj.name!r}: recurrent=True is not implemented by the torch "
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
