"""Training recipes for the demo's dense SNN and its dense ANN twin: test accuracy after every epoch.

The demo's network (LeNet-300-100 spiking MLP, direct encoding, T=5) on the offline MNIST split (8,000 train /
2,000 test), trained dense by each recipe; the ANN twin is the same MLP with ReLU in place of the LIF neurons.
Every epoch prints the training loss and the accuracy on all 2,000 test images, so a recipe's curve and its end
point can be compared with the other network's. Issue 30 asks the SNN to come within 1.0 point of its ANN twin.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/snn_recipe.py [--recipes snn,ann,sgd5] [--seed 0]

A recipe is ``name=optimizer:lr:epochs:schedule[:weight_decay]``, or one of the named ones below; ``snn`` and
``ann`` are the project's defaults for each network (:data:`slt_deploy.config.SNN_RECIPE` and ``ANN_RECIPE``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from datetime import datetime, timezone

import torch

from slt_deploy.config import ANN_RECIPE, SNN_RECIPE, DataConfig, ModelConfig, TrainConfig
from slt_deploy.data import load_dataset
from slt_deploy.models import initial_model, prunable_layers, resolve_config
from slt_deploy.search.masks import Mask
from slt_deploy.search.train import accuracy, make_optimizer, train_epoch
from slt_deploy.utils import derive_seed

NAMED = {
    "snn": SNN_RECIPE,
    "ann": ANN_RECIPE,
    "sgd5": TrainConfig(optimizer="sgd", lr=0.1, epochs=5, schedule="cosine"),       # the demo's old recipe
    "adam5": TrainConfig(optimizer="adam", lr=5e-3, epochs=5, schedule="cosine"),    # today's SNN and ANN recipe
    "adam15": TrainConfig(optimizer="adam", lr=1e-3, epochs=15, schedule="cosine"),  # REFERENCE section 9
}


def parse_recipe(text: str) -> tuple:
    if text in NAMED:
        return text, NAMED[text]
    name, _, spec = text.partition("=")
    parts = spec.split(":")
    cfg = TrainConfig(optimizer=parts[0], lr=float(parts[1]), epochs=int(parts[2]), schedule=parts[3],
                      **({"weight_decay": float(parts[4])} if len(parts) > 4 else {}))
    return name, cfg


def run(network: str, recipe: TrainConfig, split, data: DataConfig, seed: int) -> dict:
    """Train the dense network by ``recipe``; the test accuracy (all test images) after each epoch."""
    model_cfg = resolve_config(ModelConfig(name="mlp", spiking=network == "snn"), split.train.input_shape,
                               split.train.num_classes, "mnist")
    torch.manual_seed(derive_seed(seed, "init"))
    model = initial_model(model_cfg)
    layers = prunable_layers(model, ())
    mask = Mask.ones_like(layers)
    optimizer = make_optimizer(model, recipe)
    curve, start = [], time.perf_counter()
    for epoch in range(recipe.epochs):
        stats = train_epoch(model, split.train, data, recipe, optimizer, layers, mask, epoch, (seed, "final"),
                            data.timesteps, progress=False)
        acc = accuracy(model, split.test, data, data.timesteps, (seed,))
        curve.append({"epoch": epoch + 1, "loss": round(stats.loss, 4), "test_accuracy": round(acc, 4),
                      "lr": stats.lr})
        print(f"  {network} epoch {epoch + 1:2d}: loss {stats.loss:.4f}  test {100 * acc:6.2f} %  "
              f"({stats.seconds:.1f} s)", flush=True)
    return {"curve": curve, "final": curve[-1]["test_accuracy"], "seconds": round(time.perf_counter() - start, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipes", default="snn,ann,sgd5",
                    help="comma-separated recipes (named: %s, or name=opt:lr:epochs:schedule[:wd])" % ", ".join(NAMED))
    ap.add_argument("--networks", default="snn,ann", help="which networks to train by every recipe")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="", help="write the results as JSON here")
    args = ap.parse_args()
    torch.set_num_threads(1)
    data = DataConfig(dataset="mnist", timesteps=5)
    split = load_dataset(data)
    print(f"MNIST split: {len(split.train)} train / {len(split.test)} test, T={data.timesteps}, direct encoding, "
          f"seed {args.seed}")
    results = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": platform.node(),
               "cpu_threads": 1, "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "runs": []}
    for text in args.recipes.split(","):
        name, recipe = parse_recipe(text)
        for network in args.networks.split(","):
            print(f"{network} by recipe {name}: {recipe.optimizer} lr {recipe.lr} {recipe.schedule} "
                  f"{recipe.epochs} epochs, weight decay {recipe.weight_decay}, batch {recipe.batch_size}")
            out = run(network, recipe, split, data, args.seed)
            results["runs"].append({"network": network, "recipe": name, **recipe.to_dict(runtime=False), **out})
    print("\nfinal test accuracy (2,000 images):")
    for r in results["runs"]:
        print(f"  {r['network']:3s} {r['recipe']:10s} {100 * r['final']:6.2f} %  ({r['seconds']} s)")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
