"""Multi-prize tickets (biprop; Diffenderfer & Kailkhura 2021) -- MPSLT for spiking nets, MPLT for their ANN twins.

The network is never trained. Every scored layer (``search.prunable``, default every conv and linear layer)
keeps its random weights W, frozen, and gets one trainable score per weight. The forward pass uses

    w = alpha * sign(W) * M,   M = top-k |score| (per layer, or globally),   alpha = ||M * W||_1 / ||M||_1

with a straight-through gradient: d loss / d |score| = d loss / d (alpha * M). Scored layers have no bias (it
is zeroed and frozen, as biprop's layers have none); everything else (BatchNorm, layers left out of
``search.prunable``, e.g. the transformer around a scored ConvPEP in MultiSp) trains normally.

Scored weights are drawn Kaiming-normal (fan-in, ReLU gain) as in biprop: the sign pattern is all that survives,
but alpha sets the scale, and a spiking layer only fires if alpha times its input can reach the threshold.
The saved ticket holds the baked weights ``alpha * sign(W) * M``, so every later stage sees an ordinary sparse
ticket whose nonzero weights are exactly +-alpha; the record lists alpha per layer.
"""

from __future__ import annotations

import math
from typing import Dict, Optional

import torch
from torch import nn
from torch.func import functional_call

from .masks import Mask, score_mask
from ..models import SpikingNet, build_model
from ..ticket import Ticket
from ..utils import derive_seed
from .rounds import Round, RoundHook


def _key(layer: str) -> str:
    return layer.replace(".", "-")  # ParameterDict keys cannot contain dots


class ScoredNet(nn.Module):
    """A :class:`SpikingNet` whose scored layers use ``alpha * sign(W) * top-k(|score|)`` as their weight."""

    def __init__(self, net: SpikingNet, layers: Dict[str, nn.Module], sparsity: float, scope: str):
        super().__init__()
        self.net = net
        self.sparsity, self.scope = sparsity, scope
        self.layer_names = list(layers)
        self.scores = nn.ParameterDict()
        for name, layer in layers.items():
            nn.init.kaiming_normal_(layer.weight, mode="fan_in", nonlinearity="relu")
            layer.weight.requires_grad_(False)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
                layer.bias.requires_grad_(False)
            score = torch.empty_like(layer.weight)
            nn.init.kaiming_uniform_(score, a=math.sqrt(5))
            self.scores[_key(name)] = nn.Parameter(score)

    @property
    def body(self) -> nn.Module:  # so the shared training code finds the layers
        return self.net.body

    def mask(self) -> Mask:
        return score_mask({n: self.scores[_key(n)] for n in self.layer_names}, self.sparsity, self.scope)

    def alphas(self, mask: Mask) -> Dict[str, float]:
        """Per-layer alpha in float32, the precision the baked weights are stored in."""
        out = {}
        for name in self.layer_names:
            w = self._weight(name)
            keep = mask[name].to(w.device)
            out[name] = float((w.abs() * keep).sum() / keep.sum().clamp(min=1))
        return out

    def _weight(self, name: str) -> torch.Tensor:
        return self.net.body.get_submodule(name).weight

    def effective_weights(self) -> Dict[str, torch.Tensor]:
        mask = self.mask()
        out = {}
        for name in self.layer_names:
            w = self._weight(name)
            keep = mask[name].to(w.device, w.dtype)
            alpha = (w.abs() * keep).sum() / keep.sum().clamp(min=1)
            magnitude = self.scores[_key(name)].abs()
            gated = alpha * keep + (magnitude - magnitude.detach())  # value alpha*M, gradient straight to |score|
            out[f"body.{name}.weight"] = torch.sign(w) * gated
        return out

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        return functional_call(self.net, self.effective_weights(), (x_seq,))

    def bake(self) -> SpikingNet:
        """A plain copy of the network with the binary ticket's weights in place (exactly +-alpha or 0)."""
        net = build_model(self.net.config)  # not deepcopy: the neurons hold non-leaf state of the last forward
        net.load_state_dict(self.net.state_dict())
        mask = self.mask()
        alphas = self.alphas(mask)
        with torch.no_grad():
            for name in self.layer_names:
                layer = net.body.get_submodule(name)
                keep = mask[name].to(layer.weight.device)
                alpha = torch.tensor(alphas[name], dtype=layer.weight.dtype)
                layer.weight.copy_(torch.where(keep, torch.sign(layer.weight) * alpha, torch.zeros(())))
        return net.eval()


def _round_plan(s, k: int) -> tuple:
    """(sparsity, training phase, init seed, log label) of round ``k``. Round 0 is the one ticket at
    ``target_sparsity`` (the accuracy objective); round k >= 1, after the energy objective's dense reference round
    0, is a ticket at sparsity 1 - (1 - prune_fraction)^k, each with its own random network."""
    if k == 0:
        return s.target_sparsity, "scores", derive_seed(s.seed, "biprop_init"), "biprop ticket"
    sparsity = 1.0 - (1.0 - s.prune_fraction) ** k
    return sparsity, f"scores_{k:02d}", derive_seed(s.seed, "biprop_init", k), f"biprop {100 * sparsity:.1f} %"


def biprop_round(ctx, k: int, timesteps: int) -> Round:
    """Round ``k``: train the scores of a fresh random network, bake its binary ticket and save it."""
    s = ctx.config.search
    sparsity, phase_name, seed, label = _round_plan(s, k)
    net = ctx.new_model()
    torch.manual_seed(seed)
    scored = ScoredNet(net, ctx.layers(net), sparsity, s.scope)
    dense = ctx.dense_mask(net)  # the masking of the shared training loop is a no-op here: M lives in forward
    phase = ctx.train_phase(phase_name, scored, dense, timesteps, 0)
    mask = scored.mask()
    alphas = scored.alphas(mask)
    baked = scored.bake()
    extra = {"binary": True, "alpha": alphas, "scored_layers": list(alphas), "spiking": ctx.model_config.spiking}
    ticket = ctx.save_ticket(ctx.paths.round_ticket(k), baked, mask, method="biprop", round=k, timesteps=timesteps,
                             wall_time_s=[phase.seconds], extra=extra)
    return Round(k, label, baked, mask, ticket, phase.seconds, "biprop", [phase.seconds], extra, phase.history)


def run_biprop(ctx, hook: Optional[RoundHook] = None) -> Ticket:
    """One ticket at ``target_sparsity``; with the energy objective's hook, one per growing sparsity."""
    hook = hook or RoundHook(ctx)
    first = hook.start("biprop")
    timesteps = hook.timesteps(ctx.config.data.timesteps)
    ticket = None
    for k in range(first, hook.last_round(first) + 1):  # planned: the one round
        r = biprop_round(ctx, k, timesteps)
        ticket = r.ticket
        if not hook.done(r):
            break
    return hook.finish(ticket)
