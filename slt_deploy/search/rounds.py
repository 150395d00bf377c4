"""What a search method tells its objective at every round: the :class:`RoundHook` protocol.

A method (:mod:`.imp`, :mod:`.biprop`, :mod:`.baselines`, :mod:`.early_bird`) trains its rounds and calls, in
this order::

    first = hook.start(method)           # the round the method starts at (0, or 1 after a reference round)
    T = hook.timesteps(T)                # T of its rounds after round 0
    for k in range(first, hook.last_round(planned) + 1):
        ...train round k...
        if not hook.done(Round(k, ...)):  # log it, measure it; False: stop here
            break
    return hook.finish(last_ticket)      # the search's final ticket

:class:`RoundHook` is the accuracy objective: no reference round, the method's own T and round count, every
round logged, the last ticket kept. The energy objective (:class:`.energy.EnergyRounds`) is another hook: it
trains a dense reference round where a method starts pruned, measures every round on the held-out samples, stops
pruning when accuracy no longer holds, and returns the front's chosen ticket.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional, Sequence

from torch import nn

from ..ticket import Ticket
from .masks import Mask


@dataclass(frozen=True)
class Round:
    """One finished round of a search method: its network, mask and saved ticket."""

    k: int
    label: str
    model: nn.Module
    mask: Mask
    ticket: Ticket
    seconds: float                # training time of this round
    method: str                   # as the ticket records it
    times: List[float]            # every phase's time so far (the ticket's wall_time_s)
    extra: dict = field(default_factory=dict)  # the ticket's extra facts
    history: Sequence[dict] = ()  # the round's per-epoch training log


class RoundHook:
    """The accuracy objective's hook: the method's rounds as planned, each logged in the run's log."""

    def __init__(self, ctx):
        self.ctx = ctx

    def start(self, method: str) -> int:
        """Called before a method's first round; the round it starts at."""
        return 0

    def timesteps(self, T: int) -> int:
        """T of the rounds after round 0, given the method's own."""
        return T

    def last_round(self, planned: int) -> int:
        """The last round a method runs, given its own plan."""
        return planned

    def done(self, r: Round) -> bool:
        """After each round; False ends the method's rounds."""
        self.ctx.log_round(r.label, r.seconds, r.ticket)
        return True

    def finish(self, last: Optional[Ticket]) -> Ticket:
        """The search's final ticket, given the method's last one."""
        return last
