"""snnTorch == Lava, spike for spike, on real MNIST test samples (the full-size check behind tests/test_lava.py).

For each network (a small MLP and a small conv net, dense and 80 %-sparse, briefly trained on MNIST so the
activity is realistic; plus any ``--ticket`` files) it lowers the NIR export once per target and streams all
samples through one Lava run, then reports:

- floating_pt: the first mismatching layer/step against snnTorch in float64 (expected: none) and the number of
  spikes that differ from the float32 model (membranes within float32 rounding of the threshold), the largest
  logit difference, and the predictions;
- fixed_pt: spike agreement and prediction agreement with the float model, accuracy, per-layer quantization;
- wall time of each Lava run (build + compile + run) and steps per second.

Run: ``.venv/bin/python benchmarks/lava_equivalence.py --samples 200`` (about a minute on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from slt_deploy.compile import first_mismatch, lower

from slt_deploy.simulate.lava import run_lava
from slt_deploy.compile.reference import record_snntorch
from slt_deploy.config import DataConfig, ModelConfig, TrainConfig
from slt_deploy.data import encode, load_mnist
from slt_deploy.exporters.nir_format import network_to_nir
from slt_deploy.search.masks import Mask, prune_magnitude
from slt_deploy.models import build_model, prunable_layers
from slt_deploy.search.train import make_optimizer, train_epoch


def train(cfg: ModelConfig, data, epochs: int, sparsity: float, seed: int):
    torch.manual_seed(seed)
    model = build_model(cfg)
    layers = prunable_layers(model)
    mask = Mask.ones_like(layers)
    tcfg = TrainConfig(epochs=epochs, optimizer="adam", lr=2e-3, weight_decay=0.0, schedule="constant",
                       batch_size=64)
    dcfg = DataConfig(timesteps=5)
    phases = [mask]
    if sparsity:
        phases.append(None)  # retrain after pruning
    for phase, m in enumerate(phases):
        if m is None:
            mask = prune_magnitude(layers, mask, sparsity, "global")
            with torch.no_grad():
                for name, keep in mask.items():
                    layers[name].weight.mul_(keep.to(layers[name].weight.dtype))
        opt = make_optimizer(model, tcfg)
        for epoch in range(epochs):
            train_epoch(model, data.train, dcfg, tcfg, opt, layers, mask, epoch, (seed, phase), 5, progress=False)
    return model.eval()


def check(name: str, model, x_seq: torch.Tensor, labels: np.ndarray) -> dict:
    graph = network_to_nir(model, input_shape=tuple(x_seq.shape[2:]))
    x = x_seq.transpose(0, 1)
    logits64, ref64 = record_snntorch(model, x_seq, torch.float64)
    _, ref32 = record_snntorch(model, x_seq)
    row = {"network": name, "samples": int(x.shape[0]), "timesteps": int(x.shape[1]),
           "rates": {k: round(float(v.mean()), 4) for k, v in ref64.items()},
           "accuracy_snntorch": float((logits64.sum(1).argmax(1) == labels).mean())}
    results = {}
    for target in ("floating_pt", "fixed_pt"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            net = lower(graph, target)
        start = time.perf_counter()
        res = run_lava(net, x)
        wall = time.perf_counter() - start
        order = [p.name for p in net.populations]
        results[target] = res
        entry = {"seconds": round(wall, 2), "lava_steps": res.steps, "steps_per_s": round(res.steps / wall, 1),
                 "processes": res.processes,
                 "synapses": {p.name: ("Sparse" if type(p.weight).__name__ == "csr_matrix" else "Dense")
                              for p in net.projections},
                 "accuracy": float((res.predictions() == labels).mean())}
        if target == "floating_pt":
            entry["first_mismatch_vs_float64"] = first_mismatch(res.spikes, ref64, order)
            entry["spike_diffs_vs_float32"] = int(sum((res.spikes[k] != ref32[k]).sum() for k in order))
            entry["first_mismatch_vs_float32"] = first_mismatch(res.spikes, ref32, order)
            entry["max_logit_diff"] = float(np.abs(res.outputs - logits64).max())
        else:
            entry["spike_agreement_vs_float"] = {k: round(float((res.spikes[k] == ref64[k]).mean()), 4)
                                                 for k in order}
            entry["prediction_agreement_vs_float"] = float((res.predictions() == logits64.sum(1).argmax(1)).mean())
            entry["quantization"] = [q.line() for q in net.quantization]
        row[target] = entry
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=200, help="MNIST test samples (>= 100 for the full check)")
    ap.add_argument("--train", type=int, default=2000, help="training samples for the quick training")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--ticket", action="append", default=[], help="also check this ticket file (repeatable)")
    ap.add_argument("--out", type=Path, help="write the results as JSON here")
    args = ap.parse_args(argv)

    data = load_mnist(DataConfig(n_train=args.train, n_test=args.samples))
    x = torch.from_numpy(data.test.images[:args.samples]).float() / 255
    x_seq = encode(x, "direct", 5)
    labels = data.test.labels[:args.samples]
    nets = []
    for kind, hidden in (("mlp", (128, 64)), ("convnet", (8, 16, 64))):
        cfg = ModelConfig(name=kind, hidden=hidden, input_shape=(1, 28, 28), num_classes=10)
        for sparsity in (0.0, 0.8):
            t0 = time.perf_counter()
            model = train(cfg, data, args.epochs, sparsity, seed=0)
            print(f"trained {kind} sparsity={sparsity} in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
            nets.append((f"{kind}-{'sparse' if sparsity else 'dense'}", model, x_seq))
    from slt_deploy.ticket import Ticket

    for path in args.ticket:
        ticket = Ticket.load(path)
        t = ticket.record.timesteps
        nets.append((f"ticket:{Path(path).name}", ticket.build_model(), encode(x, "direct", t)))

    rows = []
    ok = True
    for name, model, xs in nets:
        row = check(name, model, xs, labels)
        rows.append(row)
        f, q = row["floating_pt"], row["fixed_pt"]
        ok &= f["first_mismatch_vs_float64"] is None
        print(f"{name}: rates {row['rates']}\n"
              f"  float: vs float64 snnTorch {f['first_mismatch_vs_float64'] or 'identical'}; "
              f"vs float32 {f['spike_diffs_vs_float32']} differing spikes; max logit diff {f['max_logit_diff']:.1e}; "
              f"acc {f['accuracy']:.3f} (snnTorch {row['accuracy_snntorch']:.3f}); {f['seconds']} s "
              f"({f['steps_per_s']} steps/s, {f['processes']} processes, {f['synapses']})\n"
              f"  fixed: spike agreement {q['spike_agreement_vs_float']}; prediction agreement "
              f"{q['prediction_agreement_vs_float']:.3f}; acc {q['accuracy']:.3f}; {q['seconds']} s")
        for line in q["quantization"]:
            print("    " + line)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(rows, indent=2, default=str) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
