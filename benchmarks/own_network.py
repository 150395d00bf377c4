"""Bring-your-own-network benchmark (issue 14): a plain snnTorch network from a user file, trained by the user's
own loop on an .npz of the offline MNIST (2,000 / 500 images), searched from its weights and deployed on Loihi.

For each form of examples/own_network/my_net.py (Sequential with a spiking output layer, class network with a
non-spiking readout): the user's loop (2 epochs, Adam), `slt_deploy.api.search` (IMP, 2 rounds, 2 epochs,
rewinding to the user's weights), `slt_deploy.api.deploy` on loihi (Lava float and Loihi fixed point on
--samples test samples), and, outside slt-deploy, the user's own module with the ticket's weights compared with
the Lava float outputs spike for spike.

    .venv/bin/python benchmarks/own_network.py [--samples 100]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import snntorch.utils
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from provenance import provenance

from slt_deploy import api
from slt_deploy.config import DataConfig
from slt_deploy.data import load_dataset
from slt_deploy.report.schema import to_json
from slt_deploy.ticket import Ticket

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples" / "own_network"))
import my_net  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--samples", type=int, default=100)
ap.add_argument("--steps", type=int, default=5)
ap.add_argument("--out", default="benchmarks/results/own_network", help="results.json goes here")
ap.add_argument("--work", default="benchmarks/runs/own_network", help="data, weights, runs and deploy folders")
ap.add_argument("--threads", type=int, default=1)
args = ap.parse_args()
torch.set_num_threads(args.threads)
out, work = Path(args.out), Path(args.work)
out.mkdir(parents=True, exist_ok=True)
work.mkdir(parents=True, exist_ok=True)
split = load_dataset(DataConfig(n_train=2000, n_test=500))
data = api.save_npz(work / "data.npz", split.train.images, split.train.labels, split.test.images, split.test.labels)


def run_user(net, x, steps):
    snntorch.utils.reset(net)
    outs = [net(x) for _ in range(steps)]
    return torch.stack([o[0] if isinstance(o, tuple) else o for o in outs])


results = {"provenance": provenance("own_network.py", args), "forms": {}}
for factory in ("make", "make_class"):
    start = time.perf_counter()
    torch.manual_seed(0)
    net = getattr(my_net, factory)()
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    x_all, y_all = torch.from_numpy(split.train.images).float() / 255, torch.from_numpy(split.train.labels)
    for epoch in range(2):
        for i in range(0, len(y_all), 100):
            logits = run_user(net, x_all[i:i + 100], args.steps)
            loss = F.cross_entropy(logits.flatten(0, 1), y_all[i:i + 100].repeat(args.steps))
            opt.zero_grad()
            loss.backward()
            opt.step()
    weights = work / f"{factory}.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(weights))
    trained = time.perf_counter() - start
    found = api.search(model=f"{ROOT / 'examples/own_network/my_net.py'}:{factory}", weights=str(weights), data=data,
                       method="imp", rounds=2, epochs=2, rewind_epoch=0, timesteps=args.steps, optimizer="adam",
                       lr=1e-3, runs_dir=work / "runs", progress=False)
    searched = time.perf_counter() - start - trained
    deployed = api.deploy(found.ticket_path, profile="loihi", out=work / f"deploy_{factory}", samples=args.samples,
                          progress=False)
    # the user's own module with the ticket's weights, against the Lava float run of the exported graph
    ticket = Ticket.load(found.ticket_path)
    net.load_state_dict({k[len("body."):]: v for k, v in ticket.state.items()})
    net.eval()
    x = torch.from_numpy(split.test.images[:args.samples]).float() / 255
    with torch.no_grad():
        expected = run_user(net, x, args.steps).transpose(0, 1).numpy()
    lava = api.simulate(deployed.files["nir"], x.unsqueeze(1).repeat(1, args.steps, 1, 1, 1), backend="lava-float")
    got = lava.outputs.reshape(expected.shape)
    results["forms"][factory] = {
        # spikes (Sequential, spiking output) are compared exactly; float logits (readout) to their max difference
        "user_module_vs_lava_float_max_abs_diff": float(np.abs(got - expected).max()),
        "user_module_vs_lava_float_identical": bool(np.array_equal(got, expected)),
        "user_module_vs_lava_float_same_predictions": bool((got.sum(1).argmax(1) == expected.sum(1).argmax(1)).all()),
        "ticket_sparsity": ticket.record.sparsity, "ticket_accuracy_500": ticket.record.accuracy,
        "seconds": {"user_training": round(trained, 1), "search": round(searched, 1),
                    "deploy": round(time.perf_counter() - start - trained - searched, 1)},
        "deploy": to_json(deployed.record)}   # deploy.json's content
    print(factory, json.dumps(deployed.record.accuracy),
          results["forms"][factory]["user_module_vs_lava_float_identical"])
(out / "results.json").write_text(json.dumps(results, indent=2))
print(f"wrote {out / 'results.json'}")
