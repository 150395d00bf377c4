"""Lava's own Loihi fixed-point outputs, recorded once, so the fast simulator stays checked against Lava on every
Python (Lava is archived; lava-nc 0.10.0 installs on Python 3.10 only). Written by Lava itself:

    .venv/bin/python tests/data/lava_recorded/make.py      # Python 3.10 with Lava; rewrites lava_fixed_pt.npz

For each network below, ``lava_fixed_pt.npz`` holds the input ``NAME/x``, Lava ``fixed_pt``'s spikes per population
(``NAME/spikes/POP``, int8), its raw readout current and outputs, the first-layer mode, and a fingerprint of the
lowered network (so a failing replay can say whether the network changed or the simulator did). The networks are
built in code from seeds (the recurrent one is the stored tests/data/two_layer_cycle.nir); the inputs are stored.
tests/test_lava_recorded.py replays them in the numpy and torch fast simulators, bit for bit, on any Python, and
re-runs Lava against them where Lava is installed.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
import warnings
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Callable, Dict, Tuple

import numpy as np

HERE = Path(__file__).resolve().parent
TESTS = HERE.parents[1]
RECORD = HERE / "lava_fixed_pt.npz"
CYCLE_NIR = TESTS / "data" / "two_layer_cycle.nir"


def fastsim_cases():
    """tests/test_fastsim.py as a module (pytest imports test files by path, not as a package)."""
    spec = importlib.util.spec_from_file_location("fastsim_cases", TESTS / "test_fastsim.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _mnist_digits(n: int = 8, t: int = 5) -> np.ndarray:
    """The first n offline MNIST test digits, direct-encoded over t steps (the demo's input, as the host feeds it)."""
    from slt_deploy.config import DataConfig
    from slt_deploy.data import load_dataset

    images = load_dataset(DataConfig()).test.images[:n].reshape(n, -1).astype(np.float64) / 255.0
    return np.repeat(images[:, None], t, axis=1)


def networks() -> Dict[str, Tuple[Callable, str, Callable]]:
    """name -> (NIR graph builder, first layer, input maker): the 14 fast-simulator cases and four more."""
    fs = fastsim_cases()
    out = {}
    for name, kwargs, first_layer, n, t, _ in fs.CASES:
        kwargs = dict(kwargs)
        builder = kwargs.pop("builder", fs.random_graph)
        out[name] = (lambda b=builder, k=kwargs: b(**k), first_layer,
                     lambda size, s=kwargs["seed"], n=n, t=t, f=first_layer: fs.inputs(s, n, t, size, f))
    # a stand-in for the demo's ticket: LeNet-300-100, LIF (beta 0.5, reset to zero), about 87 % pruned,
    # the first layer on the host, MNIST digits over T = 5
    out["lenet-300-100-mnist"] = (
        lambda: fs.random_graph(seed=21, sizes=(784, 300, 100, 10), density=0.13, w_mean=0.3, w_std=2.0,
                                scaled=True), "host", lambda size: _mnist_digits())
    out["lif-subtract-host"] = (
        lambda: fs.random_graph(seed=22, sizes=(24, 30, 16, 4), density=0.6, w_mean=0.2, w_std=1.0, scaled=True,
                                betas=(0.7, 0.9), reset="subtract"), "host",
        lambda size: np.random.default_rng(23).random((3, 12, size)))
    for first_layer in ("chip", "host"):  # a cycle through two layers: LIF (subtract reset) <-> CubaLIF
        out[f"two-layer-cycle-{first_layer}"] = (
            _cycle_graph, first_layer,
            lambda size, f=first_layer: (np.random.default_rng(11).random((3, 20, size)) < 0.3).astype(np.float64)
            if f == "chip" else np.random.default_rng(12).random((3, 20, size)))
    return out


def _cycle_graph():
    from slt_deploy.exporters.nir_format import read_nir

    return read_nir(CYCLE_NIR)


def lowered(builder: Callable, first_layer: str):
    from slt_deploy.compile import lower

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the stress cases reach the compiler's a_in range warning on purpose
        return lower(builder(), "fixed_pt", first_layer=first_layer)


def fingerprint(value) -> str:
    """A short hash of a lowered network: every field, arrays by dtype, shape and value (floats to 12 digits)."""
    h = hashlib.sha256()

    def feed(v):
        if is_dataclass(v):
            for f in fields(v):
                h.update(f.name.encode())
                feed(getattr(v, f.name))
        elif isinstance(v, (list, tuple)):
            for item in v:
                feed(item)
        elif isinstance(v, dict):
            for k in sorted(v, key=str):
                h.update(str(k).encode())
                feed(v[k])
        elif hasattr(v, "toarray"):  # scipy sparse
            feed(v.toarray())
        elif isinstance(v, np.ndarray):
            a = np.round(v.astype(np.float64), 12) if v.dtype.kind == "f" else v
            h.update(f"{a.dtype}{a.shape}".encode() + np.ascontiguousarray(a).tobytes())
        elif isinstance(v, float):
            h.update(repr(round(v, 12)).encode())
        else:
            h.update(repr(v).encode())

    feed(value)
    return h.hexdigest()[:16]


def record() -> None:
    from slt_deploy.simulate.lava import run_lava

    arrays = {}
    for name, (builder, first_layer, make_input) in networks().items():
        net = lowered(builder, first_layer)
        x = make_input(net.input.size)
        lava = run_lava(net, x)
        spikes = {pop: np.asarray(s).astype(np.int8) for pop, s in lava.spikes.items()}
        assert all(0 < s.mean() < 1 for s in spikes.values()), (name, {k: s.mean() for k, s in spikes.items()})
        arrays.update({f"{name}/x": x, f"{name}/first_layer": np.array(first_layer),
                       f"{name}/fingerprint": np.array(fingerprint(net)),
                       f"{name}/readout_current": lava.readout_current, f"{name}/outputs": lava.outputs})
        arrays.update({f"{name}/spikes/{pop}": s for pop, s in spikes.items()})
        print(f"{name}: {x.shape[0]} samples x {x.shape[1]} steps, spikes per population "
              + ", ".join(f"{p} {s.mean():.3f}" for p, s in spikes.items()))
    tmp = RECORD.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    tmp.replace(RECORD)
    print(f"wrote {RECORD} ({RECORD.stat().st_size / 1024:.0f} KiB)")


if __name__ == "__main__":
    sys.path.insert(0, str(TESTS.parent))
    record()
