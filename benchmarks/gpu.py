"""Training and fast-simulator throughput, CPU vs GPU, in one run (issue 16).

Training: samples/s of one training step (forward over T steps, per-step cross-entropy, backward, SGD step;
the batch is moved to the device every step, as the search does) for mlp and convnet (1x28x28), vgg16 and
resnet19 (3x32x32, CIFAR scale) and spikformer (1x28x28), T = 5, batch 128, default widths, random inputs
(direct encoding). Each model is timed with the per-step snnTorch loop and with the layer-wise loop (each
synapse layer over all T steps at once, only the neurons stepping in time); on the GPU with the deterministic
settings a search uses (cuDNN benchmark off, deterministic algorithms).

Fast simulator: samples/s of the numpy FastSim (one BLAS thread, its default) and of the torch TorchFastSim on
the GPU on the same ticket (``--ticket``, a trained MNIST ticket) lowered to Loihi fixed point, run on
``--sim-samples`` MNIST images (train and test splits of the offline set) with T = 5, spikes recorded and
activity counted; every spike, readout current and count is compared (bit-exact or the benchmark fails).

    python benchmarks/gpu.py --out DIR [--ticket mlp.safetensors] [--devices cpu,cuda] [--models ...]

``--models ""`` measures the fast simulator only.

A figure that was not measured is written "not measured". Results: DIR/gpu.json and DIR/gpu.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from slt_deploy.config import DataConfig, ModelConfig, TrainConfig
from slt_deploy.data import encode
from slt_deploy.models import build_model, resolve_config
from slt_deploy.search.train import make_optimizer, time_loss
from slt_deploy.utils import deterministic_torch

SHAPES = {"mlp": (1, 28, 28), "convnet": (1, 28, 28), "vgg16": (3, 32, 32), "resnet19": (3, 32, 32),
          "spikformer": (1, 28, 28)}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_rate(name: str, device: torch.device, layerwise: bool, steps: int, warmup: int, batch: int,
               timesteps: int) -> dict:
    cfg = resolve_config(ModelConfig(name=name), SHAPES[name], 10)
    torch.manual_seed(0)
    model = build_model(cfg).to(device)
    model.layerwise = layerwise
    model.train()
    optimizer = make_optimizer(model, TrainConfig())
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(batch, *SHAPES[name], generator=gen)
    x_seq = encode(x, "direct", timesteps)
    y = torch.randint(0, 10, (batch,), generator=gen)
    if device.type == "cuda":
        x_seq, y = x_seq.pin_memory(), y.pin_memory()

    def step():
        logits = model(x_seq.to(device, non_blocking=True))
        loss = time_loss(logits, y.to(device, non_blocking=True))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(warmup):
        step()
    sync(device)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        sync(device)
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    return {"samples_per_s": round(batch / median, 1), "step_ms_median": round(1000 * median, 2),
            "steps": steps, "warmup": warmup}


def measure_training(args, devices) -> list:
    rows = []
    for name in args.models:
        for device in devices:
            cpu = device.type == "cpu"
            steps = args.cpu_steps if cpu else args.gpu_steps
            steps = max(1, steps if name not in ("vgg16", "resnet19") or not cpu else args.cpu_steps_big)
            for layerwise in ((False,) if cpu and not args.cpu_layerwise else (False, True)):
                if name == "spikformer" and layerwise:
                    continue  # no layer-wise path: the Spikformer keeps the per-step loop
                row = {"model": name, "device": str(device), "loop": "layerwise" if layerwise else "per-step",
                       "batch": args.batch, "timesteps": args.timesteps}
                try:
                    # on a CPU one step of the big models takes seconds to minutes: no untimed warm-up step there
                    warmup = args.gpu_warmup if not cpu else 0 if name in ("vgg16", "resnet19") else 1
                    row.update(train_rate(name, device, layerwise, steps, warmup, args.batch, args.timesteps))
                except Exception as exc:  # noqa: BLE001  (recorded, not hidden: e.g. out of memory)
                    row["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
                print(json.dumps(row), flush=True)
                rows.append(row)
                if device.type == "cuda":
                    torch.cuda.empty_cache()
    return rows


def measure_fastsim(args, devices) -> dict:
    from slt_deploy.compile import first_mismatch, lower
    from slt_deploy.compile.stream import check_input
    from slt_deploy.data import load_dataset
    from slt_deploy.exporters.nir_format import ticket_to_nir
    from slt_deploy.simulate.fastsim import FastSim
    from slt_deploy.simulate.fastsim_torch import TorchFastSim
    from slt_deploy.ticket import Ticket

    ticket = Ticket.load(args.ticket)
    graph = ticket_to_nir(ticket)
    net = lower(graph, "fixed_pt", first_layer="host")
    split = load_dataset(DataConfig(n_train=0, n_test=0))
    images = np.concatenate([split.train.images, split.test.images])[:args.sim_samples]
    x = np.repeat((images.astype(np.float64) / 255.0)[:, None], args.timesteps, axis=1)
    out = {"ticket": str(args.ticket), "model": ticket.record.model.name, "sparsity": ticket.record.sparsity,
           "samples": int(len(x)), "timesteps": args.timesteps, "target": "fixed_pt"}
    numpy_sim = FastSim(net)  # preparation (effective weights) is not timed, for either simulator
    start = time.perf_counter()
    ref = numpy_sim.run(x)
    out["numpy_seconds"] = round(time.perf_counter() - start, 3)
    out["numpy_samples_per_s"] = round(len(x) / out["numpy_seconds"], 1)
    numpy_times = [out["numpy_seconds"]]
    for _ in range(args.sim_numpy_repeats - 1):
        start = time.perf_counter()
        numpy_sim.run(x)
        numpy_times.append(time.perf_counter() - start)
    out["numpy_runs"] = len(numpy_times)
    out["numpy_seconds_median"] = round(statistics.median(numpy_times), 3)
    start = time.perf_counter()
    check_input(net, x)  # part of every run above: the CPU input check alone
    out["numpy_input_check_seconds"] = round(time.perf_counter() - start, 4)
    start = time.perf_counter()
    numpy_sim.run(x, record_spikes=False, count=False)
    out["numpy_outputs_only_samples_per_s"] = round(len(x) / (time.perf_counter() - start), 1)
    out["accuracy"] = float((ref.predictions() == np.concatenate([split.train.labels, split.test.labels])
                             [:len(x)]).mean())
    for device in devices:
        if device.type != "cuda" and not args.sim_torch_cpu:
            continue
        sim = TorchFastSim(net, device)
        sim.run(x[:200])  # CUDA start-up and kernel loading, not part of the rate
        sends = []
        for _ in range(args.sim_repeats):  # part of every torch run: the input's one transfer alone
            sync(device)
            start = time.perf_counter()
            torch.as_tensor(x).to(device)
            sync(device)
            sends.append(time.perf_counter() - start)
        out[f"torch_{device.type}_input_transfer_seconds_median"] = round(statistics.median(sends), 4)
        times = []
        for _ in range(args.sim_repeats):
            sync(device)
            start = time.perf_counter()
            ours = sim.run(x)
            sync(device)
            times.append(time.perf_counter() - start)
        same = (first_mismatch(ours.spikes, ref.spikes) is None
                and np.array_equal(ours.readout_current, ref.readout_current)
                and np.array_equal(ours.outputs, ref.outputs) and ours.counts == ref.counts)
        median = statistics.median(times)
        quick = []
        for _ in range(args.sim_repeats):  # what an accuracy evaluation needs: outputs only
            sync(device)
            start = time.perf_counter()
            sim.run(x, record_spikes=False, count=False)
            sync(device)
            quick.append(time.perf_counter() - start)
        out[f"torch_{device.type}_outputs_only_samples_per_s"] = round(len(x) / statistics.median(quick), 1)
        out[f"torch_{device.type}_outputs_only_speedup"] = round(
            out[f"torch_{device.type}_outputs_only_samples_per_s"] / out["numpy_outputs_only_samples_per_s"], 2)
        out[f"torch_{device.type}_seconds_median"] = round(median, 4)
        out[f"torch_{device.type}_samples_per_s"] = round(len(x) / median, 1)
        out[f"torch_{device.type}_bit_exact"] = bool(same)
        out[f"torch_{device.type}_speedup"] = round(out["numpy_seconds"] / median, 2)
        out[f"torch_{device.type}_speedup_vs_numpy_median"] = round(out["numpy_seconds_median"] / median, 2)
        if not same:
            raise SystemExit("the torch fast simulator differs from the numpy one")
    return out


def machine(devices) -> dict:
    info = {"node": platform.node(), "cpu_cores": os.cpu_count(), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "python": platform.python_version(),
            "load_average_at_start": round(os.getloadavg()[0], 2)}
    for device in devices:
        if device.type == "cuda":
            info["gpu"] = torch.cuda.get_device_name(device)
            info["cuda"] = torch.version.cuda
    return info


def markdown(result: dict) -> str:
    lines = [f"Machine: {json.dumps(result['machine'])}; date {result['date']}; command `{result['command']}`", "",
             "| model | device | loop | samples/s | step (ms) |", "|---|---|---|---|---|"]
    for r in result["training"]:
        rate = r.get("samples_per_s", f"not measured ({r.get('error', 'skipped')})")
        lines.append(f"| {r['model']} | {r['device']} | {r['loop']} | {rate} | {r.get('step_ms_median', '')} |")
    fs = result.get("fastsim")
    if fs:
        lines += ["", f"Fast simulator ({fs['model']} ticket, {fs['samples']} MNIST samples, T = {fs['timesteps']}, "
                      f"fixed_pt): numpy {fs['numpy_samples_per_s']} samples/s, torch on the GPU "
                      f"{fs.get('torch_cuda_samples_per_s', 'not measured')} samples/s "
                      f"(x{fs.get('torch_cuda_speedup', 'not measured')}; median of {fs.get('numpy_runs', 1)} numpy "
                      f"runs: x{fs.get('torch_cuda_speedup_vs_numpy_median', 'not measured')}), bit-exact: "
                      f"{fs.get('torch_cuda_bit_exact', 'not measured')}; outputs only (no spikes recorded, no "
                      f"counts): numpy {fs['numpy_outputs_only_samples_per_s']}, torch on the GPU "
                      f"{fs.get('torch_cuda_outputs_only_samples_per_s', 'not measured')} samples/s "
                      f"(x{fs.get('torch_cuda_outputs_only_speedup', 'not measured')})"]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="benchmarks/results")
    ap.add_argument("--devices", default="cpu,cuda", help="comma-separated; cuda is skipped where there is none")
    ap.add_argument("--models", default="mlp,convnet,vgg16,resnet19,spikformer")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--timesteps", type=int, default=5)
    ap.add_argument("--gpu-steps", type=int, default=20)
    ap.add_argument("--gpu-warmup", type=int, default=3)
    ap.add_argument("--cpu-steps", type=int, default=3)
    ap.add_argument("--cpu-steps-big", type=int, default=1, help="timed CPU steps of vgg16 and resnet19")
    ap.add_argument("--cpu-layerwise", action="store_true", help="also time the layer-wise loop on the CPU")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--ticket", help="trained ticket for the fast-simulator figures (skipped without one)")
    ap.add_argument("--sim-samples", type=int, default=10000)
    ap.add_argument("--sim-repeats", type=int, default=3)
    ap.add_argument("--sim-numpy-repeats", type=int, default=1, help="numpy runs (the first is also reported alone)")
    ap.add_argument("--sim-torch-cpu", action="store_true", help="also time the torch simulator on the CPU")
    args = ap.parse_args(argv)
    args.models = [m for m in args.models.split(",") if m]
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = []
    for spec in args.devices.split(","):
        if spec.startswith("cuda") and not torch.cuda.is_available():
            print(f"{spec}: no GPU here, not measured", flush=True)
            continue
        devices.append(torch.device(spec if spec != "cuda" else "cuda:0"))
    for device in devices:
        deterministic_torch(device)
    result = {"command": "python benchmarks/gpu.py " + " ".join(sys.argv[1:] if argv is None else argv),
              "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": machine(devices)}
    result["training"] = measure_training(args, devices)
    if args.ticket:
        try:
            result["fastsim"] = measure_fastsim(args, devices)
        except Exception:  # noqa: BLE001
            traceback.print_exc()
            result["fastsim_error"] = traceback.format_exc().splitlines()[-1]
        print(json.dumps(result.get("fastsim", result.get("fastsim_error"))), flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "gpu.md").write_text(markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
