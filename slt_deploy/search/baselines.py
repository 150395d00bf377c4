"""Baselines: the dense network, and random tickets (same per-layer sparsity as a reference, random mask)."""

from __future__ import annotations

from typing import Optional

from ..errors import ConfigError
from .masks import random_mask
from ..ticket import Ticket
from ..utils import generator
from .rounds import Round, RoundHook


def run_dense(ctx, hook: Optional[RoundHook] = None) -> Ticket:
    hook = hook or RoundHook(ctx)
    if hook.start("dense"):  # the objective's own reference round was the dense network (the energy objective)
        return hook.finish(None)
    T = ctx.config.data.timesteps
    model = ctx.new_model()
    mask = ctx.dense_mask(model)
    phase = ctx.train_phase("final", model, mask, T, 0)
    ticket = ctx.save_ticket(ctx.paths.round_ticket(0), model, mask, method="dense", round=0, timesteps=T,
                             wall_time_s=[phase.seconds], extra={})
    hook.done(Round(0, "dense", model, mask, ticket, phase.seconds, "dense", [phase.seconds], {}, phase.history))
    return hook.finish(ticket)


def reference_sparsity(ctx, model) -> dict:
    """Per-layer sparsity to copy: the reference ticket's, or ``target_sparsity`` in every layer."""
    s = ctx.config.search
    layers = ctx.layers(model)
    if s.reference is None:
        return {name: s.target_sparsity for name in layers}
    ref = Ticket.load(s.reference)
    missing = [n for n in layers if n not in ref.mask or tuple(ref.mask[n].shape) != tuple(layers[n].weight.shape)]
    if missing:
        raise ConfigError(f"search.reference={s.reference}: its masks do not match this model's layer(s) "
                          f"{', '.join(missing)}")
    return ref.mask.layer_sparsity()


def run_random(ctx, hook: Optional[RoundHook] = None) -> Ticket:
    hook = hook or RoundHook(ctx)
    hook.start("random")
    s, T = ctx.config.search, ctx.config.data.timesteps
    model = ctx.new_model()
    layers = ctx.layers(model)
    mask = random_mask({n: tuple(m.weight.shape) for n, m in layers.items()}, reference_sparsity(ctx, model),
                       generator(s.seed, "random_mask"))
    phase = ctx.train_phase("final", model, mask, T, 0)
    ticket = ctx.save_ticket(ctx.paths.round_ticket(0), model, mask, method="random", round=0, timesteps=T,
                             wall_time_s=[phase.seconds], extra={"reference": s.reference})
    hook.done(Round(0, "random ticket", model, mask, ticket, phase.seconds, "random", [phase.seconds],
                    {"reference": s.reference}, phase.history))
    return hook.finish(ticket)
