"""The fast simulator of two revisions side by side, against the dense-matmul floor, in one process.

``benchmarks/fastsim_vs_lava.py`` times one fast simulator (the checked-out one) against Lava and the floor; this
script loads ``slt_deploy/simulate/fastsim.py`` as it was at ``--before`` (a git revision, read with ``git show``
into a temporary module) next to the checked-out one, on the same network (the demo's trained ticket, or
``--ticket``), the same MNIST samples (direct encoding, T steps), in the same process, and times in rounds:
floor, before, after, floor. Each timing is the median of ``--repeats`` runs, preparation (``FastSim(lowered)``)
included as in ``fastsim_vs_lava.py``; each round's ratios are taken against that round's floor (the mean of its
two floor timings, ``fastsim_vs_lava.matmul_floor``, float32, host layer once per sample). Machine load moves
every number; ratios within a round are what compare. The two simulators' outputs (spikes, readout currents,
counts, limits) must be identical, else the script exits 1.

    .venv/bin/python benchmarks/fastsim_before_after.py --before d4ac56d2 [--rounds 3] [--out PATH]
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fastsim_vs_lava import demo_ticket, machine, matmul_floor, mnist  # noqa: E402

from slt_deploy.compile import lower  # noqa: E402
from slt_deploy.exporters.nir_format import ticket_to_nir  # noqa: E402
from slt_deploy.simulate import fastsim as after  # noqa: E402

SOURCE = "slt_deploy/simulate/fastsim.py"


def module_at(revision: str):
    """``fastsim.py`` at ``revision`` as a module of the same package (its relative imports resolve)."""
    text = subprocess.run(["git", "show", f"{revision}:{SOURCE}"], check=True, capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp()) / "fastsim_before.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location("slt_deploy.simulate.fastsim_before", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def same_results(a, b) -> bool:
    fields = [lambda r: r.readout_current, lambda r: r.outputs] + [lambda r, k=k: r.spikes[k] for k in a.spikes]
    return (a.spikes.keys() == b.spikes.keys() and all(np.array_equal(f(a), f(b)) for f in fields)
            and [dataclasses.astuple(c) for c in a.counts] == [dataclasses.astuple(c) for c in b.counts]
            and a.limits == b.limits)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", required=True, help="git revision whose fastsim.py is the 'before'")
    ap.add_argument("--ticket", default=None, help="ticket file (.safetensors); default: the demo's ticket")
    ap.add_argument("--demo-runs", default="demo_out/runs")
    ap.add_argument("--samples", type=int, default=300)
    ap.add_argument("--timesteps", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=11)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default="benchmarks/results/fastsim_before_after.json")
    args = ap.parse_args()

    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    before = module_at(args.before)
    images, _ = mnist(args.samples)
    lowered = lower(ticket_to_nir(args.ticket or demo_ticket(args.demo_runs)), "fixed_pt")
    x = np.repeat(images[:args.samples, None], args.timesteps, axis=1)
    identical = same_results(before.FastSim(lowered).run(x), after.FastSim(lowered).run(x))

    def timed(module) -> float:
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            module.FastSim(lowered).run(x)
            times.append(time.perf_counter() - t0)
        return statistics.median(times)

    def floor() -> float:
        return matmul_floor(lowered, args.samples, args.timesteps, np.dtype("float32"), args.repeats)[
            "seconds_host_once"]

    rounds = []
    for _ in range(args.rounds):
        load = os.getloadavg()[0]
        first, b, a, last = floor(), timed(before), timed(after), floor()
        f = (first + last) / 2
        rounds.append({"load_1min": round(load, 2), "floor_s": [first, last], "before_s": b, "after_s": a,
                       "before_over_floor": b / f, "after_over_floor": a / f, "speedup": b / a})
        print(f"load {load:.2f}: floor {first * 1e3:.2f}/{last * 1e3:.2f} ms; before {b * 1e3:.2f} ms "
              f"({b / f:.2f}x floor); after {a * 1e3:.2f} ms ({a / f:.2f}x floor); {b / a:.2f}x faster", flush=True)
    print(f"outputs identical (spikes, readout currents, outputs, counts, limits): {identical}")
    report = {"command": "python " + " ".join(sys.argv), "date": started, "machine": machine(),
              "before": args.before, "samples": args.samples, "timesteps": args.timesteps, "repeats": args.repeats,
              "rounds": rounds, "identical": identical}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
