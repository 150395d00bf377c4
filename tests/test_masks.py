"""Masks and pruning: exact counts, exactly which weights survive, and pruned weights staying at zero.

Layers are hand-made ``nn.Linear`` modules whose weights are set to known values, so every expected mask
below is worked out by hand (ties are broken by position: the earlier weight survives).
"""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from torch import nn

from slt_deploy.config import DataConfig, ModelConfig, TrainConfig
from slt_deploy.data import load_dataset
from slt_deploy.errors import ConfigError
from slt_deploy.search.masks import Mask, apply_mask, hamming_distance, mask_multipliers, mask_at_sparsity, prune_magnitude, random_mask
from slt_deploy.models import build_model, prunable_layers, resolve_config
from slt_deploy.search.train import make_optimizer, train_epoch


def linear(weight) -> nn.Linear:
    weight = torch.as_tensor(weight, dtype=torch.float32)
    layer = nn.Linear(weight.shape[1], weight.shape[0], bias=False)
    with torch.no_grad():
        layer.weight.copy_(weight)
    return layer


def b(rows) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.bool)


def two_layers():
    # magnitudes: a = 3 1 2 / 2 .5 1, b = 3 1 / 2 .25; ties at 3, 2 and 1, across signs and layers
    return OrderedDict(a=linear([[3.0, -1.0, 2.0], [-2.0, 0.5, 1.0]]), b=linear([[-3.0, 1.0], [2.0, 0.25]]))


# ------------------------------------------------------------------------------------ prune_magnitude

def test_global_prune_exact_count_and_survivors_with_ties():
    layers = two_layers()
    mask = prune_magnitude(layers, Mask.ones_like(layers), 0.3, "global")
    # 10 alive, round(0.3 * 10) = 3 pruned. Global ranking (stable): 3a0 3b0 2a2 2a3 2b2 1a1 1a5 | 1b1 .5a4 .25b3
    assert list(mask) == ["a", "b"]
    assert torch.equal(mask["a"], b([[1, 1, 1], [1, 0, 1]]))
    assert torch.equal(mask["b"], b([[1, 0], [1, 0]]))
    assert mask.kept() == 7 and mask.total() == 10
    assert mask.sparsity() == pytest.approx(0.3)
    assert mask.layer_sparsity() == pytest.approx({"a": 1 / 6, "b": 0.5})


def test_layerwise_prune_exact_count_per_layer_and_survivors():
    layers = two_layers()
    mask = prune_magnitude(layers, Mask.ones_like(layers), 0.3, "layerwise")
    # a: 6 alive, round(1.8) = 2 pruned: .5 (a4) and the later of the two 1s (a5)
    # b: 4 alive, round(1.2) = 1 pruned: .25 (b3)
    assert torch.equal(mask["a"], b([[1, 1, 1], [1, 0, 0]]))
    assert torch.equal(mask["b"], b([[1, 1], [1, 0]]))
    assert mask.kept() == 7


def test_global_and_layerwise_differ_when_layer_scales_differ():
    small = linear(torch.arange(1, 9, dtype=torch.float32).view(2, 4) / 100)   # .01 .. .08
    big = linear(torch.arange(1, 9, dtype=torch.float32).view(2, 4))            # 1 .. 8
    layers = OrderedDict(small=small, big=big)
    glob = prune_magnitude(layers, Mask.ones_like(layers), 0.5, "global")
    assert int(glob["small"].sum()) == 0 and int(glob["big"].sum()) == 8  # all 8 pruned from the small layer
    per = prune_magnitude(layers, Mask.ones_like(layers), 0.5, "layerwise")
    expected = b([[0, 0, 0, 0], [1, 1, 1, 1]])  # the 4 largest of each layer
    assert torch.equal(per["small"], expected) and torch.equal(per["big"], expected)


def test_prune_counts_only_survivors_and_never_revives():
    layers = two_layers()
    # a0 (|3|) and b0 (|3|) are already pruned but their weights were *not* zeroed: they must stay dead
    old = Mask(a=b([[0, 1, 1], [1, 1, 1]]), b=b([[0, 1], [1, 1]]))
    new = prune_magnitude(layers, old, 0.5, "global")
    # 8 alive, 4 pruned; alive ranking: 2a2 2a3 2b2 1a1 | 1a5 1b1 .5a4 .25b3
    assert torch.equal(new["a"], b([[0, 1, 1], [1, 0, 0]]))
    assert torch.equal(new["b"], b([[0, 0], [1, 0]]))
    for name in old:
        assert not bool((new[name] & ~old[name]).any())


