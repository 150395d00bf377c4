"""Bring your own network: a user's file and .npz data, trained by the user's own loop, searched and deployed.

Real snnTorch, NIR, Lava and the CLI throughout; the network and data are small so that every test is fast.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from slt_deploy.report.schema import load_deploy, load_report
from slt_deploy.cli import main
from slt_deploy.data import check_overlap, fingerprint, infer_dataset, load_dataset
from slt_deploy.data.base import ArrayDataset
from slt_deploy.config import DataConfig, ModelConfig
from slt_deploy.errors import ConfigError, DataError
from slt_deploy.ticket import Ticket

T = 4
SOURCE = textwrap.dedent('''
    import snntorch as snn
    import torch
    from torch import nn


    def make(hidden=12):
        """the snnTorch tutorials' Sequential form, with a spiking output layer"""
        return nn.Sequential(nn.Flatten(), nn.Linear(16, hidden),
                             snn.Leaky(beta=0.8, init_hidden=True, reset_mechanism="zero"),
                             nn.Linear(hidden, 3),
                             snn.Leaky(beta=0.8, init_hidden=True, output=True, reset_mechanism="zero"))


    class Net(nn.Module):
        """a class network whose forward handles one step; per-neuron learnable beta, non-spiking readout"""

        def __init__(self, hidden=12):
            super().__init__()
            self.fc1 = nn.Linear(16, hidden)
            self.lif1 = snn.Leaky(beta=torch.linspace(0.6, 0.9, hidden), learn_beta=True, threshold=0.8,
                                  init_hidden=True, reset_mechanism="zero")
            self.fc2 = nn.Linear(hidden, 3)

        def forward(self, x):
            return self.fc2(self.lif1(self.fc1(x.view(x.size(0), -1))))


    def make_class(hidden=12):
        return Net(hidden)


    num_steps = 4


    class Tutorial(nn.Module):
        """snnTorch tutorial 5's network: the time loop inside forward, explicit membrane state"""

        def __init__(self, hidden=12):
            super().__init__()
            self.fc1 = nn.Linear(16, hidden)
            self.lif1 = snn.Leaky(beta=0.9, reset_mechanism="zero")
            self.fc2 = nn.Linear(hidden, 3)
            self.lif2 = snn.Leaky(beta=0.9, threshold=0.5, reset_mechanism="zero")

        def forward(self, x):
            mem1 = self.lif1.init_leaky()
            mem2 = self.lif2.init_leaky()
            spk2_rec, mem2_rec = [], []
            for step in range(num_steps):
                cur1 = self.fc1(x.flatten(1))
                spk1, mem1 = self.lif1(cur1, mem1)
                cur2 = self.fc2(spk1)
                spk2, mem2 = self.lif2(cur2, mem2)
                spk2_rec.append(spk2)
                mem2_rec.append(mem2)
            return torch.stack(spk2_rec, dim=0), torch.stack(mem2_rec, dim=0)


    def tutorial(hidden=12):
        return Tutorial(hidden)


    class Counts(Tutorial):
        """a time loop that returns spike counts: not the per-step spikes slt-deploy runs"""

        def forward(self, x):
            return super().forward(x)[0].sum(0)


    def make_counts():
        return Counts()


    class Branch(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(16, 3)
            self.fc2 = nn.Linear(16, 3)
            self.lif1 = snn.Leaky(beta=0.9, init_hidden=True)

        def forward(self, x):
            x = x.flatten(1)
            return self.lif1(self.fc1(x) + self.fc2(x))


    def make_branch():
        return Branch()


    def make_explicit():
        return nn.Sequential(nn.Flatten(), nn.Linear(16, 3), snn.Leaky(beta=0.9))


    def make_recurrent():
        return nn.Sequential(nn.Flatten(), nn.Linear(16, 3), snn.RLeaky(beta=0.9, all_to_all=False, V=0.5,
                                                                      init_hidden=True))


    def make_maxpool():
        return nn.Sequential(nn.MaxPool2d(2), nn.Flatten(), nn.Linear(4, 3), snn.Leaky(beta=0.9, init_hidden=True,
                                                                                      reset_mechanism="zero"))


    def make_synaptic(reset="zero"):
        """Synaptic neurons with a per-neuron threshold and a non-spiking readout"""
        return nn.Sequential(nn.Flatten(), nn.Linear(16, 10),
                             snn.Synaptic(alpha=0.7, beta=0.9, threshold=torch.linspace(0.3, 1.0, 10),
                                          init_hidden=True, reset_mechanism=reset),
                             nn.Linear(10, 3))


    def broken(hidden=12):
        raise ValueError("hidden must be even")

    NOT_CALLABLE = 3
''')


@pytest.fixture(scope="module")
def user(tmp_path_factory):
    """The user's folder: their network file and their data (.npz), 3 classes of 4x4 images."""
    root = tmp_path_factory.mktemp("user")
    (root / "own_net.py").write_text(SOURCE)
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 90)
    x = (rng.random((90, 1, 4, 4)) * 0.3).astype(np.float32)
    for i, c in enumerate(y):
        x[i, 0, c, :] += 0.9
    np.savez(root / "data.npz", x_train=x[:60], y_train=y[:60], x_test=x[60:], y_test=y[60:])
    # a second file whose test split repeats 5 training samples
    np.savez(root / "leaky.npz", x_train=x[:60], y_train=y[:60], x_test=np.concatenate([x[:5], x[60:70]]),
             y_test=np.concatenate([y[:5], y[60:70]]))
    return root


def _user_module(root: Path, factory: str, **kw):
    import importlib.util

    import sys

    spec = importlib.util.spec_from_file_location(f"own_net_{factory}", root / "own_net.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # as an imported module of the user's is
    spec.loader.exec_module(mod)
    return getattr(mod, factory)(**kw)


def _run(net, x_seq):
    """The user's way of running their network over time: reset the neurons and loop the steps, or (the
    tutorial form) call forward, which loops over time itself on the static input."""
    import snntorch.utils

    if type(net).__name__ == "Tutorial":
        return net(x_seq[0])[0]
    snntorch.utils.reset(net)
    outs = []
    for x_t in x_seq:
        out = net(x_t)
        outs.append(out[0] if isinstance(out, tuple) else out)
    return torch.stack(outs)


def _train_and_save(root: Path, factory: str) -> Path:
    """A plain snnTorch training loop of the user's own (not slt-deploy's), then safetensors weights."""
    from safetensors.torch import save_file

    torch.manual_seed(0)
    net = _user_module(root, factory)
    with np.load(root / "data.npz") as f:
        x, y = torch.from_numpy(f["x_train"]), torch.from_numpy(f["y_train"])
    opt = torch.optim.Adam(net.parameters(), lr=0.02)
    for _ in range(15):
        out = _run(net, x.unsqueeze(0).repeat(T, 1, 1, 1, 1))
        loss = torch.nn.functional.cross_entropy(out.sum(0), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    path = root / f"{factory}.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    return path


def _one_line_error(capsys, argv, *fragments):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    for fragment in fragments:
        assert fragment in err, err
    return err


def _search(root: Path, factory: str, weights: Path, runs: Path, extra=(), data: Path = None) -> Path:
    argv = ["search", "--model", f"{root / 'own_net.py'}:{factory}", "--weights", str(weights),
            "--data-path", str(data or root / "data.npz"), "--method", "imp", "--rounds", "1", "--epochs", "1",
            "--rewind-epoch", "0", "--batch-size", "30", "--timesteps", str(T), "--optimizer", "adam", "--lr",
            "0.01", "--runs-dir", str(runs), "--no-progress", *extra]
    assert main(argv) == 0
    return next(runs.glob(f"imp_own_net.{factory}_npz_*/ticket.safetensors"))


# ------------------------------------------------------------------------------------------- end to end

@pytest.mark.lava
@pytest.mark.parametrize("factory", ["make", "make_class", "tutorial"])
def test_user_file_search_from_weights_then_lava_float_spike_identical(user, tmp_path, capsys, factory):
    weights = _train_and_save(user, factory)
    prunable = ["--prunable", "fc2"] if factory == "make_class" else []  # masks limited to named layers
    ticket_path = _search(user, factory, weights, tmp_path / "runs", extra=prunable)
    ticket = Ticket.load(ticket_path)
    rec = ticket.record
    if prunable:
        assert list(ticket.mask) == ["fc2"] and rec.layer_sparsity["fc1"] == 0.0 and rec.layer_sparsity["fc2"] > 0
    # the ticket records the model spec (absolute path + sha256 of the source) and its training data
    assert rec.model.name == f"{user / 'own_net.py'}:{factory}"
    assert len(rec.model.source_sha256) == 64 and rec.model.weights == str(weights)
    assert rec.train_data["samples"] == 60 and rec.dataset == "npz"
    assert ticket.train_hashes.shape == (60,)
    # IMP started from the user's weights and rewinds to them (rewind epoch 0)
    from safetensors.torch import load_file

    rewind = load_file(str(ticket_path.parent / "rewind.safetensors"))
    first = "1" if factory == "make" else "fc1"
    assert torch.equal(rewind[f"model/body.{first}.weight"], load_file(str(weights))[f"{first}.weight"])

    # the network in the user's own hands, with the ticket's weights, on the user's test data
    net = _user_module(user, factory)
    net.load_state_dict({k[len("body."):]: v for k, v in ticket.state.items()})
    net.eval()
    with np.load(user / "data.npz") as f:
        x_test = torch.from_numpy(f["x_test"][:6])
    with torch.no_grad():
        expected = _run(net, x_test.unsqueeze(0).repeat(T, 1, 1, 1, 1)).transpose(0, 1).numpy()  # (N, T, 3)

    if factory != "make_class":  # the Python API route: export the ticket, run Lava float on the user's inputs
        from slt_deploy import api

        graph = api.export_nir(ticket_path)
        run = api.simulate(graph, x_test.unsqueeze(1).repeat(1, T, 1, 1, 1), backend="lava-float")
        assert np.array_equal(run.outputs.reshape(expected.shape), expected)
        assert expected.sum() > 0  # the output layer spikes: the comparison is not of zeros
        return

    out = tmp_path / "deploy"
    assert main(["deploy", str(ticket_path), "--profile", "loihi", "--backend", "lava-float", "--out", str(out),
                 "--samples", "6", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    summary = load_deploy(out / "deploy.json")
    assert summary.float_spike_identical is True and summary.float_backend == "lava-float"
    assert summary.samples == 6 and summary.dataset == "npz" and summary.fits is True
    assert "lava-float vs snnTorch: spike-identical in every layer" in printed
    for name in ("model.nir", "ann_twin.onnx", "report/report.md", "summary.txt", "simulate.json"):
        assert (out / name).is_file(), name
    # netx (lava-dl) holds one decay per layer; the per-neuron beta simulates in Lava but has no netx file
    assert summary.netx == "netx file not written: layer 'lif1': netx needs one dv per layer; this one has several"
    assert summary.netx in printed
    from slt_deploy import api

    run = api.simulate(out / "model.nir", x_test.unsqueeze(1).repeat(1, T, 1, 1, 1), backend="lava-float")
    assert np.allclose(run.outputs.reshape(expected.shape), expected, atol=1e-5)  # per-step logits of the readout


def test_deploy_from_model_and_weights_with_fast_backend(user, tmp_path, capsys):
    weights = _train_and_save(user, "make")
    out = tmp_path / "dep"
    assert main(["deploy", f"{user / 'own_net.py'}:make", "--weights", str(weights), "--model-args",
                 '{"hidden": 12}', "--data-path", str(user / "data.npz"), "--timesteps", str(T), "--profile",
                 "loihi", "--backend", "fast-fixed", "--out", str(out), "--samples", "8", "--no-progress"]) == 0
    d = load_deploy(out / "deploy.json")
    assert d.method == "user-weights" and d.float_backend == "fast-float" and d.samples == 8
    assert d.float_spike_identical is True and d.overlap is None
    # deploy.json carries the report's verdict fields for its chip: the same row as report.json's
    report = load_report(out / "report" / "report.json")
    # issue 30: a row per scope; deploy.json carries both, chip-dynamic first
    rows = [r for r in report.verdict if r.profile == "loihi"]
    assert [r.scope for r in rows] == ["chip-dynamic", "chip"]
    assert d.verdict_rows == rows and d.decisions == {r.scope: r.decision for r in rows}
    row = rows[0]
    assert d.energy_scope == "chip" and row.scope == "chip-dynamic"   # loihi against the 45 nm ANN targets
    assert row.decision in ("SNN", "ANN", "undecided") and row.break_even.activity and row.break_even.sparsity
    assert {r.ann_profile for r in d.verdict_matrix} == {"int8-45nm", "fp32-45nm"}
    # the summary's SNN/ANN lines are the matrix's intervals, and its latency the report's per-inference one
    assert ([r.ratio_interval for r in d.ann.ratio_on_profile] == [r.ratio_interval for r in d.verdict_matrix])
    assert d.latency_per_inference_s == report.networks[0].per_inference["loihi"].latency_s
    rec = Ticket.load(out / "ticket.safetensors").record
    assert rec.model.factory_args() == {"hidden": 12} and rec.train_data["samples"] == 60


# ------------------------------------------------------------------------------------------------ overlap

def test_overlap_counted_exactly():
    rng = np.random.default_rng(1)
    train = ArrayDataset("a", rng.integers(0, 255, (10, 1, 3, 3)).astype(np.uint8), np.zeros(10, np.int64), 2)
    test_images = np.concatenate([train.images[[2, 5, 7]], rng.integers(0, 255, (2, 1, 3, 3)).astype(np.uint8)])
    test = ArrayDataset("b", test_images, np.zeros(5, np.int64), 2)
    fp = fingerprint(train)
    with pytest.raises(DataError, match="3 of 5 evaluation samples are in the ticket's training split"):
        check_overlap(fp.hashes, test, "b")
    assert check_overlap(fp.hashes, test, "b", allow=True).overlapping == 3
    assert check_overlap(fp.hashes, test, "b", allow=True, samples=3).overlapping == 3
    assert check_overlap(fp.hashes, ArrayDataset("c", test_images[3:], np.zeros(2, np.int64), 2), "c") is None
    # the same pixels as float32 are other data (another encoding of the input), as uint8 the same
    assert fp.hashes[0] == fingerprint(ArrayDataset("d", train.images[:1], np.zeros(1, np.int64), 2)).hashes[0]


def test_deploy_refuses_overlapping_data_or_labels_it(user, tmp_path, capsys):
    weights = _train_and_save(user, "make")
    argv = ["deploy", f"{user / 'own_net.py'}:make", "--weights", str(weights), "--data-path",
            str(user / "leaky.npz"), "--timesteps", str(T), "--profile", "loihi", "--backend", "fast-fixed",
            "--samples", "10", "--no-progress"]
    _one_line_error(capsys, argv + ["--out", str(tmp_path / "refused")],
                    "5 of 10 evaluation samples are in the ticket's training split", "--allow-overlap")
    assert not (tmp_path / "refused").exists()  # nothing half-written
    assert main(argv + ["--out", str(tmp_path / "allowed"), "--allow-overlap"]) == 0
    printed = capsys.readouterr().out
    label = "OVERLAPPING DATA: 5 of 10 evaluation samples are in the training split"
    assert label in printed and label in (tmp_path / "allowed" / "summary.txt").read_text()
    assert load_deploy(tmp_path / "allowed" / "deploy.json").overlap.overlapping == 5
    assert label in Ticket.load(tmp_path / "allowed" / "ticket.safetensors").record.extra["overlap"]
    # a ticket made on data.npz, evaluated on other data (--data-path) that repeats its training samples
    ticket = Ticket.load(tmp_path / "allowed" / "ticket.safetensors")
    ticket.record.extra.pop("overlap")
    ticket.save(tmp_path / "t.safetensors")
    _one_line_error(capsys, ["deploy", str(tmp_path / "t.safetensors"), "--data-path", str(user / "leaky.npz"),
                             "--profile", "loihi", "--backend", "fast-fixed", "--samples", "3", "--out",
                             str(tmp_path / "again"), "--no-progress"],
                    "3 of 3 evaluation samples are in the ticket's training split")
    # wherever a ticket's test data is loaded (simulate, report): its own leaky.npz test split is refused too
    from slt_deploy.simulate.workload import ticket_data

    with pytest.raises(DataError, match="5 of 15 evaluation samples are in the ticket's training split"):
        ticket_data(Ticket.load(tmp_path / "t.safetensors"))
    assert ticket_data(Ticket.load(tmp_path / "t.safetensors"), allow_overlap=True).dataset == "npz"


# -------------------------------------------------------------------------------------------- error paths

@pytest.mark.parametrize("spec, fragments", [
    ("missing.py:make", ["no such file", "missing.py"]),
    ("{root}/own_net.py:nothere", ["has no attribute 'nothere'", "callables defined there: Branch, Counts, Net"]),
    ("{root}/own_net.py:NOT_CALLABLE", ["NOT_CALLABLE is a int, not a callable"]),
    ("{root}/own_net.py:broken", ["broken() raised ValueError: hidden must be even"]),
    ("{root}/own_net.py:make_counts", ["Counts.forward loops over time, but what it returns first is not the "
                                       "stacked (steps, batch, ...) spikes", "forward(x) for ONE time step"]),
    ("{root}/own_net.py:make_branch", ["layer 'fc2' does not take the previous layer's output", "forward(x) for ONE"]),
    ("{root}/own_net.py:make_explicit", ["layer '2' (Leaky) has init_hidden=False", "init_hidden=True"]),
    ("{root}/own_net.py:make_recurrent", ["layer '2' (RLeaky) has a RecurrentOneToOne recurrence; only an "
                                          "all-to-all nn.Linear one is supported"]),
    ("no_such_package_xyz.mod:make", ["cannot find module 'no_such_package_xyz.mod'"]),
])
def test_bad_model_specs_are_one_line_errors(user, tmp_path, capsys, spec, fragments):
    _one_line_error(capsys, ["search", "--model", spec.format(root=user), "--data-path", str(user / "data.npz"),
                             "--runs-dir", str(tmp_path / "runs"), "--epochs", "1", "--no-progress"], *fragments)
    assert not (tmp_path / "runs").exists()


def test_unsupported_layer_refused_at_deploy(user, tmp_path, capsys):
    from safetensors.torch import save_file

    net = _user_module(user, "make_maxpool")
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp_path / "w.safetensors"))
    _one_line_error(capsys, ["deploy", f"{user / 'own_net.py'}:make_maxpool", "--weights",
                             str(tmp_path / "w.safetensors"), "--data-path", str(user / "data.npz"), "--profile",
                             "loihi", "--backend", "fast-fixed", "--out", str(tmp_path / "o"), "--no-progress"],
                    "cannot export layer '0' (MaxPool2d)", "use nn.AvgPool2d")
    assert not (tmp_path / "o").exists()


def test_bad_args_weights_and_data(user, tmp_path, capsys):
    base = ["search", "--model", f"{user / 'own_net.py'}:make", "--data-path", str(user / "data.npz"),
            "--runs-dir", str(tmp_path / "runs"), "--epochs", "2", "--no-progress"]
    _one_line_error(capsys, base + ["--model-args", "{hidden: 3"], "model.args=", "is not valid JSON")
    _one_line_error(capsys, base + ["--model-args", "[1]"], "must be a JSON object")
    _one_line_error(capsys, base + ["--model-args", '{"width": 3}'], "make(width=3) raised TypeError")
    _one_line_error(capsys, base + ["--weights", str(tmp_path / "none.safetensors")], "no such weights file")
    torch.save({"fc.weight": torch.zeros(2)}, tmp_path / "other.pt")
    _one_line_error(capsys, base + ["--weights", str(tmp_path / "other.pt")], "weights do not match model",
                    "unexpected fc.weight")
    torch.save({"net": Path("x")}, tmp_path / "pickled.pt")  # an arbitrary object: never unpickled
    _one_line_error(capsys, base + ["--weights", str(tmp_path / "pickled.pt")], "weights_only=True")
    np.savez(tmp_path / "partial.npz", x_train=np.zeros((2, 4, 4)))
    _one_line_error(capsys, base[:3] + ["--data-path", str(tmp_path / "partial.npz")] + base[5:],
                    "missing array(s) y_train, x_test, y_test")
    assert not (tmp_path / "runs").exists()


def test_changed_source_is_refused_when_rebuilding(user, tmp_path, capsys):
    root = tmp_path / "copy"
    root.mkdir()
    (root / "own_net.py").write_text(SOURCE)
    weights = _train_and_save(user, "make")
    ticket = _search(root, "make", weights, tmp_path / "runs", extra=["--rounds", "0"], data=user / "data.npz")
    assert main(["inspect", str(ticket)]) == 0
    capsys.readouterr()
    (root / "own_net.py").write_text(SOURCE + "\n# edited\n")
    _one_line_error(capsys, ["export", str(ticket), "--format", "nir", "--out", str(tmp_path / "m.nir")],
                    "own_net.py changed since the ticket was made", "restore that file or search again")
    (root / "own_net.py").unlink()
    _one_line_error(capsys, ["export", str(ticket), "--format", "nir", "--out", str(tmp_path / "m.nir")],
                    "no such file")


def test_data_path_alone_picks_the_loader(user, tmp_path):
    cfg = infer_dataset(DataConfig(path=str(user / "data.npz")))
    assert cfg.dataset == "npz" and cfg.n_train == 0 and cfg.path == str((user / "data.npz").resolve())
    split = load_dataset(cfg)
    assert len(split.train) == 60 and len(split.test) == 30 and split.train.num_classes == 3
    spikes = (np.random.default_rng(0).random((6, 5, 2, 3, 3)) < 0.3)
    np.savez(tmp_path / "ev.npz", x_train=spikes, y_train=np.arange(6) % 2, x_test=spikes, y_test=np.arange(6) % 2)
    ev = infer_dataset(DataConfig(path=str(tmp_path / "ev.npz")))
    assert ev.encoding == "events" and load_dataset(ev).train.images.shape == (6, 5, 2, 3, 3)
    from PIL import Image

    for cls, value in (("cat", 10), ("dog", 200)):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        for i in range(5):
            Image.fromarray(np.full((3, 3), value + i, np.uint8)).save(tmp_path / "imgs" / cls / f"{i}.png")
    img = infer_dataset(DataConfig(path=str(tmp_path / "imgs")))
    split = load_dataset(img)
    assert img.dataset == "imagefolder" and len(split.train) + len(split.test) == 10
    assert split.train.images.shape[1:] == (1, 3, 3) and split.train.num_classes == 2
    with pytest.raises(DataError, match="spike frames .* set data.encoding=events"):
        load_dataset(DataConfig(dataset="npz", path=str(tmp_path / "ev.npz"), n_train=0, n_test=0))


def test_from_snntorch_and_export_nir_of_a_module(user):
    from slt_deploy import api

    net = _user_module(user, "make_class")
    graph = api.export_nir(net, input_shape=(1, 4, 4))
    assert [n for n in graph.nodes if n not in ("input", "output")] == ["view", "fc1", "lif1", "fc2"]
    with pytest.raises(ConfigError, match="layer 'fc2' does not take the previous layer's output"):
        api.from_snntorch(_user_module(user, "make_branch"), (1, 4, 4))
    # the tutorial's time loop, read one step at a time: the user's own state dict, neurons keeping their state
    tutorial = _user_module(user, "tutorial")
    one_step = api.from_snntorch(tutorial, (1, 4, 4))
    assert list(dict(one_step.body.named_children())) == ["flatten", "fc1", "lif1", "fc2", "lif2"]
    assert one_step.body.lif1.init_hidden and set(one_step.body.state_dict()) == set(tutorial.state_dict())
    with pytest.raises(ConfigError, match="model.args applies to a user model"):
        ModelConfig(name="mlp", args='{"a": 1}')


def test_api_search_and_deploy_with_a_module_instance_and_dataloaders(user, tmp_path):
    from slt_deploy import api

    net = _user_module(user, "make_class")  # an instance of the user's class, trained or not
    with np.load(user / "data.npz") as f:
        train = torch.utils.data.TensorDataset(torch.from_numpy(f["x_train"]), torch.from_numpy(f["y_train"]))
        test = torch.utils.data.TensorDataset(torch.from_numpy(f["x_test"]), torch.from_numpy(f["y_test"]))
    loaders = (torch.utils.data.DataLoader(train, batch_size=25), torch.utils.data.DataLoader(test, batch_size=25))
    found = api.search(model=net, data=loaders, method="imp", rounds=1, epochs=1, rewind_epoch=0, batch_size=30,
                       timesteps=T, runs_dir=tmp_path / "runs", progress=False)
    rec = found.ticket.record
    assert rec.model.name == f"{(user / 'own_net.py').resolve()}:Net"  # rebuilt by its class
    assert rec.train_data["samples"] == 60 and rec.dataset == "npz"
    start = Ticket.load(found.run_dir / "rounds" / "round_00.safetensors")  # trained from the instance's weights
    from safetensors.torch import load_file

    assert torch.equal(load_file(str(found.run_dir / "rewind.safetensors"))["model/body.fc1.weight"], net.fc1.weight)
    assert start.record.round == 0
    result = api.deploy(found.ticket_path, profile="loihi", backend="fast-fixed", out=tmp_path / "dep", samples=5,
                        progress=False)
    assert result.record.float_spike_identical is True and result.record.samples == 5
    with pytest.raises(ConfigError, match="cannot record how to rebuild 'Sequential'"):
        api.model_spec(torch.nn.Sequential())


@pytest.mark.parametrize("reset", ["zero", "subtract"])
def test_synaptic_exports_exactly_deploys_with_subtract_and_zero_reset_is_refused_in_one_line(user, tmp_path, capsys,
                                                                                            reset):
    from safetensors.torch import save_file

    from slt_deploy import api

    torch.manual_seed(0)
    net = _user_module(user, "make_synaptic", reset=reset)
    x = torch.rand(5, T, 1, 4, 4) * 2
    with torch.no_grad():
        expected = _run(net, x.transpose(0, 1)).transpose(0, 1).numpy()
    run = api.simulate(api.export_nir(net, input_shape=(1, 4, 4)), x, backend="reference")
    assert np.array_equal(run.outputs.reshape(expected.shape), expected)
    assert run.spikes["2"].sum() > 0  # the neurons fire: the equality is not of silent layers
    # Synaptic's zero reset also drops the next step's input, which Lava cannot do; the subtract reset deploys
    # (Lava runs it since issue 13; the ANN twin of the cost report turns Synaptic into ReLU since issue 25)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp_path / "w.safetensors"))
    argv = ["deploy", f"{user / 'own_net.py'}:make_synaptic", "--weights", str(tmp_path / "w.safetensors"),
            "--model-args", json.dumps({"reset": reset}), "--data-path", str(user / "data.npz"), "--profile",
            "loihi", "--backend", "fast-fixed", "--out", str(tmp_path / "o"), "--no-progress"]
    if reset == "subtract":
        assert main(argv) == 0 and (tmp_path / "o").is_dir()
        return
    _one_line_error(capsys, argv, "reset mode 'hold' is not supported")
    assert not (tmp_path / "o").exists()  # refused before anything is written


def test_export_a_model_at_its_weights(user, tmp_path, capsys):
    weights = _train_and_save(user, "make")
    out = tmp_path / "m.nir"
    assert main(["export", f"{user / 'own_net.py'}:make", "--weights", str(weights), "--data-path",
                 str(user / "data.npz"), "--timesteps", str(T), "--format", "nir", "--out", str(out)]) == 0
    assert capsys.readouterr().out.split() == ["wrote", str(tmp_path / "m.ticket.safetensors"), "wrote", str(out)]
    from slt_deploy.exporters.nir_format import read_nir

    meta = read_nir(out).metadata
    assert meta["method"] == "user-weights" and meta["dataset"] == "npz" and int(meta["timesteps"]) == T
    _one_line_error(capsys, ["export", f"{user / 'own_net.py'}:make", "--format", "nir", "--out",
                             str(tmp_path / "x.nir")], "a model needs --weights FILE and its data (--data-path)")
