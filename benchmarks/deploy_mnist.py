"""Deployment benchmark on the tickets of benchmarks/search_mnist.py (offline MNIST, CPU).

For each ticket (dense, IMP at 68.3 / 89.9 / 95.7 / 98.1 %, IMP+ET, EB, EB+ET, random at 95.7 %) and a conv-net
IMP ticket searched here:
- export to NIR;
- Lava floating_pt on --lava-samples test samples: spike-for-spike against the snnTorch-exact reference;
- Loihi fixed point on the whole 2,000-image test split with the fast bit-exact simulator (and Lava fixed_pt
  on the --lava-samples subset): accuracy against the float model (target: within 1 point);
then the full report on every shipped profile, with the SLT energy as % of the ANN on the 45 nm convention.

    .venv/bin/python benchmarks/deploy_mnist.py --runs-dir benchmarks/runs [--lava-samples 100]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from datetime import datetime, timezone
from pathlib import Path

import torch

from slt_deploy.config import DataConfig, ModelConfig, RunConfig, SearchConfig, TrainConfig
from slt_deploy.export import export_ticket
from slt_deploy.cost.profiles import profile_names
from slt_deploy.report import build_report
from slt_deploy.search import search
from slt_deploy.simulate import simulate

SEARCH_RUNS = {  # label -> (run-name prefix, round file or None for the final ticket)
    "dense": ("dense_mlp_mnist_", None),
    "imp 68.3%": ("imp_mlp_mnist_", "round_04"),
    "imp 89.9%": ("imp_mlp_mnist_", "round_08"),
    "imp 95.7%": ("imp_mlp_mnist_", "round_11"),
    "imp 98.1%": ("imp_mlp_mnist_", "round_14"),
    "imp+et 98.1%": ("imp+et_mlp_mnist_", None),
    "eb 95.7%": ("eb_mlp_mnist_", None),
    "eb+et 95.7%": ("eb+et_mlp_mnist_", None),
}


def find(runs: Path, prefix: str, round_file):
    dirs = sorted(d for d in runs.iterdir() if d.name.startswith(prefix))
    if not dirs:
        raise SystemExit(f"no run {prefix}* in {runs}: run benchmarks/search_mnist.py --runs-dir {runs} first")
    d = dirs[0]
    return d / "rounds" / f"{round_file}.safetensors" if round_file else d / "ticket.safetensors"


def random_ticket(runs: Path):
    for d in sorted(runs.iterdir()):
        if d.name.startswith("random_mlp_mnist_") and "round_11" in json.loads((d / "config.json").read_text())[
                "search"].get("reference", ""):
            return d / "ticket.safetensors"
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs-dir", default="benchmarks/runs")
    ap.add_argument("--lava-samples", type=int, default=100)
    ap.add_argument("--report-samples", type=int, default=500)
    ap.add_argument("--conv-epochs", type=int, default=3)
    ap.add_argument("--out", default="benchmarks/results")
    args = ap.parse_args()
    torch.set_num_threads(1)
    runs, out = Path(args.runs_dir), Path(args.out)
    tickets = {label: find(runs, *spec) for label, spec in SEARCH_RUNS.items()}
    rnd = random_ticket(runs)
    if rnd is not None:
        tickets["random 95.7%"] = rnd
    # a conv-net ticket: IMP, 3 rounds (57.8 %), short training
    conv = search(RunConfig(model=ModelConfig(name="convnet"), data=DataConfig(),
                            train=TrainConfig(epochs=args.conv_epochs),
                            search=SearchConfig(method="imp", rounds=3, rewind_epoch=1)), runs, progress=False)
    conv_dense = conv.run_dir / "rounds" / "round_00.safetensors"
    tickets["convnet dense"] = conv_dense
    tickets["convnet imp 57.8%"] = conv.ticket_path

    results = {"command": "python benchmarks/deploy_mnist.py " + " ".join(f"--{k.replace('_', '-')} {v}"
                                                                          for k, v in vars(args).items()),
               "machine": f"{platform.node()} {platform.machine()}, {os.cpu_count()} CPU cores, CPU only, "
                          f"load average at start {os.getloadavg()[0]:.2f}",
               "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "tickets": {}}
    nir_dir = out / "deploy_mnist_nir"
    for label, path in tickets.items():
        nir_path = export_ticket(path, "nir", nir_dir / (label.replace(" ", "_").replace("%", "") + ".nir"))
        row = {"ticket": str(path)}
        for backend, n in (("reference", 2000), ("fast-fixed", 2000), ("lava-float", args.lava_samples),
                           ("lava-fixed", args.lava_samples)):
            r = simulate(nir_path, backend, samples=n, progress=False)
            row[backend] = {"samples": r.samples, "accuracy": r.accuracy, "reference_accuracy": r.reference_accuracy,
                            "prediction_agreement": r.prediction_agreement, "spike_agreement": r.spike_agreement,
                            "first_mismatch": r.first_mismatch, "samples_per_s": r.samples_per_s}
        row["fixed_minus_float_points"] = 100 * (row["fast-fixed"]["accuracy"] - row["reference"]["accuracy"])
        results["tickets"][label] = row
        print(f"{label:18s} float {100 * row['reference']['accuracy']:6.2f} %  fixed {100 * row['fast-fixed']['accuracy']:6.2f} %"
              f"  ({row['fixed_minus_float_points']:+.2f} pt)  lava-float spike-exact on {args.lava_samples}: "
              f"{row['lava-float']['first_mismatch'] is None}")

    mlp_inputs = [tickets[k] for k in tickets if not k.startswith("convnet")]
    rep = build_report(mlp_inputs, profiles=profile_names(), out=out / "report_mnist_mlp",
                       samples=args.report_samples, progress=False)
    rep_conv = build_report([conv_dense, conv.ticket_path], profiles=profile_names(),
                            out=out / "report_mnist_convnet", samples=args.report_samples, progress=False)
    results["reports"] = {"mlp": str(rep.markdown), "convnet": str(rep_conv.markdown)}
    results["energy_45nm_percent_of_ann"] = {}
    for report in (rep.report, rep_conv.report):
        for entry in report.networks:
            results["energy_45nm_percent_of_ann"][f"{entry.label} ({entry.file})"] = \
                entry.convention_45nm.percent_of_ann
    (out / "deploy_mnist.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(json.dumps(results["energy_45nm_percent_of_ann"], indent=2))
    print(f"wrote {out / 'deploy_mnist.json'}, {rep.markdown}, {rep_conv.markdown}")


if __name__ == "__main__":
    main()