def test_cumulative_sparsity_of_rounds_at_25_percent():
    # 256 = 4^4 distinct magnitudes: after k rounds exactly 256 * 0.75^k survive for k <= 4
    perm = torch.randperm(256, generator=torch.Generator().manual_seed(0))
    signs = torch.where(torch.arange(256) % 3 == 0, -1.0, 1.0)
    weights = ((perm + 1).float() * signs).view(16, 16)
    layers = OrderedDict(fc=linear(weights))
    mask = Mask.ones_like(layers)
    kept = []
    for k in range(1, 8):
        new = prune_magnitude(layers, mask, 0.25, "global")
        assert not bool((new["fc"] & ~mask["fc"]).any()), f"round {k} revived a weight"
        apply_mask(layers, new)  # as IMP does: pruned weights become exactly zero
        mask = new
        kept.append(mask.kept())
        # the survivors are exactly the `kept` largest magnitudes, i.e. 257 - kept .. 256
        surviving = set(weights.abs()[mask["fc"]].long().tolist())
        assert surviving == set(range(257 - mask.kept(), 257))
        if k <= 4:
            assert mask.sparsity() == 1 - 0.75 ** k  # exact: 0.75^k * 256 is an integer
    # each round removes round(0.25 * survivors): 64, 48, 36, 27, 20 (20.25), 15 (15.25), 12 (11.5)
    assert kept == [192, 144, 108, 81, 61, 46, 34]
    assert mask.sparsity() == pytest.approx(1 - 34 / 256)


def test_layerwise_rounds_keep_each_layer_on_its_own_schedule():
    gen = torch.Generator().manual_seed(1)
    layers = OrderedDict(a=linear(torch.randn(16, 16, generator=gen)), b=linear(torch.randn(8, 8, generator=gen)))
    mask, counts = Mask.ones_like(layers), []
    for _ in range(3):
        mask = prune_magnitude(layers, mask, 0.25, "layerwise")
        counts.append((int(mask["a"].sum()), int(mask["b"].sum())))
    assert counts == [(192, 48), (144, 36), (108, 27)]
    assert mask.layer_sparsity() == {"a": 1 - 0.75 ** 3, "b": 1 - 0.75 ** 3}


@pytest.mark.parametrize("fraction", [1.0, -0.1, 1.5])
def test_prune_rejects_fraction_out_of_range(fraction):
    layers = two_layers()
    with pytest.raises(ConfigError, match="prune fraction"):
        prune_magnitude(layers, Mask.ones_like(layers), fraction, "global")


def test_prune_rejects_unknown_scope():
    layers = two_layers()
    with pytest.raises(ConfigError, match="unknown pruning scope 'channel'"):
        prune_magnitude(layers, Mask.ones_like(layers), 0.2, "channel")


def test_prune_fraction_zero_keeps_the_mask():
    layers = two_layers()
    old = Mask(a=b([[0, 1, 1], [1, 1, 1]]), b=b([[0, 1], [1, 1]]))
    new = prune_magnitude(layers, old, 0.0, "global")
    assert all(torch.equal(new[n], old[n]) for n in old)


# ------------------------------------------------------------------------------------ mask_at_sparsity

def test_mask_at_sparsity_from_scratch_global_and_layerwise():
    layers = OrderedDict(a=linear([[1.0, -8.0, 3.0, 0.0]]), b=linear([[5.0, -2.0], [7.0, 6.0]]),
                         c=linear([[100.0]]))
    glob = mask_at_sparsity(layers, ["a", "b"], 0.5, "global")  # layer c is not asked for
    assert list(glob) == ["a", "b"]
    # 8 weights, 4 pruned globally: 0, 1, -2, 3
    assert torch.equal(glob["a"], b([[0, 1, 0, 0]]))
    assert torch.equal(glob["b"], b([[1, 0], [1, 1]]))
    per = mask_at_sparsity(layers, ["a", "b"], 0.5, "layerwise")
    assert torch.equal(per["a"], b([[0, 1, 1, 0]]))
    assert torch.equal(per["b"], b([[0, 0], [1, 1]]))
    assert mask_at_sparsity(layers, ["a", "b"], 0.0, "global").sparsity() == 0.0


# ------------------------------------------------------------------------------------------ random_mask

def test_random_mask_exact_per_layer_counts_and_reproducible():
    shapes = {"a": (4, 5), "b": (3, 3), "c": (2, 8)}
    sparsity = {"a": 0.5, "b": 1 / 3, "c": 0.9}
    m1 = random_mask(shapes, sparsity, torch.Generator().manual_seed(7))
    # kept = n - round(sparsity * n): 20 - 10, 9 - 3, 16 - round(14.4)
    assert {n: int(m.sum()) for n, m in m1.items()} == {"a": 10, "b": 6, "c": 2}
    assert {n: tuple(m.shape) for n, m in m1.items()} == shapes
    assert all(m.dtype == torch.bool for m in m1.values())
    m2 = random_mask(shapes, sparsity, torch.Generator().manual_seed(7))
    assert all(torch.equal(m1[n], m2[n]) for n in shapes)
    m3 = random_mask(shapes, sparsity, torch.Generator().manual_seed(8))
    assert any(not torch.equal(m1[n], m3[n]) for n in shapes)


# ----------------------------------------------------------------------------------- the Mask type

@pytest.mark.parametrize("bad", [torch.tensor([0, 2]), torch.tensor([0.0, 0.5]), torch.tensor([-1, 1]),
                                 torch.tensor([float("nan"), 1.0])])
