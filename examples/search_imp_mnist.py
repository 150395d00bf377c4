"""Search an IMP ticket of a spiking MLP on the offline MNIST split and print its sparsity and accuracy.

    .venv/bin/python examples/search_imp_mnist.py            # about a minute on 2 CPU cores

Four rounds of 25 % global magnitude pruning give a 68.3 %-sparse ticket; re-running resumes or reuses the run.
"""

from slt_deploy.config import DataConfig, ModelConfig, RunConfig, SearchConfig, TrainConfig
from slt_deploy.search import search

config = RunConfig(
    model=ModelConfig(name="mlp", hidden=(300, 100)),        # LeNet-300-100 with Leaky neurons
    data=DataConfig(dataset="mnist", encoding="direct", timesteps=5),
    train=TrainConfig(epochs=5, lr=0.1),
    search=SearchConfig(method="imp", rounds=4, prune_fraction=0.25, rewind_epoch=1, seed=0),
)
result = search(config, runs_dir="runs")

record = result.ticket.record
print(f"ticket:   {result.ticket_path}")
print(f"sparsity: {100 * record.sparsity:.1f} % of conv/linear weights are zero")
print(f"accuracy: {100 * record.accuracy:.2f} % on the 2,000 held-out MNIST images (T={record.timesteps})")
for layer, s in record.layer_sparsity.items():
    print(f"  {layer:8s} {100 * s:5.1f} % sparse")
