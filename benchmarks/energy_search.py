"""The energy objective on LeNet-300-100 (issue 23): the accuracy-energy front against today's demo ticket.

One run does all of it, on the 8,000/2,000 offline MNIST split, T = 5, direct encoding, 5 epochs per round:

1. today's demo search (accuracy objective, IMP 4 x 25 % -> the 68.4 % ticket), reused when already in --runs-dir;
2. the energy objective: the demo's energy search (``slt_deploy.demo.demo_energy_config``: ``--objective energy
   --cost-profile cmos45``, IMP 50 % per round) continued up to --max-rounds while held-out accuracy holds
   (--max-drop points),
   spike penalty --penalty, T_early points; the chosen ticket is the cheapest within --max-drop points;
   its rounds' measured counts are charged again on ``loihi`` (the cost stage's ``recost``: the same counts, not a
   new run) to get the Loihi front;
3. the accuracy objective with the energy run's rounds and prune fraction (no penalty), for the search time;
4. one report (the report stage's own code, one counting rule, the 2,000 test images) of the dense SNN, the demo's 68 %
   ticket and the two chosen tickets against the demo's trained dense ANN twin, on every shipped profile.

    nice .venv/bin/python benchmarks/energy_search.py --runs-dir benchmarks/runs

``--event-conv`` instead runs the energy objective on the convnet with event-MNIST (first layer on chip, costed on
``loihi``), trains its dense ANN twin and reports the chosen ticket, the dense SNN and the ANN on every profile.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from provenance import add_run_args, provenance  # noqa: E402

from slt_deploy.cost.objective import recost, round_meter  # noqa: E402
from slt_deploy.cost.profiles import profile_names  # noqa: E402
from slt_deploy.demo import demo_config, demo_energy_config  # noqa: E402
from slt_deploy.paths import RunPaths  # noqa: E402
from slt_deploy.report import build_report  # noqa: E402
from slt_deploy.report import train_ann_twin  # noqa: E402
from slt_deploy.report.schema import to_json  # noqa: E402
from slt_deploy.search import search  # noqa: E402
from slt_deploy.search.energy import choose, non_dominated  # noqa: E402
from slt_deploy.utils import write_json_atomic  # noqa: E402


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def timed(fn):
    w, c = time.perf_counter(), cpu()
    out = fn()
    return out, time.perf_counter() - w, cpu() - c


def search_seconds(run_dir: Path) -> float:
    """Training plus (energy objective) measuring, as the run log records them."""
    lines = [json.loads(x) for x in (run_dir / "log.jsonl").read_text().splitlines()]
    return sum(x["seconds"] + x.get("measure_s", 0.0) for x in lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_run_args(ap)
    ap.add_argument("--max-rounds", type=int, default=7)
    ap.add_argument("--prune-fraction", type=float, default=0.5)
    ap.add_argument("--penalty", type=float, default=0.05)
    ap.add_argument("--holdout", type=int, default=500)
    ap.add_argument("--max-drop", type=float, default=1.5, help="search --max-accuracy-drop, and the points below "
                    "the dense round (held-out) the chosen ticket may lose (deploy --max-accuracy-drop)")
    ap.add_argument("--samples", type=int, default=2000, help="test samples of the report (2,000: the whole split)")
    ap.add_argument("--tag", default="", help="suffix of the result files (one per configuration)")
    ap.add_argument("--event-conv", action="store_true", help="the event-MNIST convnet instead (see the docstring)")
    ap.add_argument("--n-train", type=int, default=4000, help="--event-conv: training samples")
    ap.add_argument("--epochs", type=int, default=3, help="--event-conv: epochs per round")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    facts = {"provenance": provenance("energy_search.py", args)}
    if args.event_conv:
        return event_conv(args, out, facts)

    base = demo_config()
    demo, w, c = timed(lambda: search(base, args.runs_dir, progress=False))
    demo_ticket = demo.ticket_path
    facts["demo"] = {"run": str(demo.run_dir), "sparsity": demo.ticket.record.sparsity, "wall_s": w, "cpu_s": c}

    energy_base = demo_energy_config()
    energy_cfg = energy_base.replace(search=energy_base.search.replace(
        prune_fraction=args.prune_fraction, max_rounds=args.max_rounds, spike_penalty=args.penalty,
        holdout=args.holdout, max_accuracy_drop=args.max_drop, seed=args.seed))
    # both timed searches run from scratch in their own folder (a finished run would be reused, not timed)
    timing = Path(args.runs_dir) / f"energy_search_timing{args.tag}"
    shutil.rmtree(timing, ignore_errors=True)
    energy, w, c = timed(lambda: search(energy_cfg, timing, progress=False, meter=round_meter(energy_cfg)))
    front = json.loads(RunPaths(energy.run_dir).front.read_text())
    rounds_run = max(p["round"] for p in front["points"])
    facts["energy"] = {"run": str(energy.run_dir), "wall_s": w, "cpu_s": c, "rounds": rounds_run,
                       "search_s": search_seconds(energy.run_dir), "measure_s": front["measure_seconds"],
                       "front_cmos45": front}

    # the same measured counts charged on Loihi (no new run): its front and its chosen ticket
    root = energy.run_dir
    loihi_points = []
    for p in front["points"]:
        entry = json.loads((root / p["cost"]).read_text())
        e = recost(entry, "loihi")
        loihi_points.append(dict(p, energy_j=e["energy_j"], energy_kind=e["energy_kind"]))
    loihi_front = non_dominated(loihi_points)
    loihi_chosen = choose(loihi_front, front["reference_accuracy"], args.max_drop)
    chosen45_point = choose(front["front"], front["reference_accuracy"], args.max_drop)
    facts["energy"]["front_loihi"] = {"front": loihi_front, "chosen": loihi_chosen}

    acc_cfg = base.replace(search=base.search.replace(prune_fraction=args.prune_fraction, rounds=rounds_run,
                                                      seed=args.seed))
    acc, w, c = timed(lambda: search(acc_cfg, timing, progress=False))
    facts["accuracy_same_rounds"] = {"run": str(acc.run_dir), "wall_s": w, "cpu_s": c,
                                     "search_s": search_seconds(acc.run_dir)}
    # CPU time of the whole search call (the machine is shared: wall time moves with the other agents' load)
    facts["time_ratio_energy_vs_accuracy"] = facts["energy"]["cpu_s"] / facts["accuracy_same_rounds"]["cpu_s"]
    facts["time_ratio_wall"] = facts["energy"]["wall_s"] / facts["accuracy_same_rounds"]["wall_s"]

    # the verdict: one report, one counting rule, the demo's trained ANN twin
    ann = train_ann_twin(demo.ticket, demo_ticket, args.runs_dir, progress=False)
    chosen45 = root / chosen45_point["ticket"]
    chosen_loihi = root / loihi_chosen["ticket"]
    inputs = [RunPaths(root).round_ticket(0), demo_ticket, chosen45] + ([chosen_loihi] if chosen_loihi != chosen45
                                                                        else [])
    inputs.append(RunPaths(demo.run_dir).round_ticket(0))  # the demo's dense SNN (all 8,000 samples, no penalty)
    rep, w, c = timed(lambda: build_report(inputs, ann=ann, profiles=profile_names(),
                                           out=out / f"energy_search_report{args.tag}",
                                           samples=args.samples, progress=False, sanafe=False, neurobench=False))
    d = rep.report   # report.json's content, typed
    roles = ["energy run dense SNN (round 0)", "demo 68 % ticket", "chosen on cmos45"] + (
        ["chosen on loihi"] if len(inputs) == 5 else []) + ["demo dense SNN"]
    facts["report"] = {"dir": str(rep.markdown.parent), "ann": d.ann.file,
                       "ann_accuracy": d.ann.accuracy_measured, "networks": [dict(role=role, **_net(n))
                                                                             for role, n in zip(roles, d.networks)],
                       "verdict": [to_json(r) for r in d.verdict], "wall_s": w, "cpu_s": c}
    dense, demo68, t45, demo_dense = d.networks[0], d.networks[1], d.networks[2], d.networks[-1]
    tl = d.networks[3] if len(d.networks) > 4 else d.networks[2]
    facts["targets"] = {
        "cmos45_percent_of_ann": t45.convention_45nm.percent_of_ann, "cmos45_target": 11.2,
        "cmos45_accuracy_drop_points": 100 * (dense.accuracy_measured - t45.accuracy_measured),
        "cmos45_accuracy_drop_vs_demo_dense_points": 100 * (demo_dense.accuracy_measured - t45.accuracy_measured),
        "loihi_accuracy_drop_vs_demo_dense_points": 100 * (demo_dense.accuracy_measured - tl.accuracy_measured),
        "loihi_vs_demo68": tl.energy["loihi"].total / demo68.energy["loihi"].total, "loihi_target": 1 / 3,
        "loihi_accuracy_drop_points": 100 * (dense.accuracy_measured - tl.accuracy_measured),
        "time_ratio": facts["time_ratio_energy_vs_accuracy"], "time_target": 1.5}
    write_json_atomic(out / f"energy_search_mnist{args.tag}.json", facts)
    print(json.dumps(facts["targets"], indent=2))
    for role, n in zip(roles, d.networks):
        print(f"{role:32s} {_line(n)}")


def _net(n) -> dict:
    """A network of the report as this benchmark's JSON records it."""
    return {"label": n.label, "file": n.file, "sparsity": n.sparsity, "timesteps": n.timesteps,
            "accuracy": n.accuracy_measured, "first_layer_on_host": n.counting_rule.first_layer_on_host,
            "percent_of_ann_45nm": n.convention_45nm.percent_of_ann,
            "energy_j": {p: b.total for p, b in n.energy.items()},
            "energy_kind": {p: b.kind for p, b in n.energy.items()},
            "fits": {p: m.fits for p, m in n.mapping.items()}}


