"""The SLT-vs-ANN report under one counting rule, against a trained ANN, checked by NeuroBench and SANA-FE.

The demo's IMP search (LeNet-300-100 spiking MLP, 8,000/2,000 offline MNIST split, T = 5, 4 rounds: 0 / 25 /
43.8 / 57.8 / 68.4 % sparse) is run (or reused from --runs-dir); every round's ticket is reported on every
shipped profile under both counting rules (effective and dense), against the dense ANN twin trained with the
same recipe (search --spiking false --method dense, cached in the same runs folder). Writes
<out>/report_rule_mnist_<rule>/ (report.md/.html/.json, plots) and <out>/report_rule_mnist.json (the headline
numbers with command, machine and date).

    .venv/bin/python benchmarks/report_rule.py --runs-dir benchmarks/runs [--samples 500]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from provenance import add_run_args, provenance  # noqa: E402

from slt_deploy.cost.profiles import profile_names  # noqa: E402
from slt_deploy.demo import demo_config  # noqa: E402
from slt_deploy.paths import RunPaths  # noqa: E402
from slt_deploy.report import build_report  # noqa: E402
from slt_deploy.report.schema import to_json  # noqa: E402
from slt_deploy.search import search  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_run_args(ap)
    ap.add_argument("--samples", type=int, default=500, help="test samples the report runs")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    result = search(demo_config(), args.runs_dir, progress=False)
    rounds = sorted(RunPaths(result.run_dir).round_ticket(0).parent.glob("round_*.safetensors"))
    out = Path(args.out)
    summary = {"provenance": provenance("report_rule.py", args), "tickets": [str(p) for p in rounds],
               "rules": {}}
    for rule in ("effective", "dense"):
        rep = build_report(rounds, profiles=profile_names(), out=out / f"report_rule_mnist_{rule}",
                           samples=args.samples, progress=False, ops=rule, runs_dir=args.runs_dir,
                           sanafe=rule == "effective", neurobench=rule == "effective")
        d = rep.report
        summary["rules"][rule] = {
            "report": str(rep.markdown),
            "ann": d.ann.model_dump(include={"file", "origin", "trained", "accuracy_measured"}),
            "ann_energy_j": {p: b.total for p, b in d.ann.energy.items()},
            "networks": [{"label": n.label, "accuracy": n.accuracy_measured,
                          "percent_of_ann_45nm": n.convention_45nm.percent_of_ann,
                          "per_inference": {p: to_json(x) for p, x in n.per_inference.items()},
                          "sanafe": {p: [r.model_dump(include={"architecture", "energy_per_inference_j",
                                                               "analytical_chip_j", "latency_per_inference_s"})
                                         for r in s.runs] for p, s in (n.sanafe or {}).items()}}
                         for n in d.networks],
            "ratios": [to_json(r) for r in d.ratios],
        }
        print(f"{rule}: ANN {100 * d.ann.accuracy_measured:.2f} %; " + "; ".join(
            f"{n.label} {n.convention_45nm.percent_of_ann:.2f} % of ANN (45 nm)" for n in d.networks))
    path = out / "report_rule_mnist.json"
    path.write_text(json.dumps(summary, indent=1, default=str))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
