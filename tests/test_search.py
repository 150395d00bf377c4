"""The search stage on real snnTorch networks: rewinding, Early-Bird, Early-Time, resuming, the ticket file.

Everything trains a tiny MLP on scikit-learn's 8x8 digits; the real CLI runs as a subprocess where a kill
must be real (SIGKILL).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from slt_deploy.config import DataConfig, ModelConfig, RunConfig, SearchConfig, TrainConfig
from slt_deploy.data import load_dataset
from slt_deploy.errors import TicketError
from slt_deploy.search.masks import Mask, apply_mask, prune_magnitude
from slt_deploy.models import resolve_config
from slt_deploy.paths import RunPaths
from slt_deploy.search import search
from slt_deploy.search import run as run_module
from slt_deploy.search.early_bird import EarlyBirdWatch, eb_converged
from slt_deploy.search.early_time import accumulated_kl, choose_t_early
from slt_deploy.search.run import SearchContext, load_state
from slt_deploy.ticket import FORMAT, Ticket, TicketRecord


def quiet(_line: str) -> None:
    pass


def small_config(**search) -> RunConfig:
    return RunConfig(model=ModelConfig(hidden=(32,)), data=DataConfig(dataset="digits", n_train=300, n_test=100),
                     train=TrainConfig(epochs=3, batch_size=50),
                     search=SearchConfig(**{"method": "imp", "rounds": 1, "rewind_epoch": 1, **search}))


def context(config: RunConfig, root: Path) -> SearchContext:
    """A SearchContext over the same data and model as a search with ``config``, writing under ``root``."""
    split = load_dataset(config.data)
    model_config = resolve_config(config.model, split.train.input_shape, split.train.num_classes)
    return SearchContext(config, model_config, split, RunPaths(root), progress=False, echo=quiet)


def assert_same_tensors(a: dict, b: dict) -> None:
    assert sorted(a) == sorted(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), f"tensor {k} differs"


def state_of(model) -> dict:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}  # trained on the GPU if any


@pytest.fixture(scope="module")
def imp_run(tmp_path_factory):
    """A real IMP search: dense round 0 (3 epochs, rewind point after epoch 1), then one pruning round."""
    config = small_config()
    result = search(config, tmp_path_factory.mktemp("runs"), progress=False, echo=quiet)
    return config, result


# ---------------------------------------------------------------------------------------------- rewinding

def test_run_directory_is_named_and_filled(imp_run):
    config, result = imp_run
    paths = RunPaths(result.run_dir)
    assert result.run_dir.name == config.run_name() == f"imp_mlp_digits_{config.digest()}"
    assert json.loads(paths.config.read_text()) == config.to_dict(runtime=False)  # no device in it
    lines = [json.loads(x) for x in paths.log.read_text().splitlines()]
    assert [x["round"] for x in lines] == [0, 1]
    assert paths.ticket.is_file() and paths.round_ticket(0).is_file() and paths.round_ticket(1).is_file()
    assert_same_tensors(Ticket.load(paths.ticket).state, Ticket.load(paths.round_ticket(1)).state)


def test_rewind_point_is_the_dense_state_after_rewind_epoch(imp_run, tmp_path):
    config, result = imp_run
    ctx = context(config, tmp_path / "replay")
    rewound = ctx.new_model()
    meta, _ = load_state(RunPaths(result.run_dir).rewind_state, rewound)
    assert meta.epoch == 1
    # replay one dense epoch of round 0 independently: the rewind point is exactly that state
    model = ctx.new_model()
    ctx.train_phase("round_00", model, ctx.dense_mask(model), config.data.timesteps, 0, last_epoch=1)
    assert_same_tensors(state_of(rewound), state_of(model))
    assert not torch.equal(rewound.body.fc1.weight, ctx.new_model().body.fc1.weight)  # it did train
    final_dense = Ticket.load(RunPaths(result.run_dir).round_ticket(0)).state["body.fc1.weight"]
    assert not torch.equal(rewound.body.fc1.weight.detach(), final_dense)


def test_round_one_restarts_from_the_rewind_point_with_the_mask(imp_run, tmp_path):
    config, result = imp_run
    paths = RunPaths(result.run_dir)
    round0, round1 = Ticket.load(paths.round_ticket(0)), Ticket.load(paths.round_ticket(1))
    ctx = context(config, tmp_path / "replay")

    # the round-1 mask: 25 % of the trained dense weights, global magnitude (2368 weights -> 592 pruned)
    expected = prune_magnitude(ctx.layers(round0.build_model()), Mask.ones_like(ctx.layers(ctx.new_model())),
                               0.25, "global")
    assert all(torch.equal(round1.mask[n], expected[n]) for n in expected)
    assert round1.mask.total() == 64 * 32 + 32 * 10 and round1.mask.kept() == 2368 - 592

    # rewind + mask: survivors hold their rewind-point values, pruned weights are zero, biases rewound too
    rewind_values = load_file(str(paths.rewind_state))
    model = ctx.new_model()
    assert load_state(paths.rewind_state, model)[0].epoch == 1
    layers = ctx.layers(model)
    apply_mask(layers, round1.mask)
    for name, layer in layers.items():
        keep, w = round1.mask[name], layer.weight.detach()
        w0 = rewind_values[f"model/body.{name}.weight"]
        assert torch.equal(w[keep], w0[keep])
        assert bool((w[~keep] == 0).all())
        assert bool((w0[~keep] != 0).any())
        assert torch.equal(layer.bias.detach(), rewind_values[f"model/body.{name}.bias"])

    # training the remaining epochs from there reproduces the round-1 ticket bit for bit
    ctx.train_phase("round_01", model, round1.mask, config.data.timesteps, first_epoch=1)
    assert_same_tensors(state_of(model), round1.state)
    for name, keep in round1.mask.items():
        assert bool((round1.state[f"body.{name}.weight"][~keep] == 0).all())


def test_rewind_epoch_zero_is_exactly_the_initialization(tmp_path):
    config = small_config(rewind_epoch=0, rounds=0).replace(train=TrainConfig(epochs=1, batch_size=50))
    result = search(config, tmp_path / "runs", progress=False, echo=quiet)
    ctx = context(config, tmp_path / "unused")
    init = state_of(ctx.new_model())
    assert_same_tensors(init, state_of(ctx.new_model()))  # new_model is deterministic for a seed
    rewound = ctx.new_model()
    with torch.no_grad():
        for p in rewound.parameters():
            p.add_(1.0)
    meta, _ = load_state(RunPaths(result.run_dir).rewind_state, rewound)
    assert meta.epoch == 0
    assert_same_tensors(state_of(rewound), init)
    other_seed = context(small_config(seed=1), tmp_path / "unused").new_model()
    assert not torch.equal(other_seed.body.fc1.weight, rewound.body.fc1.weight)


# ------------------------------------------------------------------------------------------- Early-Bird

def flips(base: torch.Tensor, positions) -> torch.Tensor:
    out = base.clone()
    out[list(positions)] = ~out[list(positions)]
    return out


def split_mask(flat: torch.Tensor) -> Mask:
    """10 entries over two layers: x (6) and y (2 x 2)."""
    return Mask(x=flat[:6], y=flat[6:].view(2, 2))


def test_eb_not_converged_until_the_fifo_is_full():
    m = split_mask(torch.ones(10, dtype=torch.bool))
    assert eb_converged([m], 3, 0.5) == (False, None)
    assert eb_converged([m, m], 3, 0.5) == (False, None)
    assert eb_converged([m, m, m], 3, 0.5) == (True, 0.0)


def test_eb_distance_is_the_max_over_each_older_mask():
    base = torch.tensor([1, 1, 0, 0, 1, 0, 1, 0, 1, 1], dtype=torch.bool)
    m1, m2, m3, m4 = (split_mask(flips(base, p)) for p in ([0], [1, 2, 3], [4, 5], []))
    fifo = [m1, m2, m3, m4]  # newest last
    # newest vs each older: 1/10, 3/10, 2/10 -> 0.3. (Oldest only would give 0.1, consecutive only 0.2,
    # and all pairs 0.4 from m1 vs m2.)
    converged, distance = eb_converged(fifo, 4, 0.31)
    assert converged is True and distance == pytest.approx(0.3)
    assert eb_converged(fifo, 4, 0.3) == (False, pytest.approx(0.3))  # converged iff distance < tau (strict)
    assert eb_converged(fifo, 4, 0.2)[0] is False


def test_eb_watch_fifo_on_a_real_model_that_stops_changing():
    ctx_model = small_config()  # only for a model config
    from slt_deploy.models import build_model, prunable_layers

    torch.manual_seed(0)
    model = build_model(resolve_config(ctx_model.model, (1, 8, 8), 10))
    names = list(prunable_layers(model))
    watch = EarlyBirdWatch(prunable_layers, names, 0.5, "global", queue=3, tau=0.02)
    assert [watch.after_epoch(e, model) for e in range(2)] == [False, False]
    assert watch.after_epoch(2, model) is True  # FIFO full, identical masks: distance 0 < tau
    assert watch.drawn_epoch == 3 and watch.distances == [None, None, 0.0]
    assert len(watch.fifo) == 3 and watch.fifo[-1].kept() == watch.fifo[-1].total() // 2
    watch.after_epoch(3, model)
    assert len(watch.fifo) == 3  # first in, first out
    meta, tensors = watch.state()
    again = EarlyBirdWatch(prunable_layers, names, 0.5, "global", queue=3, tau=0.02)
    again.load(meta, tensors)
    assert again.drawn_epoch == watch.drawn_epoch and again.distances == watch.distances
    assert all(torch.equal(a[n], b[n]) for a, b in zip(again.fifo, watch.fifo) for n in names)


# ------------------------------------------------------------------------------------------- Early-Time

# T = 5 steps, 2 samples, 3 classes
HAND_LOGITS = np.array([
    [[2.0, 0.0, -1.0], [0.0, 1.0, 0.0]],
    [[-1.0, 1.0, 0.5], [0.5, 0.5, -2.0]],
    [[0.0, 2.0, 0.0], [1.0, -1.0, 1.0]],
    [[0.5, 0.5, 1.5], [-0.5, 2.0, 0.0]],
    [[1.0, -1.0, 0.0], [0.0, 0.0, 3.0]],
])


def numpy_kls(logits: np.ndarray):
    acc = np.cumsum(logits, axis=0)
    p = np.exp(acc - acc.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    pT = p[-1]
    paper = [np.mean(np.sum(p[t] * np.log(p[t] / pT), -1)) for t in range(len(p))]  # KL(P_t || P_T)
    code = [np.mean(np.sum(pT * np.log(pT / p[t]), -1)) for t in range(len(p))]    # KL(P_T || P_t)
    return np.array(paper), np.array(code)


def test_accumulated_kl_both_directions_match_numpy():
    paper, code = numpy_kls(HAND_LOGITS)
    logits = torch.tensor(HAND_LOGITS, dtype=torch.float32)
    got_paper = accumulated_kl(logits, "paper").numpy()
    got_code = accumulated_kl(logits, "code").numpy()
    assert got_paper.shape == got_code.shape == (5,)
    np.testing.assert_allclose(got_paper, paper, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(got_code, code, rtol=1e-6, atol=1e-9)
    assert got_paper[-1] == pytest.approx(0.0, abs=1e-12) and got_code[-1] == pytest.approx(0.0, abs=1e-12)
    assert not np.allclose(paper[:-1], code[:-1], rtol=1e-3)  # the two directions are different measures
    for direction, kl in (("paper", paper), ("code", code)):
        normalized = kl / kl[1]
        expected = next((t for t in range(2, 5) if normalized[t - 1] < 0.6), 5)
        assert choose_t_early(accumulated_kl(logits, direction), 0.6) == expected


@pytest.mark.parametrize("kl, lam, expected", [
    ([3.0, 2.0, 1.0, 0.4, 0.0], 0.6, 3),    # t=3: 0.5 < 0.6
    ([3.0, 2.0, 1.4, 1.0, 0.0], 0.6, 4),    # t=3: 0.7, t=4: 0.5
    ([3.0, 2.0, 1.2, 1.0, 0.0], 0.6, 4),    # t=3: exactly 0.6 is not < 0.6
    ([3.0, 2.0, 1.8, 1.4, 0.0], 0.6, 5),    # none of t=2..4 below lambda -> full T (t=T never counts)
    ([3.0, 2.0, 1.8, 1.4, 0.0], 1.5, 2),    # t=2 normalizes to 1.0, below a lambda > 1
    ([9.0, 2.0, 0.2, 0.1, 0.0, 0.0, 0.0], 0.6, 3),  # T = 7: the smallest qualifying t wins
])
def test_choose_t_early_on_constructed_divergences(kl, lam, expected):
    assert choose_t_early(torch.tensor(kl, dtype=torch.float64), lam) == expected


# -------------------------------------------------------------------------------- resume after kill -9

def search_argv(exe: str, runs_dir: Path, extra) -> list:
    return [exe, "search", "--runs-dir", str(runs_dir), "--no-progress", "--model", "mlp", "--hidden", "32",
            "--dataset", "digits", "--n-train", "600", "--n-test", "100", "--batch-size", "50", *extra]


def kill_when(argv, env, run_glob: str, runs_dir: Path, timeout: float = 120.0) -> str:
    """Start the CLI, SIGKILL it as soon as a file matching ``runs_dir/*/run_glob`` exists."""
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            hits = list(runs_dir.glob(f"*/{run_glob}"))
            if hits:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
                return str(hits[0].relative_to(runs_dir))
            if proc.poll() is not None:
                pytest.fail(f"the run ended (rc {proc.returncode}) before {run_glob} appeared: "
                            f"{proc.stderr.read().decode()[-2000:]}")
            time.sleep(0.005)
        pytest.fail(f"{run_glob} did not appear within {timeout} s")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()


