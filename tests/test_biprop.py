"""Binary multi-prize tickets (biprop): MPSLT for the spiking MLP, MPLT for its ANN twin, through export and
the Lava compiler. Real snnTorch, NIR and onnxruntime on scikit-learn's 8x8 digits."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from slt_deploy.cli import main
from slt_deploy.compile import lower
from slt_deploy.config import DataConfig, ModelConfig, RunConfig, SearchConfig, TrainConfig
from slt_deploy.errors import ConfigError
from slt_deploy.search.masks import score_mask
from slt_deploy.models import is_neuron
from slt_deploy.search import search
from slt_deploy.search.biprop import ScoredNet
from slt_deploy.ticket import Ticket
from slt_deploy.search.train import make_optimizer, train_epoch

from slt_deploy.data import load_dataset
from slt_deploy.models import resolve_config
from slt_deploy.paths import RunPaths
from slt_deploy.search.run import SearchContext


def quiet(_line: str) -> None:
    pass


def context(config: RunConfig, root) -> SearchContext:
    split = load_dataset(config.data)
    model_config = resolve_config(config.model, split.train.input_shape, split.train.num_classes)
    return SearchContext(config, model_config, split, RunPaths(root), progress=False, echo=quiet)


def biprop_config(sparsity=0.6, scope="layerwise", spiking=True, timesteps=3, epochs=2) -> RunConfig:
    return RunConfig(model=ModelConfig(hidden=(48,), spiking=spiking),
                     data=DataConfig(dataset="digits", n_train=300, n_test=100, timesteps=timesteps),
                     train=TrainConfig(epochs=epochs, batch_size=50, optimizer="adam", lr=0.01, weight_decay=0.0),
                     search=SearchConfig(method="biprop", target_sparsity=sparsity, scope=scope))


# ---------------------------------------------------------------------------------------------- the mask

def test_score_mask_keeps_exactly_the_largest_scores_per_layer():
    scores = {"a": torch.tensor([[0.1, -0.9, 0.3], [0.5, -0.2, 0.0]]), "b": torch.tensor([2.0, -0.05, 0.4, 0.6])}
    mask = score_mask(scores, 0.5, "layerwise")
    # |a| = .1 .9 .3 .5 .2 0 -> keep 6 - round(3) = 3 largest: .9 .5 .3
    assert mask["a"].tolist() == [[False, True, True], [True, False, False]]
    assert mask["b"].tolist() == [True, False, False, True]  # keep 2 of 4: 2.0 and 0.6


def test_score_mask_global_ranks_all_layers_together():
    scores = {"a": torch.tensor([0.1, 0.2, 0.3]), "b": torch.tensor([5.0, 4.0, 0.05, 0.15])}
    mask = score_mask(scores, 4 / 7, "global")  # keep 7 - round(4) = 3: 5.0, 4.0, 0.3
    assert mask["a"].tolist() == [False, False, True] and mask["b"].tolist() == [True, True, False, False]
    with pytest.raises(ConfigError, match="sparsity 1.0"):
        score_mask(scores, 1.0, "global")


# ------------------------------------------------------------------------------------------ the training

def test_only_scores_change_and_the_mask_has_the_exact_sparsity(tmp_path):
    config = biprop_config(sparsity=0.7)
    ctx = context(config, tmp_path)
    net = ctx.new_model()
    scored = ScoredNet(net, ctx.layers(net), 0.7, "layerwise")
    before = {k: v.clone() for k, v in net.state_dict().items()}
    scores_before = {k: v.detach().clone() for k, v in scored.scores.items()}
    optimizer = make_optimizer(scored, config.train)
    train_epoch(scored, ctx.split.train, config.data, config.train, optimizer, ctx.layers(net),
                ctx.dense_mask(net), 0, (0, "t"), 3, progress=False)
    after = net.state_dict()
    for k in before:  # weights, (zeroed) biases and neuron constants: all frozen
        assert torch.equal(before[k], after[k]), k
    assert all(not torch.equal(scores_before[k], scored.scores[k]) for k in scores_before)
    assert all(float(b.abs().sum()) == 0.0 for n, b in net.named_parameters() if n.endswith("bias"))
    mask = scored.mask()
    for name, keep in mask.items():
        assert int(keep.sum()) == keep.numel() - round(0.7 * keep.numel())


def test_effective_weight_is_alpha_times_sign_on_the_mask(tmp_path):
    ctx = context(biprop_config(), tmp_path)
    net = ctx.new_model()
    scored = ScoredNet(net, ctx.layers(net), 0.6, "layerwise")
    mask = scored.mask()
    weights = scored.effective_weights()
    baked = scored.bake()
    for name in scored.layer_names:
        w0 = net.body.get_submodule(name).weight.detach()
        keep = mask[name]
        alpha = float(w0.abs()[keep].sum() / keep.sum())
        expected = torch.where(keep, torch.sign(w0) * alpha, torch.zeros(()))
        assert torch.allclose(weights[f"body.{name}.weight"].detach(), expected, rtol=1e-6, atol=0)
        w = baked.body.get_submodule(name).weight.detach()
        magnitudes = w[keep].abs().unique().tolist()
        assert len(magnitudes) == 1 and magnitudes[0] == pytest.approx(alpha, rel=1e-6)  # one magnitude
        assert torch.equal(torch.sign(w[keep]), torch.sign(w0[keep])) and int((w[~keep] != 0).sum()) == 0
    # the baked copy computes what the scored network computes
    x = torch.rand(3, 4, 1, 8, 8)
    scored.eval()
    assert torch.equal(scored(x), baked(x))


def test_mpslt_search_writes_a_binary_ticket_that_survives_nir_export_and_compiles_to_two_levels(tmp_path):
    result = search(biprop_config(sparsity=0.6), tmp_path, progress=False, echo=quiet)
    ticket = Ticket.load(result.ticket_path)
    r = ticket.record
    assert r.method == "biprop" and r.extra["binary"] is True and result.run_dir.name.startswith("biprop_mlp_")
    assert r.accuracy > 0.3  # 10 classes: far above chance after 2 epochs of score training
    for name, keep in ticket.mask.items():
        w = ticket.state[f"body.{name}.weight"]
        assert int(keep.sum()) == keep.numel() - round(0.6 * keep.numel())
        assert set(w[keep].abs().unique().tolist()) == {r.extra["alpha"][name]}  # exactly +-alpha, float32
        assert int((w[~keep] != 0).sum()) == 0

    out = tmp_path / "ticket.nir"
    assert main(["export", str(result.ticket_path), "--format", "nir", "--out", str(out)]) == 0
    import nir

    graph = nir.read(out)
    for name, alpha in r.extra["alpha"].items():
        w = np.asarray(graph.nodes[name].weight)
        assert set(np.unique(np.abs(w[w != 0])).tolist()) == {alpha}
        assert graph.nodes[name].metadata["binary"] and graph.nodes[name].metadata["alpha"] == alpha

    fixed = lower(graph, "fixed_pt")
    for projection in fixed.projections:  # on-chip layers: two mantissa levels, +-m
        levels = np.unique(np.asarray(projection.weight.todense() if hasattr(projection.weight, "todense")
                                      else projection.weight))
        nonzero = levels[levels != 0]
        assert len(nonzero) == 2 and nonzero[0] == -nonzero[1], (projection.name, levels)


def test_mplt_is_the_ann_twin_and_exports_to_onnx(tmp_path):
    result = search(biprop_config(spiking=False, timesteps=1), tmp_path, progress=False, echo=quiet)
    ticket = Ticket.load(result.ticket_path)
    assert result.run_dir.name.startswith("biprop_mlp-ann_digits_")
    model = ticket.build_model()
    assert not any(is_neuron(m) for m in model.modules())
    assert ticket.record.accuracy > 0.3 and ticket.record.extra["spiking"] is False
    out = tmp_path / "mplt.onnx"
    assert main(["export", str(result.ticket_path), "--format", "onnx", "--out", str(out)]) == 0
    from slt_deploy.exporters.onnx_format import run_onnx

    x = torch.rand(5, 1, 8, 8)
    expected = model(x.unsqueeze(0))[0].detach().numpy()
    assert np.allclose(run_onnx(out, x.numpy()), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("flag, message", [
    ("--target-sparsity=1.0", "search.target_sparsity=1.0 must be in [0, 1)"),
    ("--target-sparsity=-0.1", "search.target_sparsity=-0.1 must be in [0, 1)"),
])
def test_sparsity_out_of_range_is_one_line_and_exit_2(tmp_path, capsys, flag, message):
    code = main(["search", "--method", "biprop", flag, "--dataset", "digits", "--runs-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1 and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_an_ann_ticket_is_refused_for_nir_and_report_with_what_to_do(tmp_path, capsys):
    result = search(biprop_config(spiking=False, timesteps=1, epochs=1), tmp_path / "runs", progress=False,
                    echo=quiet)
    for argv in (["export", str(result.ticket_path), "--format", "nir", "--out", str(tmp_path / "a.nir")],
                 ["report", str(result.ticket_path), "--profiles", "cmos45", "--out", str(tmp_path / "r")]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "ANN ticket (model.spiking=false" in err and "--format onnx" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs"]
