"""Training time of the demo's dense SNN against its ANN twin, in the same run (issue 31).

The demo's recipe (LeNet-300-100, 8,000/2,000 MNIST split, direct encoding, T = 5, SGD lr 0.1, ``--epochs``
epochs), ``search --method dense`` for the spiking network and for its ANN twin (``model.spiking=false``),
each ``--repeats`` times in alternation, each into a fresh runs folder (nothing cached). Search time is the
ticket's recorded training wall time (``wall_time_s``); the CPU time of the whole search call (process time:
training plus data loading and evaluation) is recorded too, as it moves less on a shared machine (use
``--threads 1`` for it to mean one core's work). Both are also run with the constant first layer computed
at every step (``SpikingNet.compute_once = False``, the code before issue 31) for the speed-up it brings.

The SNN's floor on this machine, a measurement only (never the product): the same SNN training with every snnTorch
neuron's step replaced by the identity (``snn matmul floor``: a ``Leaky`` whose forward returns its input, so the
time loop, the first layer once and the T steps of the later layers stay as they are). It costs what the SNN costs
beyond its ANN twin except the neurons: the T-step matrix products, their backward pass and the time loop; the
SNN minus the floor is what snnTorch's neurons cost. A warm-up run of each network first (discarded) keeps the
first timed run from paying for cold caches.

Target: SNN / ANN <= 1.2 with equal accuracy. Prints a table and writes JSON (numbers, machine, command, date).

    .venv/bin/python benchmarks/train_speed.py [--epochs 5] [--repeats 2] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import snntorch as snn

from slt_deploy import threads
from slt_deploy.config import RunConfig, SearchConfig
from slt_deploy.demo import demo_config
from slt_deploy.models import SpikingNet, layers
from slt_deploy.search import search


def config(spiking: bool, epochs: int) -> RunConfig:
    base = demo_config()
    return base.replace(model=base.model.replace(spiking=spiking), train=base.train.replace(epochs=epochs),
                        search=SearchConfig(method="dense", seed=0))


class IdentityNeuron(snn.Leaky):
    """The floor's neuron: an snnTorch Leaky (so the network, its state dict and the ticket are as before) whose
    step returns its input: no membrane, no spike, no surrogate."""

    def forward(self, input_, mem=None):
        return input_


def one_run(spiking: bool, once: bool, epochs: int, floor: bool = False) -> dict:
    SpikingNet.compute_once = once
    leaky = layers.leaky
    if floor:
        layers.leaky = lambda neuron: IdentityNeuron(**layers._neuron_args(neuron))
    try:
        with tempfile.TemporaryDirectory(prefix="train-speed-") as runs:
            cpu = time.process_time()
            ticket = search(config(spiking, epochs), runs, progress=False, echo=lambda _line: None).ticket
            cpu = time.process_time() - cpu
    finally:
        SpikingNet.compute_once = True
        layers.leaky = leaky
    return {"seconds": sum(ticket.record.wall_time_s), "cpu_seconds": cpu, "accuracy": ticket.record.accuracy}


def machine_state() -> dict:
    procs = subprocess.run(["ps", "-e", "--no-headers", "-o", "pcpu,comm"], capture_output=True, text=True).stdout
    busy = [line.strip() for line in procs.splitlines() if line.strip() and float(line.split()[0]) >= 20.0]
    return {"load_average_1_5_15": [round(v, 2) for v in os.getloadavg()], "processes": len(procs.splitlines()),
            "processes_over_20pct_cpu": busy}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=1, help="untimed runs of the SNN and the ANN first")
    ap.add_argument("--threads", type=int, default=None, help="default: the toolkit's (slt_deploy/threads.py)")
    ap.add_argument("--out", default="benchmarks/results/train_speed.json")
    args = ap.parse_args()
    settings = threads.apply(threads.resolve(args.threads))
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    before = machine_state()
    variants = [("snn", True, True, False), ("ann", False, True, False), ("snn matmul floor", True, True, True),
                ("snn every step", True, False, False), ("ann every step", False, False, False)]
    for _ in range(args.warmup):
        one_run(True, True, args.epochs)
        one_run(False, True, args.epochs)
    runs = {name: [] for name, *_ in variants}
    for r in range(args.repeats):
        for name, spiking, once, floor in (variants if r % 2 == 0 else variants[::-1]):
            runs[name].append(one_run(spiking, once, args.epochs, floor))
            print(f"  {name:15s} repeat {r + 1}: {runs[name][-1]['seconds']:6.2f} s "
                  f"(whole search {runs[name][-1]['cpu_seconds']:.2f} s CPU), "
                  f"accuracy {100 * runs[name][-1]['accuracy']:.2f} %", flush=True)
    median = {name: statistics.median(x["seconds"] for x in v) for name, v in runs.items()}
    cpu = {name: statistics.median(x["cpu_seconds"] for x in v) for name, v in runs.items()}
    result = {
        "command": "python " + " ".join(sys.argv), "date": started,
        "machine": {"node": platform.node(), "cores": threads.available_cores(), "threads": settings.threads,
                    "before": before, "after": machine_state(),
                    "note": "shared machine: other helpers' jobs ran on the same cores"},
        "recipe": "demo: mlp 784-300-100-10, mnist 8000/2000, direct, T=5, sgd lr 0.1, dense, "
                  f"{args.epochs} epochs, seed 0",
        "runs": runs, "median_seconds": median, "median_cpu_seconds_whole_search": cpu,
        "snn_over_ann_cpu": cpu["snn"] / cpu["ann"],
        "floor_over_ann_cpu": cpu["snn matmul floor"] / cpu["ann"],
        "neurons_cpu_seconds": cpu["snn"] - cpu["snn matmul floor"],
        "snn_over_ann": median["snn"] / median["ann"],
        "snn_over_ann_every_step": median["snn every step"] / median["ann every step"],
        "snn_speedup_from_computing_once": median["snn every step"] / median["snn"],
        "accuracy_snn": [x["accuracy"] for x in runs["snn"]], "accuracy_ann": [x["accuracy"] for x in runs["ann"]],
        "target_snn_over_ann": 1.2,
    }
    print(f"median search time: " + ", ".join(f"{k} {v:.2f} s" for k, v in median.items()))
    print(f"CPU seconds of the whole search (training, evaluation, data): " +
          ", ".join(f"{k} {v:.2f} s" for k, v in cpu.items()) + f"; SNN / ANN {result['snn_over_ann_cpu']:.2f}x")
    print(f"SNN's floor (neurons replaced by the identity) / ANN: {result['floor_over_ann_cpu']:.2f}x; "
          f"snnTorch's neurons: {result['neurons_cpu_seconds']:.2f} s CPU of the SNN's {cpu['snn']:.2f} s")
    print(f"SNN / ANN: {result['snn_over_ann']:.2f}x (target <= 1.2; every step, as before: "
          f"{result['snn_over_ann_every_step']:.2f}x); SNN sped up {result['snn_speedup_from_computing_once']:.2f}x "
          f"by computing its first layer once")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
