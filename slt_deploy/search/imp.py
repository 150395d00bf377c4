"""Iterative magnitude pruning with late rewinding (Frankle et al.; Kim et al. for SNNs).

Round 0 trains the dense network and keeps its state at ``rewind_epoch`` (0 = initialization). Round k prunes
``prune_fraction`` of the surviving weights of round k-1 by magnitude (globally or per layer), rewinds every
parameter and buffer to the rewind point, re-applies the mask and trains the remaining epochs. With
Early-Time the rounds run at T_early and the last mask is trained once more at the full T.

The objective's :class:`~.rounds.RoundHook` sees every round: it may change the T of the rounds after round 0,
how many rounds run and when they stop (the energy objective, :mod:`.energy`), and which ticket is final.
"""

from __future__ import annotations

from typing import Optional

from ..ticket import Ticket
from .early_time import search_timesteps
from .masks import prune_magnitude
from .rounds import Round, RoundHook


def run_imp(ctx, hook: Optional[RoundHook] = None) -> Ticket:
    cfg, s = ctx.config, ctx.config.search
    hook = hook or RoundHook(ctx)
    T = cfg.data.timesteps
    method = "imp+et" if s.early_time else "imp"
    T_search, times, extra = search_timesteps(ctx)
    hook.start(method)  # round 0 below is the dense network: no reference round is needed

    # round 0: dense training, remembering the rewind point
    model = ctx.new_model()
    mask = ctx.dense_mask(model)
    phase = ctx.train_phase("round_00", model, mask, T_search, 0, save_rewind_at=s.rewind_epoch)
    times.append(phase.seconds)
    ticket = ctx.save_ticket(ctx.paths.round_ticket(0), model, mask, method=method, round=0,
                             timesteps=T_search, wall_time_s=times, extra=extra)
    hook.done(Round(0, "round 0 (dense)", model, mask, ticket, phase.seconds, method, times, extra, phase.history))

    T_search = hook.timesteps(T_search)
    for k in range(1, hook.last_round(s.rounds) + 1):
        mask = prune_magnitude(ctx.layers(ticket.build_model()), ticket.mask, s.prune_fraction, s.scope)
        model = ctx.new_model()
        first_epoch = ctx.load_rewind(model)
        phase = ctx.train_phase(f"round_{k:02d}", model, mask, T_search, first_epoch)
        times.append(phase.seconds)
        ticket = ctx.save_ticket(ctx.paths.round_ticket(k), model, mask, method=method, round=k,
                                 timesteps=T_search, wall_time_s=times, extra=extra)
        if not hook.done(Round(k, f"round {k}", model, mask, ticket, phase.seconds, method, times, extra,
                               phase.history)):
            break

    if not s.early_time:
        return hook.finish(ticket)
    # Early-Time: the mask was found at T_early; the deployed ticket is trained at the full T.
    model = ctx.new_model()
    first_epoch = ctx.load_rewind(model)
    phase = ctx.train_phase("final", model, ticket.mask, T, first_epoch)
    times.append(phase.seconds)
    final = ctx.save_ticket(ctx.paths.round_ticket(s.rounds + 1), model, ticket.mask, method=method,
                            round=s.rounds + 1, timesteps=T, wall_time_s=times, extra=extra)
    hook.done(Round(s.rounds + 1, f"final (T={T})", model, ticket.mask, final, phase.seconds, method, times, extra,
                    phase.history))
    return hook.finish(final)
