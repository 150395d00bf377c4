"""Benchmark of MultiSp (Cheng et al.) on a small Spikformer: MultiSp-SLT (spiking) vs MultiSp-LT (ANN twin).

MultiSp = (1) patch-number sparsity (``--patch-keep``), (2) ConvPEP weight sparsity + binarization (a biprop
ticket over the ConvPEP convs at ``--pep-sparsity``; the encoder and head train normally), (3) ConvPEP
activation binarization. Baselines: the dense Spikformer SNN and its dense ANN twin, same training budget.
The ANN runs one step (T=1): with direct input its output is the same at every step.

    .venv/bin/python benchmarks/multisp.py [--hidden 32,1,2] [--epochs 4] [--timesteps 4]

Runs resume: re-running skips finished searches (run directories are kept under --runs-dir).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from slt_deploy.config import DataConfig, ModelConfig, RunConfig, SearchConfig, TrainConfig
from slt_deploy.search import search
from slt_deploy.models.spikformer import convpep_layers
from slt_deploy.utils import write_json_atomic

from provenance import add_run_args, provenance


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hidden", default="32,1,2", help="embed_dim,depth,heads")
    ap.add_argument("--timesteps", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--lr", type=float, default=0.002)
    ap.add_argument("--patch-keep", type=float, default=0.5)
    ap.add_argument("--pep-sparsity", type=float, default=0.5)
    add_run_args(ap)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    hidden = tuple(int(h) for h in args.hidden.split(","))
    train = TrainConfig(epochs=args.epochs, optimizer="adam", lr=args.lr, weight_decay=0.0)
    results = {**provenance("multisp.py", args), "runs": {}}

    def run(label: str, spiking: bool, multisp: bool) -> None:
        model = ModelConfig(name="spikformer", hidden=hidden, spiking=spiking,
                            patch_keep=args.patch_keep if multisp else 1.0, binary_activations=multisp)
        if multisp:
            s = SearchConfig(method="biprop", target_sparsity=args.pep_sparsity, scope="layerwise",
                             prunable=convpep_layers(model), seed=args.seed)
        else:
            s = SearchConfig(method="dense", seed=args.seed)
        cfg = RunConfig(model=model, data=DataConfig(timesteps=args.timesteps if spiking else 1), train=train,
                        search=s)
        print(f"\n### {label}", flush=True)
        t0 = time.perf_counter()
        res = search(cfg, args.runs_dir, progress=False)
        r = res.ticket.record
        pep = {n: r.layer_sparsity[n] for n in convpep_layers(model)}
        results["runs"][label] = {"run_dir": str(res.run_dir), "spiking": spiking, "method": r.method,
                                  "accuracy": r.accuracy, "sparsity": r.sparsity, "convpep_sparsity": pep,
                                  "patch_keep": model.patch_keep, "binary_activations": multisp,
                                  "timesteps": r.timesteps, "search_time_s": sum(r.wall_time_s),
                                  "invocation_s": time.perf_counter() - t0, "alpha": r.extra.get("alpha")}
        write_json_atomic(Path(args.out) / "multisp_mnist.json", results)

    run("dense Spikformer SNN", True, False)
    run("dense Spikformer ANN", False, False)
    run("MultiSp-SLT", True, True)
    run("MultiSp-LT", False, True)
    print(f"\n{'run':<22} {'sparsity':>9} {'accuracy':>9} {'time s':>8}")
    for label, e in results["runs"].items():
        print(f"{label:<22} {100 * e['sparsity']:8.1f}% {100 * e['accuracy']:8.2f}% {e['search_time_s']:8.0f}")


if __name__ == "__main__":
    main()
