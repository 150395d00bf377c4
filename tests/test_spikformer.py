"""The spikformer model (Spikformer with ConvPEP, MultiSp levels 1 and 3) and its export behaviour.

Real snnTorch, onnxruntime and the scikit-learn digits; tiny widths so the whole file runs in seconds.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import snntorch as snn
import torch

from slt_deploy.cli import main
from slt_deploy.config import DataConfig, ModelConfig
from slt_deploy.data import load_dataset
from slt_deploy.errors import ConfigError
from slt_deploy.exporters.onnx_format import ann_twin, onnx_macs, run_onnx
from slt_deploy.search.masks import Mask
from slt_deploy.models import build_model, prunable_layers, resolve_config
from slt_deploy.models.spikformer import convpep_layers
from slt_deploy.ticket import Ticket, TicketRecord
from slt_deploy.search.train import time_loss

TINY = (16, 1, 2)   # embed_dim, depth, heads
MNIST = (1, 28, 28)  # 7 x 7 = 49 patches
T = 4


def spikformer(shape=MNIST, seed: int = 0, **model) -> torch.nn.Module:
    torch.manual_seed(seed)
    cfg = resolve_config(ModelConfig(name="spikformer", hidden=model.pop("hidden", TINY), **model), shape, 10)
    return build_model(cfg)


def images(n: int, shape=MNIST, seed: int = 1) -> torch.Tensor:
    return torch.rand((n, *shape), generator=torch.Generator().manual_seed(seed))


def direct(x: torch.Tensor, steps: int = T) -> torch.Tensor:
    return x.unsqueeze(0).expand(steps, *x.shape)


def warm_up(model, x: torch.Tensor, sequences: int = 2) -> None:
    """A few training-mode sequences: BatchNorm statistics and the patch activity score see data."""
    model.train()
    with torch.no_grad():
        for _ in range(sequences):
            model(direct(x))
    model.eval()
    model.reset_state()  # fresh leaf membranes, so the model can be deep-copied by the exporters


def pep_outputs(model, x_seq: torch.Tensor) -> torch.Tensor:
    outs = []
    handle = model.body.pep.register_forward_hook(lambda module, args, out: outs.append(out.detach()))
    try:
        with torch.no_grad():
            model(x_seq)
    finally:
        handle.remove()
    return torch.stack(outs)


@pytest.fixture(scope="module")
def digits():
    split = load_dataset(DataConfig(dataset="digits", n_train=64, n_test=16))
    x = torch.as_tensor(split.train.images[:64], dtype=torch.float32) / 255.0
    return x, torch.as_tensor(split.train.labels[:64])


# ----------------------------------------------------------------------------------------------- model


def test_output_shape_and_training_reduces_the_loss(digits):
    x, y = digits
    model = spikformer(tuple(x.shape[1:]), patch_keep=0.5)   # 8x8 digits: 4 patches, 2 kept
    assert model(direct(x[:5])).shape == (T, 5, 10)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    model.train()
    losses = []
    for _ in range(12):
        loss = time_loss(model(direct(x)), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0], losses


def test_patch_keep_selects_exactly_the_top_patches_and_dropped_ones_do_not_matter():
    model = spikformer(patch_keep=0.5)
    select = model.body.select
    assert (select.n_patches, select.n_keep) == (49, 24)   # round(24.5) = 24: Python's round, half to even
    x = images(8)
    warm_up(model, x)
    top = torch.argsort(select.activity, descending=True, stable=True)[:24]
    assert select.kept.tolist() == sorted(top.tolist())
    tokens = []
    model.body.blocks[0].register_forward_pre_hook(lambda module, args: tokens.append(args[0].shape))
    with torch.no_grad():
        reference = model(direct(x))
    assert set(tokens) == {(8, 24, 16)}

    def perturbed(positions):
        def hook(module, args, out):
            out = out.clone().flatten(2)
            noise = torch.rand(out[:, :, positions].shape, generator=torch.Generator().manual_seed(2))
            out[:, :, positions] += 5.0 * noise
            return out.view(-1, 16, 7, 7)
        handle = model.body.pep.register_forward_hook(hook)
        try:
            with torch.no_grad():
                return model(direct(x))
        finally:
            handle.remove()

    dropped = sorted(set(range(49)) - set(select.kept.tolist()))
    assert len(dropped) == 25
    assert torch.equal(perturbed(dropped), reference)
    assert not torch.equal(perturbed(select.kept.tolist()[:3]), reference)


def test_kept_patches_are_fixed_within_a_sequence_and_follow_the_data_between_sequences():
    model = spikformer(patch_keep=0.3).train()
    seen = []
    model.body.select.register_forward_pre_hook(
        lambda module, args: seen.append((module.kept.clone(), module.activity.clone())))
    x = images(6)
    with torch.no_grad():
        model(direct(x))
        first = len(seen)
        model(direct(images(6, seed=5)))
    assert first == T and len(seen) == 2 * T
    for start in (0, T):  # one update, at the first step of each sequence; the same set at every step
        assert all(torch.equal(seen[start][0], kept) and torch.equal(seen[start][1], act)
                   for kept, act in seen[start:start + T])
    assert not torch.equal(seen[0][1], seen[T][1])
    assert (seen[0][1] > 0).any()  # the first sequence already ranks by its data, not by position


def test_patch_keep_one_is_exactly_the_dense_model():
    model = spikformer(patch_keep=1.0)
    x = images(4)
    warm_up(model, x)
    body = model.body
    assert body.select.n_keep == 49

    def dense_step(x_t):  # the body without any patch selection
        tokens = body.pep(x_t).flatten(2).transpose(1, 2)
        for block in body.blocks:
            tokens = block(tokens)
        return body.readout(tokens.mean(1))

    with torch.no_grad():
        got = model(direct(x))
        model.reset_state()
        expected = torch.stack([dense_step(x_t) for x_t in direct(x)])
    assert torch.equal(got, expected)


@pytest.mark.parametrize("spiking", [True, False])
def test_binary_activations_make_the_convpep_output_two_level(spiking):
    x = direct(images(16))
    plain = spikformer(spiking=spiking).train()
    binary = spikformer(spiking=spiking, binary_activations=True).train()  # same seed: the same weights
    levels = pep_outputs(binary, x).unique()
    assert levels.tolist() == [0.0, 1.0]
    free = pep_outputs(plain, x).unique()
    if spiking:
        assert free.tolist() == [0.0, 1.0, 2.0]  # spikes + position spikes
    else:
        assert len(free) > 100
    # the straight-through gradient reaches the ConvPEP through the step
    binary.zero_grad()
    time_loss(binary(x), torch.arange(16) % 10).backward()
    assert binary.body.pep.conv1.weight.grad.abs().sum() > 0


def test_ann_twin_has_no_snntorch_neurons_and_repeats_over_time():
    ann = spikformer(spiking=False, binary_activations=True, patch_keep=0.5)
    assert not [m for m in ann.modules() if isinstance(m, snn.SpikingNeuron)]
    assert sum(isinstance(m, torch.nn.ReLU) for m in ann.modules()) == 4 + 4 + 2 + 1  # pep, q/k/v/proj, mlp, attn
    x = images(3)
    warm_up(ann, x)
    out = ann(direct(x))
    assert all(torch.equal(out[0], out[t]) for t in range(T))
    snn_model = spikformer(patch_keep=0.5)
    twin = ann_twin(snn_model)
    assert not [m for m in twin.modules() if isinstance(m, snn.SpikingNeuron)]
    assert [n for n, _ in twin.body.named_modules()] == [n for n, _ in snn_model.body.named_modules()]


def test_convpep_layers_name_the_scorable_convs():
    model = spikformer()
    names = ("pep.conv1", "pep.conv2", "pep.conv3", "pep.rpe")
    assert convpep_layers(model) == convpep_layers(model.body) == convpep_layers(model.config) == names
    assert list(prunable_layers(model, names)) == list(names)
    with pytest.raises(ConfigError, match="'mlp' has no ConvPEP"):
        convpep_layers(ModelConfig(name="mlp"))


def test_bad_settings_are_one_line_config_errors():
    with pytest.raises(ConfigError, match=r"^model.patch_keep=0.01 keeps 0 of the 49 patches of a 28x28 input; "
                                          r"use model.patch_keep >= 0.02041 \(one patch\)$"):
        spikformer(patch_keep=0.01)
    with pytest.raises(ConfigError, match=r"^model.input_shape=\(1, 30, 28\): .* multiples of 4 .*got 30x28$"):
        spikformer((1, 30, 28))
    with pytest.raises(ConfigError, match=r"embed_dim 18 must be divisible by 4 .* and by the 2 heads"):
        spikformer(hidden=(18, 1, 2))


def test_cli_search_refuses_a_patch_keep_that_keeps_nothing(tmp_path, capsys):
    runs = tmp_path / "runs"
    code = main(["search", "--model", "spikformer", "--hidden", "16,1,2", "--dataset", "digits",
                 "--patch-keep", "0.1", "--method", "dense", "--epochs", "1", "--runs-dir", str(runs),
                 "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "model.patch_keep=0.1 keeps 0 of the 4 patches of a 8x8 input" in err
    assert not runs.exists()


# ----------------------------------------------------------------------------------------------- export


@pytest.fixture(scope="module")
def ticket_path(tmp_path_factory) -> Path:
    """A spikformer ticket with both MultiSp levels on, its patch score and BatchNorm trained on data."""
    model = spikformer(patch_keep=0.5, binary_activations=True)
    warm_up(model, images(8))
    ticket = Ticket.from_model(model, Mask.ones_like(prunable_layers(model)),
                               TicketRecord(model=model.config, method="dense", timesteps=T))
    path = tmp_path_factory.mktemp("ticket") / "spikformer.ticket"
    ticket.save(path)
    return path


@pytest.mark.parametrize("fmt", ["nir", "netx"])
def test_nir_and_netx_export_refuse_the_attention_naming_what_can_be_deployed(ticket_path, fmt, tmp_path, capsys):
    out = tmp_path / f"model.{fmt}"
    code = main(["export", str(ticket_path), "--format", fmt, "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 2 and captured.out == ""
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err
    for part in ("spiking self-attention", "product of two spike tensors", "no NIR or Lava primitive",
                 "pep.conv1, pep.conv2, pep.conv3, pep.rpe", "--format onnx", "--format onnx-snn"):
        assert part in captured.err
    assert list(tmp_path.iterdir()) == []


def test_onnx_exports_match_torch(ticket_path, tmp_path, capsys):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.onnx's tracer warnings are about its own internals
        assert main(["export", str(ticket_path), "--format", "onnx", "--out", str(tmp_path / "ann.onnx")]) == 0
        assert main(["export", str(ticket_path), "--format", "onnx-snn", "--out", str(tmp_path / "snn.onnx")]) == 0
    ticket = Ticket.load(ticket_path)
    model = ticket.build_model()
    assert model.body.select.kept.tolist() == Ticket.load(ticket_path).build_model().body.select.kept.tolist()
    x = images(5, seed=7)
    with torch.no_grad():
        expected_snn = model(direct(x)).numpy()
        expected_ann = ann_twin(ticket)(x).numpy()
    np.testing.assert_allclose(run_onnx(tmp_path / "snn.onnx", direct(x).numpy()), expected_snn, atol=1e-5)
    np.testing.assert_allclose(run_onnx(tmp_path / "ann.onnx", x.numpy()), expected_ann,
                               atol=1e-5 * max(1.0, float(np.abs(expected_ann).max())))
    # attention MACs: per head q @ k^T (N x N x d) and attn @ v (N x d x N), N = 24 kept patches, d = 8
    attention = [layer for layer in onnx_macs(tmp_path / "ann.onnx") if layer.weight_count == 0]
    assert len(attention) == 4 and sum(layer.dense_macs for layer in attention) == 2 * 2 * 24 * 24 * 8


def test_report_refuses_the_transformer_with_the_same_advice(ticket_path, tmp_path, capsys):
    code = main(["report", str(ticket_path), "--profiles", "cmos45", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "spiking self-attention" in err and "pep.conv1" in err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("option, value", [("patch_keep", 0.5), ("binary_activations", True)])
def test_multisp_settings_on_another_model_are_an_error_not_ignored(option, value):
    from slt_deploy.config import ModelConfig
    from slt_deploy.errors import ConfigError
    from slt_deploy.models import resolve_config

    with pytest.raises(ConfigError, match=rf"model.{option}={value!r} applies to spikformer, not to model mlp"):
        resolve_config(ModelConfig(name="mlp", **{option: value}), (1, 8, 8), 10)
