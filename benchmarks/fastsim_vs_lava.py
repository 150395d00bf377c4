"""Samples per second of the fast simulator (slt_deploy.simulate.fastsim) vs Lava fixed_pt, on the same network and samples.

The network is, by default, what users deploy: the demo's trained ticket (``slt-deploy demo``'s search, IMP with
the energy objective on LeNet-300-100; the benchmark runs that search into ``--demo-runs``, default
``demo_out/runs``, which returns at once when ``make demo`` already ran it there). ``--ticket PATH`` takes any
ticket; ``--synthetic`` the former default, an untrained MLP with a global magnitude mask at ``--sparsity`` whose
hidden layers are scaled to fire at ``--rate`` (it fires at 10 %: sparser than a trained ticket, so it flatters
both simulators). It is exported to NIR, lowered to Lava fixed_pt (host-computed first layer), and run on real
MNIST test images (direct encoding):

- Lava: one streamed ``run_lava`` over ``--samples`` samples (its reported total: build, compile, run, read);
- fastsim: the same samples, timed ``--repeats`` times including its preparation of the network (effective
  weights; Lava's time includes building and compiling), spikes recorded and activity counted, and on
  ``--throughput-samples`` samples for its rate on a large batch.

The ratio is fastsim samples/s (median run) over Lava samples/s on the same samples, in wall-clock time; Lava's
time includes its compile and process start-up (about 0.3 s), which more samples amortize. On a shared machine
wall-clock time favours Lava, whose ~10 worker processes take a larger share of busy cores than fastsim's one
thread, so the CPU time of both (Lava: itself plus its worker processes) is reported as well.
Every spike of every population (and every readout current) is compared, and the benchmark fails (exit 1)
unless all are identical.

The floor: the dense matrix products of the same layer shapes for the same samples, numpy float32 and float64
(``--floor-dtype`` picks the one the target is judged on), one BLAS thread as fastsim uses: ``(N*T, in) @
(in, out)`` for every chip layer and ``(N, 784) @ (784, 300)`` for the host layer, which the deployment (and
fastsim) computes once per sample; the floor with the host layer at every step is reported too. Targets:
fastsim >= 200x Lava fixed_pt, and within 2x of the floor. Results are printed and written as JSON (numbers,
machine, command, date) to ``--out``.

    make demo   # or let the benchmark run the demo's search
    .venv/bin/python benchmarks/fastsim_vs_lava.py [--ticket PATH | --synthetic] [--samples 300] [--timesteps 5]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from slt_deploy.compile import first_mismatch, lower

from slt_deploy.simulate.lava import run_lava
from slt_deploy.config import DataConfig, ModelConfig, NeuronConfig
from slt_deploy.data import load_dataset
from slt_deploy.exporters.nir_format import network_to_nir, ticket_to_nir
from slt_deploy.simulate.fastsim import FastSim
from slt_deploy.search.masks import apply_mask, mask_at_sparsity
from slt_deploy.models import build_model, prunable_layers, resolve_config

INPUT_SHAPE = (1, 28, 28)


def calibrated_mlp(sparsity: float, rate: float, images: np.ndarray, timesteps: int, seed: int):
    """An untrained 784-300-100-10 MLP, magnitude-masked, hidden layers scaled to fire at about ``rate``.

    Each hidden layer's gain is found by bisection (log scale) on the floating_pt simulation of the network so
    far, layer by layer, so the benchmark runs a network whose activity looks like a trained one's.
    """
    torch.manual_seed(seed)
    cfg = resolve_config(ModelConfig(name="mlp", hidden=(300, 100), neuron=NeuronConfig(beta=0.5, reset="zero")),
                         INPUT_SHAPE, 10)
    model = build_model(cfg).eval()
    layers = prunable_layers(model)
    mask = mask_at_sparsity(layers, tuple(layers), sparsity, "global")
    apply_mask(layers, mask)
    x = np.repeat(images[:, None], timesteps, axis=1)
    for name, pop in (("fc1", "fc1_lif"), ("fc2", "fc2_lif")):
        weight = layers[name].weight
        base = weight.detach().clone()
        lo, hi = -2.0, 4.0  # log10 of the gain
        for _ in range(14):
            mid = (lo + hi) / 2
            with torch.no_grad():
                weight.copy_(base * 10 ** mid)
            net = lower(network_to_nir(model, input_shape=INPUT_SHAPE), "floating_pt")
            fired = FastSim(net).run(x, count=False).spikes[pop].mean()
            lo, hi = (mid, hi) if fired < rate else (lo, mid)
    return model, mask


def mnist(n: int):
    """(images in [0, 1], labels) of the first ``n`` MNIST test samples."""
    ds = load_dataset(DataConfig(n_train=0, n_test=n))
    images = ds.test.images[:n].astype(np.float64)
    images = images / 255.0 if ds.test.images.dtype == np.uint8 else images
    return images, ds.test.labels[:n]


def machine() -> dict:
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    return {"node": platform.node(), "cpu": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "load_average_1_5_15": [round(v, 2) for v in load],
            "python": platform.python_version(), "numpy": np.__version__, "torch": torch.__version__,
            "note": "shared machine (other workers run on the same cores); timings are wall clock"}


def cpu_seconds() -> float:
    """CPU time of this process and of its finished child processes (Lava's workers are joined when it stops)."""
    me, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime


def demo_ticket(runs_dir: str) -> Path:
    """The demo's ticket: its search (resumed, so immediate when ``slt-deploy demo`` already ran into runs_dir)."""
    from slt_deploy.cost.objective import round_meter
    from slt_deploy.demo import demo_energy_config
    from slt_deploy.search import search

    config = demo_energy_config()
    return search(config, runs_dir, progress=False, echo=lambda _line: None, meter=round_meter(config)).ticket_path


def matmul_floor(lowered, n: int, steps: int, dtype, repeats: int) -> dict:
    """Median seconds of the dense products of the network's layer shapes (see the module docstring)."""
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    shapes = [(p.weight.shape[1], p.weight.shape[0]) for p in lowered.projections]  # (in, out)
    host = (lowered.host.weight.shape[1], lowered.host.weight.shape[0]) if lowered.host is not None else None
    chip = [(rng.random((n * steps, i)).astype(dtype), rng.random((i, o)).astype(dtype)) for i, o in shapes]
    first = (rng.random((n, host[0])).astype(dtype), rng.random(host).astype(dtype)) if host else None
    first_every = (np.repeat(first[0], steps, axis=0), first[1]) if host else None

    def median(pairs):
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            for a, b in pairs:
                a @ b
            times.append(time.perf_counter() - t0)
        return statistics.median(times)

    with threadpool_limits(limits=1, user_api="blas"):
        median(chip + ([first] if first else []))  # warm-up
        once = median(chip + ([first] if first else []))
        every = median(chip + ([first_every] if first else []))
    return {"seconds_host_once": once, "seconds_host_every_step": every,
            "layer_shapes_in_out": ([list(host)] if host else []) + [list(x) for x in shapes]}


def agreement(sim, lava) -> dict:
    """Fraction of equal spike entries over all populations, plus the first mismatch (None when all agree)."""
    equal = total = 0
    for name, ref in lava.spikes.items():
        equal += int((sim.spikes[name] == ref).sum())
        total += ref.size
    return {"spike_entries_compared": total, "spike_agreement": equal / total if total else 1.0,
            "first_mismatch": first_mismatch(sim.spikes, lava.spikes),
            "readout_current_equal": bool(np.array_equal(sim.readout_current, lava.readout_current)),
            "predictions_equal": bool(np.array_equal(sim.predictions(), lava.predictions()))}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ticket", default=None, help="ticket file (.safetensors); default: the demo's ticket")
    ap.add_argument("--synthetic", action="store_true", help="the calibrated untrained MLP instead of a ticket")
    ap.add_argument("--demo-runs", default="demo_out/runs", help="where the demo's search is (or is run)")
    ap.add_argument("--floor-dtype", default="float32", choices=("float32", "float64"))
    ap.add_argument("--samples", type=int, default=300, help="MNIST test samples run by both simulators")
    ap.add_argument("--timesteps", type=int, default=5)
    ap.add_argument("--sparsity", type=float, default=0.9)
    ap.add_argument("--rate", type=float, default=0.1, help="target firing rate of the calibrated hidden layers")
    ap.add_argument("--repeats", type=int, default=11)
    ap.add_argument("--throughput-samples", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="benchmarks/results/fastsim_vs_lava.json")
    args = ap.parse_args()

    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    host = machine()
    images, labels = mnist(max(args.samples, args.throughput_samples))
    if not args.synthetic:
        ticket = args.ticket or demo_ticket(args.demo_runs)
        graph = ticket_to_nir(ticket)
        network = f"ticket {ticket}" + ("" if args.ticket else " (the demo's search)")
    else:
        model, mask = calibrated_mlp(args.sparsity, args.rate, images[:32], args.timesteps, args.seed)
        graph = network_to_nir(model, input_shape=INPUT_SHAPE, mask=mask)
        network = (f"untrained MLP 784-300-100-10, global magnitude mask at {mask.sparsity():.3f} sparsity, "
                   f"hidden layers scaled to ~{args.rate:.0%} firing (seed {args.seed})")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        lowered = lower(graph, "fixed_pt")
    x = np.repeat(images[:args.samples, None], args.timesteps, axis=1)

    # fastsim first: Lava's teardown keeps working in this process for a while after run_lava returns
    FastSim(lowered).run(x[:2])  # untimed warm-up (first BLAS call, page faults)
    times, cpu_times = [], []
    for _ in range(args.repeats):  # preparation included, as Lava's time includes building and compiling
        t0, c0 = time.perf_counter(), time.process_time()
        sim = FastSim(lowered)
        result = sim.run(x)
        times.append(time.perf_counter() - t0)
        cpu_times.append(time.process_time() - c0)
    fast_s, fast_cpu = statistics.median(times), statistics.median(cpu_times)

    xt = np.repeat(images[:args.throughput_samples, None], args.timesteps, axis=1)
    big_times = []
    for _ in range(3):
        t0 = time.perf_counter()
        sim.run(xt)
        big_times.append(time.perf_counter() - t0)
    big_s = statistics.median(big_times)

    floors = {dt: matmul_floor(lowered, args.samples, args.timesteps, np.dtype(dt), args.repeats)
              for dt in ("float32", "float64")}
    floor_s = floors[args.floor_dtype]["seconds_host_once"]

    cpu0 = cpu_seconds()
    lava = run_lava(lowered, x)
    lava_cpu = cpu_seconds() - cpu0
    lava_s = lava.seconds["total"]
    match = agreement(result, lava)

    rates = {name: float(s.mean()) for name, s in result.spikes.items()}
    report = {
        "command": "python " + " ".join(sys.argv),
        "date": started,
        "machine": host,
        "network": network,
        "lowered": lowered.summary().splitlines(),
        "compiler_warnings": [str(w.message) for w in caught],
        "samples": args.samples,
        "timesteps": args.timesteps,
        "lava_steps": lava.steps,
        "firing_rates": rates,
        "lava": {"seconds": lava.seconds, "cpu_seconds": lava_cpu, "samples_per_s": args.samples / lava_s,
                 "lava_run_only_samples_per_s": args.samples / lava.seconds["run"]},
        "fastsim": {"seconds_median": fast_s, "seconds_all": times, "cpu_seconds_median": fast_cpu,
                    "cpu_seconds_all": cpu_times,
                    "samples_per_s": args.samples / fast_s,
                    "samples_per_s_best": args.samples / min(times),
                    "throughput_samples": args.throughput_samples, "throughput_seconds_median": big_s,
                    "throughput_samples_per_s": args.throughput_samples / big_s},
        "speedup_same_samples": lava_s / fast_s,
        "speedup_cpu_time": lava_cpu / fast_cpu,
        "speedup_vs_lava_run_only": lava.seconds["run"] / fast_s,
        "target_speedup": 200,
        "matmul_floor": floors,
        "floor_dtype": args.floor_dtype,
        "fastsim_over_floor": fast_s / floor_s,
        "fastsim_over_floor_host_every_step": fast_s / floors[args.floor_dtype]["seconds_host_every_step"],
        "target_over_floor": 2.0,
        "agreement": match,
        "lava_accuracy_on_samples": float((lava.predictions() == labels[:args.samples]).mean()),
    }

    print(f"machine: {host['node']} ({host['cpu_count']} CPUs, load {host['load_average_1_5_15']}; shared)")
    print(f"network: {network}")
    print(f"firing rates: " + ", ".join(f"{k} {v:.3f}" for k, v in rates.items()))
    print(f"Lava fixed_pt : {args.samples} samples x T={args.timesteps} in {lava_s:.2f} s "
          f"-> {args.samples / lava_s:.1f} samples/s")
    print(f"fastsim       : same samples in {fast_s * 1e3:.2f} ms (median of {args.repeats}, best "
          f"{min(times) * 1e3:.2f} ms) -> {args.samples / fast_s:.0f} samples/s; {args.throughput_samples} "
          f"samples in {big_s:.2f} s -> {args.throughput_samples / big_s:.0f} samples/s")
    print(f"speedup (same samples): {lava_s / fast_s:.0f}x wall clock (target >= 200x); "
          f"{lava_cpu / fast_cpu:.0f}x in CPU time ({lava_cpu:.2f} s vs {fast_cpu * 1e3:.2f} ms)")
    print(f"matmul floor ({args.floor_dtype}, 1 thread, host layer once per sample): {floor_s * 1e3:.2f} ms "
          f"-> fastsim is {fast_s / floor_s:.2f}x the floor (target <= 2x); with the host layer at every step "
          f"{floors[args.floor_dtype]['seconds_host_every_step'] * 1e3:.2f} ms; float64 floor "
          f"{floors['float64']['seconds_host_once'] * 1e3:.2f} ms")
    print(f"spike agreement: {match['spike_agreement']:.6f} over {match['spike_entries_compared']} entries; "
          f"first mismatch: {match['first_mismatch']}; readout currents equal: {match['readout_current_equal']}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
    return 0 if match["first_mismatch"] is None and match["readout_current_equal"] else 1


if __name__ == "__main__":
    sys.exit(main())