def check_resume_equals_uninterrupted(exe, env, tmp_path, extra, kill_at, expected_labels):
    a, b = tmp_path / "A", tmp_path / "B"
    done = subprocess.run(search_argv(exe, a, extra), env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    (run_a,) = a.iterdir()

    killed_at = kill_when(search_argv(exe, b, extra), env, kill_at, b)
    (run_b,) = b.iterdir()
    assert run_b.name == run_a.name
    assert not (run_b / "ticket.safetensors").exists(), f"the kill at {killed_at} did not land mid-run"

    resumed = subprocess.run(search_argv(exe, b, extra), env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    phase = kill_at.split("/")[1]
    assert f"{phase}: resuming at epoch" in resumed.stdout  # the killed phase continued from its checkpoint

    ta, tb = Ticket.load(run_a / "ticket.safetensors"), Ticket.load(run_b / "ticket.safetensors")
    assert_same_tensors(ta.state, tb.state)
    assert list(ta.mask) == list(tb.mask) and all(torch.equal(ta.mask[n], tb.mask[n]) for n in ta.mask)
    assert ta.record.accuracy == tb.record.accuracy and ta.record.extra == tb.record.extra
    log_a = [json.loads(x) for x in (run_a / "log.jsonl").read_text().splitlines()]
    log_b = [json.loads(x) for x in (run_b / "log.jsonl").read_text().splitlines()]
    assert [x["label"] for x in log_b] == [x["label"] for x in log_a] == expected_labels  # no duplicates
    assert not list(run_b.glob("phases/*/checkpoint.safetensors"))  # every phase finished cleanly
    return killed_at


@pytest.mark.slow
def test_imp_resumed_after_sigkill_equals_uninterrupted(slt_deploy_exe, cli_env, tmp_path):
    # 4 phases of 4/3/3/3 epochs; the kill lands inside round 2, after round 1's ticket is written
    killed_at = check_resume_equals_uninterrupted(
        slt_deploy_exe, cli_env, tmp_path, ["--method", "imp", "--epochs", "4", "--rounds", "3",
                                            "--rewind-epoch", "1"],
        "phases/round_02/checkpoint.safetensors", ["round 0 (dense)", "round 1", "round 2", "round 3"])
    assert killed_at.endswith("phases/round_02/checkpoint.safetensors")


@pytest.mark.slow
def test_eb_resumed_after_sigkill_equals_uninterrupted(slt_deploy_exe, cli_env, tmp_path):
    check_resume_equals_uninterrupted(
        slt_deploy_exe, cli_env, tmp_path, ["--method", "eb", "--epochs", "4", "--target-sparsity", "0.5",
                                            "--eb-queue", "2", "--eb-tau", "0.5"],
        "phases/final/checkpoint.safetensors", ["early-bird search", "final"])


def test_eb_resumed_after_crash_at_the_draw_equals_uninterrupted(tmp_path, monkeypatch):
    # tau = 1: the ticket is drawn as soon as the FIFO (q = 2) is full, i.e. after epoch 2 of 3
    config = small_config(method="eb", target_sparsity=0.5, eb_queue=2, eb_tau=1.0)
    uninterrupted = search(config, tmp_path / "A", progress=False, echo=quiet).ticket
    assert uninterrupted.record.extra["eb_drawn_epoch"] == 2

    class Killed(BaseException):
        pass

    real_save_state = run_module.save_state

    def die_before_done(path, *args, **kwargs):  # the process dies right after the epoch-2 checkpoint
        if Path(path).parent.name == "eb_search" and Path(path).name == "done.safetensors":
            raise Killed()
        return real_save_state(path, *args, **kwargs)

    monkeypatch.setattr(run_module, "save_state", die_before_done)
    with pytest.raises(Killed):
        search(config, tmp_path / "B", progress=False, echo=quiet)
    monkeypatch.setattr(run_module, "save_state", real_save_state)
    resumed = search(config, tmp_path / "B", progress=False, echo=quiet).ticket
    assert resumed.record.extra["eb_drawn_epoch"] == 2
    assert resumed.record.extra["eb_distances"] == uninterrupted.record.extra["eb_distances"]
    assert_same_tensors(resumed.state, uninterrupted.state)


# ----------------------------------------------------------------------------------- the ticket artifact

def test_ticket_save_load_round_trip_is_bit_identical(imp_run, tmp_path):
    _, result = imp_run
    ticket = Ticket.load(result.ticket_path)
    copy = ticket.save(tmp_path / "copy.safetensors")
    again = Ticket.load(copy)
    assert_same_tensors(again.state, ticket.state)
    assert list(again.mask) == list(ticket.mask)
    assert all(again.mask[n].dtype == torch.bool and torch.equal(again.mask[n], ticket.mask[n]) for n in ticket.mask)
    assert again.record == ticket.record
    assert copy.read_bytes() == result.ticket_path.read_bytes()  # saving is deterministic too
    # the rebuilt network computes what the search's network computes
    x = torch.rand(5, 4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(again.build_model()(x), ticket.build_model()(x))


def test_ticket_record_holds_everything_about_the_search(imp_run):
    config, result = imp_run
    r = Ticket.load(result.ticket_path).record
    assert r.format == FORMAT
    assert r.model.name == "mlp" and r.model.hidden == (32,) and r.model.input_shape == (1, 8, 8)
    assert r.model.num_classes == 10
    assert r.model.neuron == config.model.neuron  # beta, threshold, reset, surrogate slope
    assert r.method == "imp" and r.round == 1
    assert r.hyperparameters == config.to_dict(runtime=False)  # no device in it
    assert r.timesteps == config.data.timesteps == 5 and r.encoding == "direct" and r.dataset == "digits"
    assert r.seed == 0
    assert 0.0 <= r.accuracy <= 1.0
    assert r.sparsity == 0.25  # 592 of 2368 weights, exactly
    ticket = Ticket.load(result.ticket_path)
    assert r.layer_sparsity == pytest.approx({n: 1 - int(m.sum()) / m.numel() for n, m in ticket.mask.items()})
    assert r.layer_sparsity["fc1"] != r.layer_sparsity["readout"]  # global pruning: layers differ
    assert len(r.wall_time_s) == 2 and all(t >= 0 for t in r.wall_time_s)  # one per round (0 and 1)
    assert {"python", "torch", "snntorch", "numpy", "safetensors", "slt_deploy"} <= set(r.versions)


def test_ticket_refuses_a_model_whose_pruned_weights_are_not_zero():
    from slt_deploy.models import build_model, prunable_layers

    torch.manual_seed(0)
    model = build_model(resolve_config(ModelConfig(hidden=(4,)), (1, 8, 8), 10))
    mask = Mask.ones_like(prunable_layers(model))
    mask["fc1"] = torch.zeros_like(mask["fc1"])
    with pytest.raises(ValueError, match="fc1: pruned weights are not zero"):
        Ticket.from_model(model, mask, TicketRecord(model=model.config))


@pytest.fixture
def small_ticket(tmp_path) -> Path:
    from slt_deploy.models import build_model, prunable_layers

    torch.manual_seed(0)
    model = build_model(resolve_config(ModelConfig(hidden=(4,)), (1, 8, 8), 10))
    mask = Mask.ones_like(prunable_layers(model))
    mask["fc1"][:, :10] = False
    apply_mask(prunable_layers(model), mask)
    record = TicketRecord(model=model.config, method="imp", accuracy=0.5, wall_time_s=[1.0])
    return Ticket.from_model(model, mask, record).save(tmp_path / "small.safetensors")


def test_non_ticket_files_raise_ticket_error(tmp_path, small_ticket):
    plain = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(3)}, str(plain))
    with pytest.raises(TicketError, match=r"plain.safetensors: not a slt-deploy ticket \(safetensors file "
                                          r"without a ticket record\)"):
        Ticket.load(plain)

    other_format = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(3)}, str(other_format), metadata={"slt_deploy.ticket": json.dumps({"format": "x/9"})})
    with pytest.raises(TicketError, match="not a slt-deploy ticket .*format 'x/9'"):
        Ticket.load(other_format)

    noise = tmp_path / "noise.safetensors"
    noise.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(TicketError, match="noise.safetensors: not a ticket"):
        Ticket.load(noise)

    raw = small_ticket.read_bytes()
    for cut in (len(raw) - 16, len(raw) // 2, 6):
        truncated = tmp_path / f"cut{cut}.safetensors"
        truncated.write_bytes(raw[:cut])
        with pytest.raises(TicketError, match=f"cut{cut}.safetensors: not a ticket"):
            Ticket.load(truncated)

    with pytest.raises(TicketError, match="missing.safetensors: no such ticket file"):
        Ticket.load(tmp_path / "missing.safetensors")


def test_ticket_with_non_finite_weights_is_refused(tmp_path, small_ticket):
    tensors = load_file(str(small_ticket))
    tensors["state/body.readout.weight"][0, 0] = float("nan")
    from safetensors import safe_open

    with safe_open(str(small_ticket), framework="pt") as f:
        meta = f.metadata()
    bad = tmp_path / "nan.safetensors"
    save_file(tensors, str(bad), metadata=meta)
    with pytest.raises(TicketError, match="body.readout.weight has NaN or infinite values"):
        Ticket.load(bad)


def test_ticket_with_a_non_binary_mask_raises_ticket_error(tmp_path, small_ticket):
    tensors = load_file(str(small_ticket))
    from safetensors import safe_open

    with safe_open(str(small_ticket), framework="pt") as f:
        meta = f.metadata()
    tensors["mask/fc1"] = tensors["mask/fc1"].to(torch.uint8) * 2
    bad = tmp_path / "mask2.safetensors"
    save_file(tensors, str(bad), metadata=meta)
    with pytest.raises(TicketError, match="mask"):
        Ticket.load(bad)


def test_a_round_hook_sees_every_imp_round_and_can_stop_it(tmp_path):
    """The objective is a hook on the method's rounds (search/rounds.py): it sees each round in order, sets the
    later rounds' T and their count, stops the loop, and picks the final ticket; IMP has no loop of its own
    for it."""
    from slt_deploy.search.imp import run_imp
    from slt_deploy.search.rounds import RoundHook

    class Recording(RoundHook):
        def __init__(self, ctx):
            super().__init__(ctx)
            self.seen = []

        def timesteps(self, T):
            return 2                           # rounds after round 0 at T = 2

        def last_round(self, planned):
            assert planned == 1                # the method's own plan: search.rounds
            return 5

        def done(self, r):
            self.seen.append((r.k, r.label, r.ticket.record.timesteps, round(r.ticket.record.sparsity, 4)))
            return r.k < 2                     # stop after round 2

        def finish(self, last):
            return Ticket.load(self.ctx.paths.round_ticket(1))

    ctx = context(small_config(rounds=1, prune_fraction=0.5), tmp_path / "run")
    hook = Recording(ctx)
    final = run_imp(ctx, hook)
    assert hook.seen == [(0, "round 0 (dense)", 5, 0.0), (1, "round 1", 2, 0.5), (2, "round 2", 2, 0.75)]
    assert final.record.round == 1 and not ctx.paths.round_ticket(3).exists()