def _line(n) -> str:
    loihi = n.energy["loihi"].total if "loihi" in n.energy else float("nan")
    return (f"{n.label:40s} acc {100 * n.accuracy_measured:.1f} %  T={n.timesteps}  "
            f"45nm {n.convention_45nm.percent_of_ann:.2f} %  loihi {1e9 * loihi:.1f} nJ")


def event_conv(args, out: Path, facts: dict) -> None:
    from slt_deploy.config import DataConfig, ModelConfig, RunConfig, SearchConfig, TrainConfig

    cfg = RunConfig(model=ModelConfig(name="convnet"),
                    data=DataConfig(dataset="event-mnist", encoding="events", timesteps=5, n_train=args.n_train),
                    train=TrainConfig(epochs=args.epochs, lr=0.1),
                    search=SearchConfig(method="imp", objective="energy", cost_profile="loihi", rounds=2,
                                        max_rounds=args.max_rounds, prune_fraction=args.prune_fraction,
                                        spike_penalty=args.penalty, max_accuracy_drop=args.max_drop,
                                        holdout=args.holdout, rewind_epoch=1, seed=args.seed))
    result, w, c = timed(lambda: search(cfg, args.runs_dir, progress=False, meter=round_meter(cfg)))
    front = json.loads(RunPaths(result.run_dir).front.read_text())
    facts["energy"] = {"run": str(result.run_dir), "wall_s": w, "cpu_s": c, "front_loihi": front}
    ann = train_ann_twin(result.ticket, result.ticket_path, args.runs_dir, progress=False)
    inputs = [RunPaths(result.run_dir).round_ticket(0), result.run_dir / front["chosen"]["ticket"]]
    rep, w, c = timed(lambda: build_report(inputs, ann=ann, profiles=profile_names(),
                                           out=out / f"energy_search_report_event_conv{args.tag}",
                                           samples=args.samples, progress=False, sanafe=False, neurobench=False))
    d = rep.report
    facts["report"] = {"dir": str(rep.markdown.parent), "ann": d.ann.file,
                       "ann_accuracy": d.ann.accuracy_measured, "verdict": [to_json(r) for r in d.verdict],
                       "networks": [_net(n) for n in d.networks], "wall_s": w, "cpu_s": c}
    write_json_atomic(out / f"energy_search_event-mnist_conv{args.tag}.json", facts)
    for n in d.networks:
        print(f"{_line(n)}  fits {dict((p, m.fits) for p, m in n.mapping.items())}")

if __name__ == "__main__":
    main()
