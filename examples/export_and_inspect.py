"""Export a ticket to NIR (the spiking network) and ONNX (its ANN counterpart), then inspect both.

    .venv/bin/python examples/export_and_inspect.py [TICKET]

Without TICKET it first runs a quick IMP search on the offline MNIST (about 30 s on 2 CPU cores).
The NIR file is checked against the ticket spike for spike before it is trusted here.
"""

import sys
from pathlib import Path

import torch

from slt_deploy.config import DataConfig
from slt_deploy.data import batches, encode, load_dataset
from slt_deploy.describe import describe_file
from slt_deploy.export import export_ticket
from slt_deploy.exporters.nir_format import read_nir
from slt_deploy.simulate.reference import NIRExecutor
from slt_deploy.ticket import Ticket

if len(sys.argv) > 1:
    ticket_path = Path(sys.argv[1])
else:
    from slt_deploy.demo import demo_config
    from slt_deploy.search import search

    ticket_path = search(demo_config(quick=True), "runs", progress=False).ticket_path

out = Path("exported")
nir_path = export_ticket(ticket_path, "nir", out / "ticket.nir")
onnx_path = export_ticket(ticket_path, "onnx", out / "ticket_ann.onnx")
print(describe_file(nir_path), "\n")
print(describe_file(onnx_path), "\n")

# the NIR graph, run by the project's reference executor, against the snnTorch ticket on real MNIST images
ticket = Ticket.load(ticket_path)
r = ticket.record
data_cfg = DataConfig.from_dict(r.hyperparameters["data"])  # the data the ticket was searched on
x, _ = next(batches(load_dataset(data_cfg).test, 64, shuffle=False, generator=None))
x_seq = encode(x, r.encoding, r.timesteps)
with torch.no_grad():
    expected = ticket.build_model()(x_seq)
got = NIRExecutor(read_nir(nir_path)).run(x_seq)
same = torch.equal(expected.argmax(-1), got.argmax(-1))
print(f"NIR executor vs snnTorch on 64 MNIST test images: max |logit difference| "
      f"{(expected - got).abs().max().item():.2e}, same per-step predictions: {same}")
