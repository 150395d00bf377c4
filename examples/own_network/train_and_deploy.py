"""Bring your own network: train a plain snnTorch network in your own loop, then search and deploy it.

    .venv/bin/python examples/own_network/train_and_deploy.py [--factory make|make_class] [--out own_out]

1. your data as an .npz (here: the offline MNIST split, 2,000 training / 500 test images);
2. your network (my_net.py) trained by your own snnTorch loop, weights saved as safetensors;
3. slt_deploy.api.search: an IMP ticket starting from (and rewinding to) your weights;
4. slt_deploy.api.deploy: NIR, Lava float and Loihi fixed point on your test data, the Loihi cost report.

The same from the command line:
    slt-deploy search --model examples/own_network/my_net.py:make --weights own_out/weights.safetensors \\
        --data-path own_out/data.npz --method imp --rounds 2 --epochs 2 --rewind-epoch 0
    slt-deploy deploy runs/imp_my_net.make_npz_*/ticket.safetensors --profile loihi --out own_out/deploy
"""

import argparse
import sys
from pathlib import Path

import snntorch.utils
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from slt_deploy import api
from slt_deploy.config import DataConfig
from slt_deploy.data import load_dataset

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import my_net  # noqa: E402  (the user's own module)

ap = argparse.ArgumentParser()
ap.add_argument("--factory", default="make", choices=("make", "make_class"))
ap.add_argument("--out", default="own_out")
ap.add_argument("--steps", type=int, default=5, help="time steps T")
args = ap.parse_args()
out = Path(args.out)
out.mkdir(parents=True, exist_ok=True)

# 1. the user's data, as arrays in an .npz
split = load_dataset(DataConfig(n_train=2000, n_test=500))
data = api.save_npz(out / "data.npz", split.train.images, split.train.labels, split.test.images, split.test.labels)

# 2. the user's own training loop (plain snnTorch: reset the hidden state, loop the steps, loss on the outputs)
torch.manual_seed(0)
net = getattr(my_net, args.factory)()
opt = torch.optim.Adam(net.parameters(), lr=2e-3)
x_all = torch.from_numpy(split.train.images).float() / 255
y_all = torch.from_numpy(split.train.labels)
for epoch in range(2):
    for i in range(0, len(y_all), 100):
        x, y = x_all[i:i + 100], y_all[i:i + 100]
        snntorch.utils.reset(net)
        out_steps = [net(x) for _ in range(args.steps)]
        logits = torch.stack([o[0] if isinstance(o, tuple) else o for o in out_steps])
        loss = F.cross_entropy(logits.flatten(0, 1), y.repeat(args.steps))
        opt.zero_grad()
        loss.backward()
        opt.step()
    print(f"epoch {epoch + 1}: loss {loss.item():.3f}")
weights = out / "weights.safetensors"
save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(weights))

# 3. a lottery ticket of the user's network, starting from the user's weights
model = f"{HERE / 'my_net.py'}:{args.factory}"
found = api.search(model=model, weights=str(weights), data=data, method="imp", rounds=2, epochs=2,
                   rewind_epoch=0, timesteps=args.steps, optimizer="adam", lr=1e-3, runs_dir=out / "runs")

# 4. deploy it on Loihi: export, compile, simulate on the user's test data, cost
result = api.deploy(found.ticket_path, profile="loihi", out=out / "deploy", samples=100)
print()
print(result.summary)