def test_mask_refuses_values_other_than_0_and_1(bad):
    with pytest.raises(ValueError, match="values other than 0 and 1"):
        Mask(layer=bad)
    m = Mask()
    with pytest.raises(ValueError, match="values other than 0 and 1"):
        m["layer"] = bad
    with pytest.raises(ValueError, match="values other than 0 and 1"):
        Mask([("layer", bad)])


def test_mask_converts_0_1_values_to_bool():
    m = Mask(a=torch.tensor([[1, 0], [0, 1]]), b=torch.tensor([1.0, 1.0, 0.0]))
    assert m["a"].dtype == torch.bool and m["b"].dtype == torch.bool
    assert m.kept() == 4 and m.total() == 7
    assert m.layer_sparsity() == pytest.approx({"a": 0.5, "b": 1 / 3})


def test_hamming_distance_hand_computed():
    a = Mask(x=b([1, 1, 0, 0]), y=b([[1, 0], [0, 1]]))
    c = Mask(x=b([1, 0, 0, 1]), y=b([[1, 0], [1, 1]]))
    assert hamming_distance(a, c) == 3 / 8  # 2 differences in x, 1 in y, 8 entries
    assert hamming_distance(c, a) == 3 / 8
    assert hamming_distance(a, a) == 0.0
    with pytest.raises(ValueError, match="different layers"):
        hamming_distance(a, Mask(x=b([1, 1, 0, 0])))


def test_apply_mask_zeroes_weights_and_gradients():
    layers = two_layers()
    for layer in layers.values():
        layer.weight.grad = torch.ones_like(layer.weight)
    mask = Mask(a=b([[1, 0, 1], [0, 1, 1]]), b=b([[0, 1], [1, 1]]))
    apply_mask(layers, mask)
    assert torch.equal(layers["a"].weight.detach(), torch.tensor([[3.0, 0.0, 2.0], [0.0, 0.5, 1.0]]))
    assert torch.equal(layers["a"].weight.grad, mask["a"].float())
    assert torch.equal(layers["b"].weight.detach(), torch.tensor([[0.0, 1.0], [2.0, 0.25]]))


def test_mask_multipliers_convert_once_and_leave_out_layers_with_nothing_pruned():
    layers = two_layers()
    mask = Mask(a=b([[1, 0, 1], [0, 1, 1]]), b=b([[1, 1], [1, 1]]))
    multipliers = mask_multipliers(layers, mask)
    assert list(multipliers) == ["a"]  # b keeps every weight: multiplying it by one is skipped
    assert multipliers["a"].dtype == layers["a"].weight.dtype
    assert torch.equal(multipliers["a"], torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]]))
    before_b = layers["b"].weight.detach().clone()
    apply_mask(layers, multipliers)
    assert torch.equal(layers["a"].weight.detach(), torch.tensor([[3.0, 0.0, 2.0], [0.0, 0.5, 1.0]]))
    assert torch.equal(layers["b"].weight.detach(), before_b)


# -------------------------------------------------------------- pruned weights stay zero while training

@pytest.fixture(scope="module")
def digits_small():
    cfg = DataConfig(dataset="digits", n_train=192, n_test=10)
    return cfg, load_dataset(cfg)


@pytest.mark.parametrize("train_cfg", [
    TrainConfig(optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=0.05, batch_size=32, epochs=2),
    TrainConfig(optimizer="adam", lr=0.01, weight_decay=0.05, batch_size=32, epochs=2),
], ids=["sgd-momentum-wd", "adam-wd"])
def test_pruned_weights_stay_exactly_zero_through_optimizer_steps(digits_small, train_cfg):
    data_cfg, split = digits_small
    torch.manual_seed(0)
    model = build_model(resolve_config(ModelConfig(hidden=(32,)), split.train.input_shape, 10))
    layers = prunable_layers(model)
    mask = random_mask({n: tuple(m.weight.shape) for n, m in layers.items()}, {n: 0.5 for n in layers},
                       torch.Generator().manual_seed(3))
    assert all(bool((m.weight[~mask[n]] != 0).any()) for n, m in layers.items())  # something to keep at 0
    apply_mask(layers, mask)
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    optimizer = make_optimizer(model, train_cfg)
    for epoch in range(train_cfg.epochs):  # 6 steps per epoch
        stats = train_epoch(model, split.train, data_cfg, train_cfg, optimizer, layers, mask, epoch,
                            (0, "test"), timesteps=3, progress=False)
        assert torch.isfinite(torch.tensor(stats.loss))
    for name, layer in layers.items():
        w, keep = layer.weight.detach(), mask[name]
        assert bool((w[~keep] == 0).all()), f"{name}: a pruned weight moved off zero"
        moved = (w[keep] != before[f"body.{name}.weight"][keep])
        assert int(moved.sum()) > keep.sum() // 2, f"{name}: the surviving weights did not train"
        assert not torch.equal(layer.bias.detach(), before[f"body.{name}.bias"])
        # the optimizer state of pruned weights is zero too, so nothing pushes them later
        state = optimizer.state[layer.weight]
        for key in ("momentum_buffer", "exp_avg", "exp_avg_sq"):
            if key in state:
                assert bool((state[key][~keep] == 0).all()), f"{name}: {key} of pruned weights is not zero"
