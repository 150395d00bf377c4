"""One ticket family on three chips: Loihi 2 (Lava fixed point), Xylo Audio 2 (xylosim), Speck (sinabs).

The family: IMP tickets of integrate-and-fire networks with reset by subtraction (``--beta 1 --reset
subtract``), the neuron both SynSense chips run, searched here:
- ``mlp16``: a 16-32-8 MLP on the 16-channel digits events of ``examples/vendor_flows/digits16.py`` (T=16),
  sized for Xylo (16 inputs, 8 outputs);
- ``conv``: a 4-8-32 conv net on ``event-mnist`` (T=8), sized for DYNAP-CNN's cores.
Each ticket is deployed (``slt_deploy.deploy.deploy``) on ``loihi2`` (Lava fixed point; Loihi 1 resets to zero
only), ``xylo`` and ``dynapcnn`` (= ``speck``): fit or the one-line refusal, accuracy, agreement with the
snnTorch-exact reference and energy per inference as the report gives it for that profile.

    .venv/bin/python benchmarks/vendor_flows.py [--samples 100] [--work benchmarks/runs/vendor_flows]

Runs and deploy folders go to --work; the table's JSON to benchmarks/results/vendor_flows.json.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from slt_deploy.config import DataConfig, ModelConfig, NeuronConfig, RunConfig, SearchConfig, TrainConfig
from slt_deploy.deploy import deploy
from slt_deploy.errors import SltError
from slt_deploy.search import search

ROOT = Path(__file__).resolve().parents[1]
IF_SUBTRACT = NeuronConfig(beta=1.0, reset="subtract")
# Loihi 1 resets to zero only (its verdict says so) but has published per-event energies; Loihi 2 runs the
# subtract reset and has none. The SynSense profiles run their vendor's simulator after the fast-fixed check.
PROFILES = {"loihi": "lava-fixed", "loihi2": "lava-fixed", "xylo": "fast-fixed", "dynapcnn": "fast-fixed"}


def digits16_npz(out: Path) -> Path:
    spec = importlib.util.spec_from_file_location("digits16", ROOT / "examples" / "vendor_flows" / "digits16.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    path = out / "digits16.npz"
    np.savez(path, **module.digits16(timesteps=16))
    return path


def tickets(out: Path) -> dict:
    data16 = digits16_npz(out)
    runs = out / "runs"
    configs = {
        "mlp16": RunConfig(model=ModelConfig(name="mlp", hidden=(32,), neuron=IF_SUBTRACT),
                           data=DataConfig(dataset="npz", path=str(data16), encoding="events", timesteps=16,
                                           n_train=0, n_test=0),
                           train=TrainConfig(epochs=8, device="cpu"), search=SearchConfig(method="imp", rounds=2)),
        "conv": RunConfig(model=ModelConfig(name="convnet", hidden=(4, 8, 32), neuron=IF_SUBTRACT),
                          data=DataConfig(dataset="event-mnist", encoding="events", timesteps=8, n_train=2000,
                                          n_test=200),
                          train=TrainConfig(epochs=3, optimizer="adam", lr=0.005, device="cpu"),
                          search=SearchConfig(method="imp", rounds=1)),
    }
    return {name: search(cfg, runs_dir=runs, progress=False).ticket_path for name, cfg in configs.items()}


def row(name: str, ticket: Path, profile: str, out: Path, samples: int) -> dict:
    """One deployment as the table shows it, read from deploy.json's typed record (DeployResult.record)."""
    start = time.perf_counter()
    backend = PROFILES[profile]
    try:
        result = deploy(ticket, profile=profile, backend=backend, out=out / f"{name}_{profile}", samples=samples,
                        progress=False, echo=lambda *a: None)
    except SltError as exc:
        return {"ticket": name, "chip": profile, "refused": str(exc).replace(str(ticket), f"{name} ticket"),
                "seconds": time.perf_counter() - start}
    d = result.record
    v = d.vendor
    accuracy, agreement, mismatch = (v.accuracy, v.prediction_agreement, v.first_mismatch) if v else \
        (d.accuracy[backend], d.agreement.predictions, d.agreement.first_mismatch)
    return {"ticket": name, "chip": profile, "simulator": v.backend if v else backend,
            "fit_text": fit_text(d), "fit_summary": d.fit_summary, "cores_used": d.cores,
            "samples_run": d.samples, "accuracy_snntorch": d.accuracy["snntorch_reference"],
            "accuracy_chip": accuracy, "agreement_chip": agreement, "first_spike_mismatch": mismatch,
            "first_difference": next((n for n in (v.notes if v else []) if n.startswith("first difference")), None),
            "energy_text": energy_text(d), "deploy": to_json(d), "seconds": time.perf_counter() - start}


from slt_deploy.report.render import fmt_interval  # noqa: E402
from slt_deploy.report.schema import to_json  # noqa: E402


def fit_text(d) -> str:
    return f"fits on {d.cores} cores" if d.fits and d.cores else "fits" if d.fits else d.fit_summary


def energy_text(d) -> str:
    """The report's verdict row: the SNN's interval at the comparison's scope, against the best ANN target."""
    texts = [f"{fmt_interval(v.snn_interval_at_scope_j)} ({v.scope}) vs {v.best_ann.ann} on "
             f"{v.best_ann.ann_profile} {fmt_interval(v.best_ann.ann_interval_j)}: {v.decision}"
             for v in d.verdict_rows if v.best_ann is not None]
    if texts:
        return "; ".join(texts)
    return fmt_interval(d.energy_interval_j) if d.energy_interval_j else "unknown"


def _pct(x):
    return "unknown" if x is None else f"{100 * x:.2f} %"


def table(rows) -> str:
    lines = ["| ticket | chip (simulator) | fit | accuracy snnTorch / chip | predictions agree "
             "| first spike difference | energy / inference |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        if "refused" in r:
            lines.append(f"| {r['ticket']} | {r['chip']} | refused: {r['refused']} | | | | |")
            continue
        diff = r["first_difference"] or r["first_spike_mismatch"] or "spike-identical"
        lines.append(f"| {r['ticket']} | {r['chip']} ({r['simulator']}) | {r['fit_text']} "
                     f"| {_pct(r['accuracy_snntorch'])} / {_pct(r['accuracy_chip'])} "
                     f"| {_pct(r['agreement_chip'])} | {diff} | {r['energy_text']} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--samples", type=int, default=100)
    ap.add_argument("--work", default=str(ROOT / "benchmarks" / "runs" / "vendor_flows"))
    args = ap.parse_args()
    out = Path(args.work)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    found = tickets(out)
    rows = [row(name, ticket, profile, out / "deploy", args.samples) for name, ticket in found.items()
            for profile in PROFILES]
    result = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": platform.platform(),
              "cpus": os.cpu_count(), "samples_per_deploy": args.samples, "seconds": time.perf_counter() - start,
              "rows": rows}
    path = ROOT / "benchmarks" / "results" / "vendor_flows.json"
    path.write_text(json.dumps(result, indent=1))
    print(table(rows))
    print(f"\n{time.perf_counter() - start:.0f} s in all; JSON: {path}")


if __name__ == "__main__":
    main()
