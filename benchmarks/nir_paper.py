"""The NIR paper's public graphs (../shared/nir-paper), written by other tools, on every backend (issue 13).

- lif_norse.nir: spike times against the paper's event-exact solution (lif_exact.csv), per backend;
- two_lif_neurons.nir (v_leak 1.2): spikes of the first neuron in 1000 steps, per backend, host-fed;
- cnn_sinabs.nir on event-MNIST (dt = 1, sinabs's convention): accuracy, agreement with the reference
  (predictions, spikes per layer) and speed per backend, plus the default dt (1e-4) run that must be flagged;
- (issue 25) graphs of the structure of the paper's recurrent Braille networks (tests/data/braille/: CubaLIF
  with a bias and a recurrent Affine, zero and subtract reset, with and without bias) and a cycle through two
  layers (tests/data/two_layer_cycle.nir), on random spike input: spike agreement with the reference per layer
  and whether lava-fixed is fast-fixed bit for bit.

    .venv/bin/python benchmarks/nir_paper.py [--samples 100] [--lava-samples 100] [--only-recurrent]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from provenance import provenance
from slt_deploy.exporters.nir_format import read_nir
from slt_deploy.simulate import simulate
from slt_deploy.simulate.run import BACKENDS
from slt_deploy.simulate.workload import dataset_config

PAPER = Path(__file__).resolve().parents[2] / "shared" / "nir-paper"  # ../shared next to the repository


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=100)
    ap.add_argument("--lava-samples", type=int, default=100)
    ap.add_argument("--out", default="benchmarks/results/nir_paper.json")
    ap.add_argument("--only-recurrent", action="store_true", help="only the issue-25 graphs (Braille, cycle)")
    args = ap.parse_args()
    out = {"provenance": provenance("nir_paper.py", args)}
    out["recurrent"] = recurrent_graphs(args.samples, args.lava_samples)
    if args.only_recurrent:
        args.out = args.out.replace(".json", "_recurrent.json")
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(out, indent=1))
        print(f"wrote {args.out}")
        return

    table = np.loadtxt(PAPER / "lif_exact.csv", delimiter=",")
    x = table[:, 0].astype(np.float32).reshape(1, -1, 1)
    lif = read_nir(PAPER / "lif_norse.nir")
    two = read_nir(PAPER / "two_lif_neurons.nir")
    out["lif_exact_spikes"] = np.flatnonzero(table[:, 2]).tolist()
    out["lif_norse"], out["two_lif_neurons"] = {}, {}
    for backend, fn in BACKENDS.items():
        kw = {} if backend == "reference" else {"first_layer": "host"}
        out["lif_norse"][backend] = np.flatnonzero(fn(lif, x, **kw).spikes["1"].ravel()).tolist()
        out["two_lif_neurons"][backend] = int(fn(two, np.zeros((1, 1000, 1), np.float32), **kw).spikes["lif1"].sum())
        print(backend, out["lif_norse"][backend], out["two_lif_neurons"][backend], flush=True)

    data = dataset_config("event-mnist")
    cnn = PAPER / "cnn_sinabs.nir"
    default_dt = simulate(cnn, "fast-float", samples=args.samples, progress=False, data=data)
    out["cnn_sinabs_default_dt"] = {"silent": default_dt.silent, "warnings": default_dt.warnings,
                                    "accuracy": default_dt.accuracy}
    out["cnn_sinabs"] = {}
    for backend in BACKENDS:
        n = args.lava_samples if backend.startswith("lava") else args.samples
        r = simulate(cnn, backend, samples=n, progress=False, data=data, dt=1.0)
        out["cnn_sinabs"][backend] = {k: getattr(r, k) for k in (
            "samples", "timesteps", "accuracy", "reference_accuracy", "prediction_agreement", "spike_agreement",
            "first_mismatch", "spikes_per_sample", "samples_per_s", "warnings", "silent")}
        print(backend, r.summary().splitlines()[0:2], flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(f"wrote {args.out}")


DATA = Path(__file__).resolve().parents[1] / "tests" / "data"


def recurrent_graphs(samples: int, lava_samples: int) -> dict:
    """Each Braille-structure graph and the two-layer cycle on every backend: per spiking layer, the fraction of
    (sample, step, neuron) spikes equal to the reference's, and lava-fixed against fast-fixed."""
    import time

    files = sorted((DATA / "braille").glob("*.nir")) + [DATA / "two_layer_cycle.nir"]
    rng = np.random.default_rng(7)
    result = {}
    for path in files:
        graph = read_nir(path)
        n_in = int(np.asarray(graph.nodes["input"].input_type["input"]).ravel()[0])
        x = (rng.random((samples, 25, n_in)) < 0.3).astype(np.float32)
        runs, seconds = {}, {}
        for backend, fn in BACKENDS.items():
            xs = x[:lava_samples] if backend.startswith("lava") else x
            start = time.perf_counter()
            runs[backend] = fn(graph, xs) if backend == "reference" else fn(graph, xs, first_layer="chip")
            seconds[backend] = time.perf_counter() - start
        layers = sorted(runs["reference"].spikes)
        ref = runs["reference"].spikes
        entry = {"samples": samples, "lava_samples": lava_samples, "T": 25,
                 "reference_rate": {n: float(ref[n].mean()) for n in layers}}
        for backend, r in runs.items():
            k = len(r.spikes[layers[0]])
            entry[backend] = {"agreement": {n: float((r.spikes[n] == ref[n][:k]).mean()) for n in layers},
                              "samples_per_s": k / seconds[backend]}
        k = lava_samples
        entry["lava_fixed_is_fast_fixed"] = all(
            np.array_equal(runs["lava-fixed"].spikes[n], runs["fast-fixed"].spikes[n][:k]) for n in layers)
        entry["lava_float_is_reference"] = all(np.array_equal(runs["lava-float"].spikes[n], ref[n][:k])
                                               for n in layers)
        entry["fast_float_is_reference"] = all(np.array_equal(runs["fast-float"].spikes[n], ref[n]) for n in layers)
        result[path.name] = entry
        print(path.name, json.dumps({b: entry[b]["agreement"] for b in runs}), entry["lava_fixed_is_fast_fixed"],
              flush=True)
    return result


if __name__ == "__main__":
    main()
