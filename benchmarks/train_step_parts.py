"""Where a training epoch's CPU time goes, part by part: the demo's dense SNN, its matmul floor, its ANN twin (issue 31).

The demo's recipe (LeNet-300-100, 8,000 MNIST images, direct encoding, T = 5, Adam, batch 128), the steps of
``search.train.train_epoch`` timed one by one (process time, one thread): the batch and its encoding, forward and
loss, backward, the mask after the gradients and after the step (nothing is pruned: skipped, as in training), and
Adam's step. ``floor`` is the SNN with every neuron's step replaced by the identity (``train_speed.py``'s
``IdentityNeuron``): the time loop and the T-step products without the neurons, so SNN minus floor is what
snnTorch's neurons cost, and floor minus ANN is what the later layers' T steps cost. One warm-up epoch, then
``--epochs`` timed epochs, each network in turn, ``--repeats`` times.

    .venv/bin/python benchmarks/train_step_parts.py [--epochs 2] [--repeats 2] [--layerwise]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections import defaultdict

import torch

from slt_deploy import threads
from slt_deploy.data import batches, encode, load_dataset
from slt_deploy.demo import demo_config
from slt_deploy.models import layers as model_layers
from slt_deploy.models.registry import build_model, prunable_layers, resolve_config
from slt_deploy.search.masks import Mask, apply_mask, mask_multipliers
from slt_deploy.search.train import make_optimizer, time_loss
from slt_deploy.utils import generator

sys.path.insert(0, os.path.dirname(__file__))
from train_speed import IdentityNeuron  # noqa: E402

PARTS = ("batch+encode", "forward+loss", "backward", "mask", "adam")


def network(kind: str, cfg, split, layerwise: bool):
    leaky = model_layers.leaky
    if kind == "floor":
        model_layers.leaky = lambda neuron: IdentityNeuron(**model_layers._neuron_args(neuron))
    try:
        torch.manual_seed(0)
        model = build_model(resolve_config(cfg.model.replace(spiking=kind != "ann"), split.train.input_shape, 10))
    finally:
        model_layers.leaky = leaky
    model.layerwise = layerwise
    return model


def epoch_parts(model, optimizer, cfg, split, epoch: int) -> dict:
    layers = prunable_layers(model)
    pruned = mask_multipliers(layers, Mask.ones_like(layers))
    gen = generator(0, "parts", "epoch", epoch)
    model.train()
    spent = defaultdict(float)
    data = iter(batches(split.train, cfg.train.batch_size, shuffle=True, generator=gen))
    while True:
        t0 = time.process_time()
        try:
            x, y = next(data)
        except StopIteration:
            break
        x_seq = encode(x, cfg.data.encoding, cfg.data.timesteps, gen)
        t1 = time.process_time()
        loss = time_loss(model(x_seq), y)
        t2 = time.process_time()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        t3 = time.process_time()
        apply_mask(layers, pruned)
        t4 = time.process_time()
        optimizer.step()
        t5 = time.process_time()
        apply_mask(layers, pruned)
        t6 = time.process_time()
        for part, seconds in zip(PARTS, (t1 - t0, t2 - t1, t3 - t2, (t4 - t3) + (t6 - t5), t5 - t4)):
            spent[part] += seconds
    return spent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--layerwise", action="store_true", help="the SNN and its floor layer by layer over T steps")
    args = ap.parse_args()
    threads.apply(threads.resolve(1))
    cfg = demo_config()
    split = load_dataset(cfg.data)
    print(f"ms of CPU per epoch (median of {args.repeats}; load average {os.getloadavg()[0]:.2f} at the start)")
    results = defaultdict(list)
    for _ in range(args.repeats):
        for kind in ("snn", "floor", "ann"):
            model = network(kind, cfg, split, args.layerwise and kind != "ann")
            optimizer = make_optimizer(model, cfg.train)
            epoch_parts(model, optimizer, cfg, split, 0)  # warm-up
            total = defaultdict(float)
            for epoch in range(1, args.epochs + 1):
                for part, seconds in epoch_parts(model, optimizer, cfg, split, epoch).items():
                    total[part] += seconds / args.epochs
            results[kind].append(total)
    for kind, runs in results.items():
        median = {p: statistics.median(r[p] for r in runs) * 1000 for p in PARTS}
        print(f"{kind:6s} " + "  ".join(f"{p} {v:5.0f}" for p, v in median.items()) +
              f"  total {sum(median.values()):5.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
