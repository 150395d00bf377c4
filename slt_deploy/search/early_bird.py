"""Early-Bird tickets (You et al., ICLR 2020, as applied to SNNs by Kim et al., ECCV 2022).

During dense training, an unstructured magnitude mask at the target sparsity is computed after every epoch
and pushed into a FIFO of ``eb_queue`` masks. When the FIFO is full and the largest normalized Hamming
distance between the newest mask and each older one is below ``eb_tau``, the ticket is drawn; the network is
then retrained from its epoch-0 initialization with that mask. With Early-Time the search runs at T_early.
"""

from __future__ import annotations

from typing import Annotated, Dict, List, Optional

import torch
from pydantic import Field

from ..errors import RunDirError
from ..records import Record, validate_record
from .masks import Mask, hamming_distance, mask_at_sparsity
from ..ticket import Ticket
from .early_time import search_timesteps
from .rounds import Round, RoundHook
from .run import EpochCallback


def eb_converged(fifo: List[Mask], queue: int, tau: float):
    """(converged, max distance) for a FIFO of masks, newest last; not converged until the FIFO is full."""
    if len(fifo) < queue:
        return False, None
    newest = fifo[-1]
    distance = max(hamming_distance(newest, older) for older in fifo[:-1])
    return distance < tau, distance


class EarlyBirdState(Record):
    """The watch's state in a phase checkpoint's ``callback`` meta (its masks are the ``fifoN/<layer>`` tensors)."""

    distances: List[Optional[Annotated[float, Field(ge=0)]]] = []  # None while the FIFO fills
    drawn_epoch: Optional[Annotated[int, Field(ge=1)]] = None
    fifo: Annotated[int, Field(ge=0)] = 0


class EarlyBirdWatch(EpochCallback):
    def __init__(self, layers_of, names, sparsity: float, scope: str, queue: int, tau: float):
        self.layers_of, self.names = layers_of, list(names)
        self.sparsity, self.scope, self.queue, self.tau = sparsity, scope, queue, tau
        self.fifo: List[Mask] = []
        self.distances: List = []
        self.drawn_epoch = None

    def after_epoch(self, epoch, model) -> bool:
        self.fifo.append(mask_at_sparsity(self.layers_of(model), self.names, self.sparsity, self.scope))
        self.fifo = self.fifo[-self.queue:]
        converged, distance = eb_converged(self.fifo, self.queue, self.tau)
        self.distances.append(None if distance is None else round(distance, 6))
        if converged:
            self.drawn_epoch = epoch + 1
        return converged

    def state(self):
        tensors: Dict[str, torch.Tensor] = {}
        for i, m in enumerate(self.fifo):
            tensors.update({f"fifo{i}/{name}": keep.to(torch.uint8) for name, keep in m.items()})
        return {"distances": self.distances, "drawn_epoch": self.drawn_epoch, "fifo": len(self.fifo)}, tensors

    def load(self, meta, tensors):
        state = validate_record(EarlyBirdState, meta, "callback", RunDirError)
        missing = [f"fifo{i}/{n}" for i in range(state.fifo) for n in self.names if f"fifo{i}/{n}" not in tensors]
        if missing:
            raise RunDirError(f"callback: fifo={state.fifo} masks, but tensor extra/{missing[0]} is missing")
        self.distances, self.drawn_epoch = list(state.distances), state.drawn_epoch
        self.fifo = [Mask((name, tensors[f"fifo{i}/{name}"]) for name in self.names) for i in range(state.fifo)]


def run_eb(ctx, hook: Optional[RoundHook] = None) -> Ticket:
    cfg, s = ctx.config, ctx.config.search
    hook = hook or RoundHook(ctx)
    T = cfg.data.timesteps
    method = "eb+et" if s.early_time else "eb"
    T_search, times, extra = search_timesteps(ctx)
    hook.start(method)

    model = ctx.new_model()
    watch = EarlyBirdWatch(ctx.layers, ctx.layers(model), s.target_sparsity, s.scope, s.eb_queue, s.eb_tau)
    phase = ctx.train_phase("eb_search", model, ctx.dense_mask(model), T_search, 0,
                            s.eb_max_epochs or cfg.train.epochs, callback=watch)
    times.append(phase.seconds)
    mask = watch.fifo[-1]
    extra.update(eb_drawn_epoch=watch.drawn_epoch, eb_converged=watch.drawn_epoch is not None,
                 eb_distances=watch.distances)
    ctx.log_round("early-bird search", phase.seconds, drawn_epoch=watch.drawn_epoch,
                  converged=watch.drawn_epoch is not None, distances=watch.distances)
    if watch.drawn_epoch is None:
        ctx.echo(f"  warning: no early-bird ticket within {phase.epochs_run} epochs (tau={s.eb_tau}); "
                 "using the last epoch's mask")

    model = ctx.new_model()  # retrain from the epoch-0 initialization
    phase = ctx.train_phase("final", model, mask, T, 0)
    times.append(phase.seconds)
    ticket = ctx.save_ticket(ctx.paths.round_ticket(1), model, mask, method=method, round=1, timesteps=T,
                             wall_time_s=times, extra=extra)
    hook.done(Round(1, "final", model, mask, ticket, phase.seconds, method, times, extra, phase.history))
    return hook.finish(ticket)
