"""Compile a NIR graph to Lava and Loihi fixed point, simulate it on its test data, print accuracy and agreement.

    .venv/bin/python examples/compile_and_simulate.py [MODEL.nir] [--samples 100]

Without MODEL.nir it first searches a quick IMP ticket on the offline MNIST and exports it. The graph may also
come from another tool, provided its metadata names the dataset, encoding and timesteps.
"""

import argparse
from pathlib import Path

from slt_deploy.compile import lower
from slt_deploy.exporters.nir_format import read_nir
from slt_deploy.simulate import simulate

ap = argparse.ArgumentParser()
ap.add_argument("model", nargs="?")
ap.add_argument("--samples", type=int, default=100)
args = ap.parse_args()

if args.model:
    nir_path = Path(args.model)
else:
    from slt_deploy.demo import demo_config
    from slt_deploy.export import export_ticket
    from slt_deploy.search import search

    ticket = search(demo_config(quick=True), "runs", progress=False).ticket_path
    nir_path = export_ticket(ticket, "nir", "exported/ticket.nir")

# what Loihi runs: per-layer populations, synapse densities and the chosen 8-bit quantization
print(lower(read_nir(nir_path), "fixed_pt").summary(), "\n")

for backend in ("lava-float", "lava-fixed", "fast-fixed"):
    result = simulate(nir_path, backend, samples=args.samples, progress=False)
    mismatch = result.first_mismatch or "none"
    print(f"{backend:11s} accuracy {100 * result.accuracy:6.2f} % (reference {100 * result.reference_accuracy:.2f} %)"
          f"  prediction agreement {100 * result.prediction_agreement:6.2f} %  {result.samples_per_s:8.1f} samples/s"
          f"\n            first spike mismatch: {mismatch}")
