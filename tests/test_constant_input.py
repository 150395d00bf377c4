"""A layer whose input is the same at every step (direct encoding) runs once per sample and feeds all T steps
(slt_deploy.models.layers.constant_prefix): logits and gradients equal the every-step run up to summation order,
activity counts equal it exactly, and a BatchNorm in training mode still sees every step."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from slt_deploy.config import ModelConfig
from slt_deploy.cost.activity import count_snntorch
from slt_deploy.data import encode
from slt_deploy.models import build_model
from slt_deploy.models.layers import constant_prefix, is_constant_in_time

T = 5


def _net(name: str, hidden, spiking: bool = True, shape=(1, 12, 12)):
    torch.manual_seed(0)
    return build_model(ModelConfig(name=name, hidden=hidden, input_shape=shape, num_classes=10, spiking=spiking))


def _direct(shape=(1, 12, 12), batch: int = 6) -> torch.Tensor:
    torch.manual_seed(1)
    return encode(torch.rand(batch, *shape), "direct", T)


class _Calls:
    """How many times each named layer of a body is called in one forward pass."""

    def __init__(self, body: nn.Module):
        self.calls = {}
        for name, m in body.named_children():
            m.register_forward_hook(lambda mod, a, o, name=name: self.calls.__setitem__(name, self.calls.get(name, 0) + 1))


def _forward_backward(model, x):
    model.zero_grad(set_to_none=True)
    logits = model(x)
    nn.functional.cross_entropy(logits.flatten(0, 1), torch.arange(x.shape[1]).repeat(T) % 10).backward()
    return logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("layerwise", [False, True])
def test_mlp_first_layer_runs_once_with_the_same_logits_and_gradients(layerwise):
    once = _net("mlp", (40, 20))
    every = copy.deepcopy(once)
    every.compute_once = False
    once.layerwise = every.layerwise = layerwise
    calls = _Calls(once.body)
    x = _direct()
    logits_once, grads_once = _forward_backward(once, x)
    assert calls.calls["flatten"] == 1 and calls.calls["fc1"] == 1  # computed once for the T = 5 steps
    assert calls.calls["fc2"] == (1 if layerwise else T) and calls.calls["fc1_lif"] == T
    logits_every, grads_every = _forward_backward(every, x)
    assert torch.allclose(logits_once, logits_every, atol=1e-6)
    for name, grad in grads_every.items():  # the fc1 gradient sums the T steps in another order
        assert torch.allclose(grads_once[name], grad, atol=1e-6, rtol=1e-5), name
    assert grads_once["body.fc1.weight"].abs().sum() > 0


def test_direct_encoding_is_a_view_known_constant_in_time():
    x = torch.rand(6, 1, 12, 12)
    seq = encode(x, "direct", T)
    assert seq.shape == (T, 6, 1, 12, 12) and seq.stride(0) == 0  # no T copies
    assert torch.equal(seq, x.unsqueeze(0).repeat(T, 1, 1, 1, 1)) and seq.data_ptr() == x.data_ptr()
    assert is_constant_in_time(seq)
    copied = seq.contiguous()  # the same values without the broadcast: the steps are compared
    assert is_constant_in_time(copied)
    copied[3, 2, 0, 5, 5] += 1e-6
    assert not is_constant_in_time(copied)
    assert not is_constant_in_time(seq[:1])  # one step: nothing to compute once


def test_the_layers_after_the_prefix_follow_the_body_and_stay_out_of_the_state_dict():
    once = _net("mlp", (40, 20))
    every = copy.deepcopy(once)
    every.compute_once = False
    keys = list(once.state_dict())
    x = _direct()
    once(x)
    once(x)
    assert list(once.state_dict()) == keys  # the built-once layers are not a submodule
    torch.manual_seed(3)
    once.body.fc2 = nn.Linear(40, 20)  # a layer swapped after the first forward is the one that runs
    every.body.fc2 = copy.deepcopy(once.body.fc2)
    assert torch.allclose(once(x), every(x), atol=1e-6)


def test_rate_coded_input_runs_every_step():
    model = _net("mlp", (40, 20))
    calls = _Calls(model.body)
    torch.manual_seed(2)
    model(encode(torch.rand(6, 1, 12, 12), "rate", T, torch.Generator().manual_seed(0)))
    assert calls.calls["fc1"] == T


def test_the_ann_twin_runs_once_and_repeats_its_logits():
    ann = _net("mlp", (40, 20), spiking=False)
    calls = _Calls(ann.body)
    x = _direct()
    logits = ann(x)
    assert set(calls.calls.values()) == {1} and logits.shape == (T, 6, 10)
    ann.compute_once = False
    assert torch.allclose(ann(x), logits, atol=1e-6)


def test_batchnorm_in_training_ends_the_prefix_and_keeps_its_running_statistics():
    once = _net("convnet", (4, 8, 16))
    every = copy.deepcopy(once)
    every.compute_once = False
    assert constant_prefix(once.body) == 1  # conv1 only: conv1_bn updates its statistics at every step
    once.eval()
    assert constant_prefix(once.body) == 3  # conv1, its BN and pool (BN uses fixed statistics in eval)
    once.train()
    x = _direct()
    logits_once, grads_once = _forward_backward(once, x)
    logits_every, grads_every = _forward_backward(every, x)
    assert torch.allclose(logits_once, logits_every, atol=1e-5)
    for name, grad in grads_every.items():
        assert torch.allclose(grads_once[name], grad, atol=1e-5, rtol=1e-4), name
    bn_once, bn_every = once.body.conv1_bn, every.body.conv1_bn
    assert torch.allclose(bn_once.running_mean, bn_every.running_mean, atol=1e-6)
    assert int(bn_once.num_batches_tracked) == int(bn_every.num_batches_tracked) == T


@pytest.mark.parametrize("name, hidden", [("mlp", (40, 20)), ("convnet", (4, 8, 16))])
def test_activity_counts_are_exactly_those_of_the_every_step_run(name, hidden):
    once = _net(name, hidden)
    every = copy.deepcopy(once)
    every.compute_once = False
    with torch.no_grad():  # weights large enough that the hidden layers fire
        for p in once.parameters():
            p.mul_(3)
        every.load_state_dict(once.state_dict())
    x = _direct()
    a, b = count_snntorch(once, x), count_snntorch(every, x)
    assert a.layers == b.layers and a.output_spikes > 0
    first = a.layers[0]
    assert first.computed_once and first.effective_macs > 0 and first.effective_acs == 0
