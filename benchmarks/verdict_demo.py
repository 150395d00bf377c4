"""The verdict for the demo networks on every shipped profile: like for like, by intervals, with break-even.

The demo's IMP search (LeNet-300-100 spiking MLP, 8,000/2,000 offline MNIST split, the demo's settings) is run
(or reused from --runs-dir); the dense SNN (round 0) and the search's ticket are reported on every shipped
profile under the effective rule, against the dense ANN twin and the ANN pruned to the ticket's sparsity, both
trained with the same recipe (cached in the same runs folder). Writes <out>/verdict_demo/ (report.md/.html/.json,
plots) and <out>/verdict_demo.json (the verdict rows, with command, machine and date).

    .venv/bin/python benchmarks/verdict_demo.py --runs-dir benchmarks/runs [--samples 500]
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
from slt_deploy.report.render import break_even_cell, fmt_interval, fmt_ratio, match_note  # noqa: E402
from slt_deploy.report.schema import to_json  # noqa: E402
from slt_deploy.search import search  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_run_args(ap)
    ap.add_argument("--samples", type=int, default=500, help="test samples the report runs")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    result = search(demo_config(), args.runs_dir, progress=False)
    tickets = [RunPaths(result.run_dir).round_ticket(0), result.ticket_path]
    out = Path(args.out)
    rep = build_report(tickets, profiles=profile_names(), out=out / "verdict_demo", samples=args.samples,
                       progress=False, runs_dir=args.runs_dir)
    d = rep.report   # report.json's content, typed
    summary = {"provenance": provenance("verdict_demo.py", args), "tickets": [str(p) for p in tickets],
               "report": str(rep.markdown),
               "anns": [a.model_dump(include={"label", "file", "origin", "sparsity", "accuracy_measured"})
                        for a in d.anns],
               "verdict": [to_json(r) for r in d.verdict], "verdict_matrix": [to_json(r) for r in d.verdict_matrix]}
    path = out / "verdict_demo.json"
    path.write_text(json.dumps(summary, indent=1, default=str))
    print("| network | chip | fits | scope | SNN energy | SNN accuracy | best ANN instead | ANN accuracy | ANN energy "
          "| SNN / ANN | decision | break-even |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in d.verdict:
        best = r.best_ann
        print(f"| {r.network} | {r.profile} | {'-' if r.fits is None else 'yes' if r.fits else 'no'} "
              f"| {r.scope} | {fmt_interval(r.snn_interval_at_scope_j or r.snn_interval_j)} "
              f"| {100 * r.accuracy:.2f} % | {best.ann if best else '-'} on {best.ann_profile if best else '-'} "
              f"| {f'{100 * best.ann_accuracy:.2f} %' + match_note(best) if best else '-'} "
              f"| {fmt_interval(best.ann_interval_j) if best else '-'} "
              f"| {fmt_ratio(r.ratio_interval) if best else '-'} | {r.decision} | {break_even_cell(r)} |")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
