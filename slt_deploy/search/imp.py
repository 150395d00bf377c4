"""Iterative magnitude pruning with late rewinding (Frankle et al.; Kim et al. for SNNs).

Round 0 trains the dense network and keeps its state at ``rewind_epoch`` (0 = initialization). Round k prunes
``prune_fraction`` of the surviving weights of round k-1 by magnitude (globally or per layer), rewinds every
parameter and buffer to the rewind point, re-applies the mask and trains the remaining epochs. With
Early-Time the rounds run at T_early and the last mask is trained once more at the full T.
"""

from __future__ import annotations

from .masks import prune_magnitude
from ..ticket import Ticket
from .early_time import search_timesteps


def run_imp(ctx) -> Ticket:
    cfg, s = ctx.config, ctx.config.search
    T = cfg.data.timesteps
    method = "imp+et" if s.early_time else "imp"
    T_search, times, extra = search_timesteps(ctx)

    # round 0: dense training, remembering the rewind point
    model = ctx.new_model()
    mask = ctx.dense_mask(model)
    phase = ctx.train_phase("round_00", model, mask, T_search, 0, save_rewind_at=s.rewind_epoch)
    times.append(phase.seconds)
    ticket = ctx.save_ticket(ctx.paths.round_ticket(0), model, mask, method=method, round=0,
                             timesteps=T_search, wall_time_s=times, extra=extra)
    ctx.log_round("round 0 (dense)", phase.seconds, ticket)

    for k in range(1, s.rounds + 1):
        mask = prune_magnitude(ctx.layers(ticket.build_model()), ticket.mask, s.prune_fraction, s.scope)
        model = ctx.new_model()
        first_epoch = ctx.load_rewind(model)
        phase = ctx.train_phase(f"round_{k:02d}", model, mask, T_search, first_epoch)
        times.append(phase.seconds)
        ticket = ctx.save_ticket(ctx.paths.round_ticket(k), model, mask, method=method, round=k,
                                 timesteps=T_search, wall_time_s=times, extra=extra)
        ctx.log_round(f"round {k}", phase.seconds, ticket)

    if not s.early_time:
        return ticket
    # Early-Time: the mask was found at T_early; the deployed ticket is trained at the full T.
    model = ctx.new_model()
    first_epoch = ctx.load_rewind(model)
    phase = ctx.train_phase("final", model, ticket.mask, T, first_epoch)
    times.append(phase.seconds)
    final = ctx.save_ticket(ctx.paths.round_ticket(s.rounds + 1), model, ticket.mask, method=method,
                            round=s.rounds + 1, timesteps=T, wall_time_s=times, extra=extra)
    ctx.log_round(f"final (T={T})", phase.seconds, final)
    return final
