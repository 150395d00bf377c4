"""Write a deployment report for your own chip: a ticket costed on a user-supplied profile file.

    .venv/bin/python examples/report_custom_profile.py [TICKET ...] [--out report_out]

With no ticket, a quick IMP search on the offline MNIST split (the demo's quick settings, about a minute on
2 CPU cores) provides one, and its dense round-0 ticket is reported next to it. The profile
``examples/my_chip.yaml`` is a hypothetical chip whose every figure carries a source and a status; copy it and
put your chip's numbers in. The report compares it with Loihi, the 45 nm convention of the SNN papers and an
FP32 ANN accelerator, on activity counted from a run on 200 test images.
"""

import argparse
from pathlib import Path

from slt_deploy.report import build_report

HERE = Path(__file__).resolve().parent
PROFILES = ["cmos45", "loihi", "fp32-45nm", str(HERE / "my_chip.yaml")]


def quick_tickets() -> list:
    """The final ticket of a quick IMP search and the dense network it was pruned from."""
    from slt_deploy.demo import demo_config
    from slt_deploy.paths import RunPaths
    from slt_deploy.search import search

    result = search(demo_config(quick=True), runs_dir="runs")
    return [RunPaths(result.run_dir).round_ticket(0), result.ticket_path]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tickets", nargs="*", help="tickets or NIR graphs (default: a quick IMP search)")
    parser.add_argument("--out", default="report_out", help="output folder (default: report_out)")
    parser.add_argument("--samples", type=int, default=200, help="test samples simulated (default: 200)")
    args = parser.parse_args()

    inputs = args.tickets or quick_tickets()
    result = build_report(inputs, profiles=PROFILES, out=args.out, samples=args.samples)
    for path in (result.markdown, result.html, result.json, *result.plots.values()):
        print(f"wrote {path}")
    report = result.report   # report.json's content, typed (slt_deploy.report.schema.ReportData)
    chip = next(p for p in report.profiles.values() if p.given_as == PROFILES[-1])
    for net in report.networks:
        energy = net.energy[chip.name]
        print(f"{net.label:>24s}: {1e9 * energy.total:9.2f} nJ per inference on {chip.name}"
              f"{'' if energy.complete else ' (lower bound)'}, "
              f"{net.convention_45nm.percent_of_ann:6.1f} % of the ANN at 45 nm, "
              f"{net.mapping[chip.name].fit_summary}")


if __name__ == "__main__":
    main()
