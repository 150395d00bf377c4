"""Training and evaluation of spiking models over time (BPTT with the ATan surrogate).

Loss: cross-entropy of the logits at every timestep, averaged over time (Kim et al.). Prediction: argmax of
the logits summed over time. Every random draw (batch order, rate-coded spikes) comes from a generator seeded
by :func:`slt_deploy.utils.generator` with the run seed and the epoch, which makes a resumed run identical to
an uninterrupted one.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Dict, Mapping, Optional

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ..config import DataConfig, TrainConfig
from ..data import ArrayDataset, batches, encode
from .masks import Mask, apply_mask, mask_multipliers
from ..utils import generator


@dataclass(frozen=True)
class EpochStats:
    epoch: int
    loss: float
    train_accuracy: float
    lr: float
    seconds: float
    spike_rates: Optional[Dict[str, float]] = None  # with train.spike_penalty: spikes per neuron per step, by layer
    penalty: Optional[float] = None                 # the epoch's mean penalty term (already weighted)


class SpikeRates:
    """The activity regulariser: forward hooks on every spiking neuron of ``model`` that keep, with gradients,
    the spikes each layer emits in one forward pass.

    ``penalty()`` is ``sum over layers of (spikes of the layer) / (neurons x T x B)``: each layer's firing rate
    (spikes per neuron per step), so the weight means the same for a wide and a narrow layer, and the
    surrogate gradient of every spike pushes its layer to fire less (the spike-count regulariser of the SNN
    energy literature). ``clear()`` starts the next forward pass.
    """

    def __init__(self, model: nn.Module):
        from ..models.layers import is_neuron

        self.sums: Dict[str, torch.Tensor] = {}
        self.sizes: Dict[str, int] = {}
        self.handles = [m.register_forward_hook(self._hook(name)) for name, m in model.named_modules()
                        if is_neuron(m)]

    def _hook(self, name: str):
        def hook(module, args, output):
            spk = output[0] if isinstance(output, tuple) else output
            self.sums[name] = self.sums[name] + spk.sum() if name in self.sums else spk.sum()
            self.sizes[name] = self.sizes.get(name, 0) + spk.numel()
        return hook

    def rates(self) -> Dict[str, torch.Tensor]:
        return {name: total / self.sizes[name] for name, total in self.sums.items()}

    def penalty(self) -> torch.Tensor:
        rates = list(self.rates().values())
        return torch.stack(rates).sum() if rates else torch.zeros(())

    def clear(self) -> None:
        self.sums, self.sizes = {}, {}

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def lr_at(cfg: TrainConfig, epoch: int) -> float:
    """Learning rate of an epoch; a pure function of the epoch so that resuming needs no scheduler state."""
    if cfg.schedule == "cosine":
        return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * epoch / cfg.epochs))
    return cfg.lr


def time_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-timestep cross-entropy averaged over time; ``logits`` is (T, B, classes)."""
    T = logits.shape[0]
    return F.cross_entropy(logits.flatten(0, 1), labels.repeat(T))


def train_epoch(model: nn.Module, data: ArrayDataset, data_cfg: DataConfig, train_cfg: TrainConfig,
                optimizer: torch.optim.Optimizer, layers: Mapping[str, nn.Module], mask: Mask, epoch: int,
                seed_parts: tuple, timesteps: int, progress: bool = True, desc: str = "",
                spike_penalty: float = 0.0) -> EpochStats:
    """One epoch; pruned weights are zeroed after every step so they stay exactly zero. ``spike_penalty``:
    weight of the activity regulariser (:class:`SpikeRates`)."""
    start = time.perf_counter()
    lr = lr_at(train_cfg, epoch)
    for group in optimizer.param_groups:
        group["lr"] = lr
    gen = generator(*seed_parts, "epoch", epoch)
    model.train()
    device = next(model.parameters()).device
    total_loss = torch.zeros((), dtype=torch.float64, device=device)  # summed on the device: one sync per
    correct = torch.zeros((), dtype=torch.int64, device=device)       # progress update, not per batch
    seen = 0
    n_batches = math.ceil(len(data) / train_cfg.batch_size)
    bar = tqdm(batches(data, train_cfg.batch_size, shuffle=True, generator=gen), total=n_batches,
               desc=desc or f"epoch {epoch + 1}/{train_cfg.epochs}", leave=False, disable=not progress,
               unit="batch")
    weight = spike_penalty
    spikes = SpikeRates(model) if weight > 0 else None
    rate_sums: Dict[str, torch.Tensor] = {}  # summed on the device too
    penalty_sum = torch.zeros((), dtype=torch.float64, device=device)
    pruned = mask_multipliers(layers, mask)
    try:
        for i, (x, y) in enumerate(bar):
            # encoded on the CPU (the same random draws whatever the device), moved to the device a batch at a time
            x_seq = encode(x, data_cfg.encoding, timesteps, gen).to(device, non_blocking=True)
            y = y.to(device, non_blocking=True)
            if spikes is not None:
                spikes.clear()
            logits = model(x_seq)
            loss = time_loss(logits, y)
            if spikes is not None:
                term = weight * spikes.penalty()
                loss = loss + term
                penalty_sum += term.detach() * len(y)
                for name, rate in spikes.rates().items():
                    rate_sums[name] = rate_sums.get(name, 0.0) + rate.detach() * len(y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            apply_mask(layers, pruned)  # zero the gradients of pruned weights (momentum stays zero there)
            optimizer.step()
            apply_mask(layers, pruned)  # weight decay / Adam could otherwise move them off zero
            total_loss += loss.detach() * len(y)
            correct += (logits.detach().sum(0).argmax(1) == y).sum()
            seen += len(y)
            if progress and (i % 10 == 0 or i == n_batches - 1):
                bar.set_postfix(loss=f"{float(total_loss) / seen:.3f}")
    finally:  # the hooks never outlive the epoch, even when it fails
        if spikes is not None:
            spikes.remove()
    if spikes is None:
        return EpochStats(epoch, float(total_loss) / seen, int(correct) / seen, lr, time.perf_counter() - start)
    return EpochStats(epoch, float(total_loss) / seen, int(correct) / seen, lr, time.perf_counter() - start,
                      {name: float(total) / seen for name, total in rate_sums.items()}, float(penalty_sum) / seen)


@torch.no_grad()
def predict(model: nn.Module, data: ArrayDataset, data_cfg: DataConfig, timesteps: int, seed_parts: tuple,
            batch_size: int = 500, limit: Optional[int] = None) -> torch.Tensor:
    """Per-step logits (T, N, classes) for the first ``limit`` samples of ``data``."""
    model.eval()
    device = next(model.parameters()).device
    gen = generator(*seed_parts, "eval")
    outs, n = [], 0
    for x, _ in batches(data, batch_size, shuffle=False, generator=None):
        if limit is not None and n >= limit:
            break
        if limit is not None:
            x = x[: limit - n]
        outs.append(model(encode(x, data_cfg.encoding, timesteps, gen).to(device)).cpu())
        n += len(x)
    return torch.cat(outs, dim=1)


def accuracy(model: nn.Module, data: ArrayDataset, data_cfg: DataConfig, timesteps: int,
             seed_parts: tuple) -> float:
    logits = predict(model, data, data_cfg, timesteps, seed_parts)
    labels = torch.as_tensor(data.labels[: logits.shape[1]])
    return float((logits.sum(0).argmax(1) == labels).float().mean())
