"""Where the wall time of a long command goes: named stages timed by whoever runs them, read by the driver.

A stage is ``with stage("NeuroBench"): ...``. Stages nest; each one's *own* time excludes the stages inside it,
so the own times of one :class:`StageClock` add up to the wall time it covered. Without a clock running
(:func:`clock`), :func:`stage` costs one check and records nothing, so library code can mark its stages freely.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Iterator, List, Optional


@dataclass
class StageTime:
    name: str
    seconds: float = 0.0        # wall time inside the stage, nested stages included
    nested: float = 0.0         # of which inside stages nested in it

    @property
    def own(self) -> float:
        return self.seconds - self.nested


@dataclass
class StageClock:
    """The stages timed while the clock ran, in the order they finished (a name seen twice adds up)."""

    stages: List[StageTime] = field(default_factory=list)
    _open: List[StageTime] = field(default_factory=list)

    def own_seconds(self) -> dict:
        out: dict = {}
        for s in self.stages:
            out[s.name] = out.get(s.name, 0.0) + s.own
        return out

    def table(self) -> str:
        """One line per stage name: its own seconds and share of the total."""
        own = self.own_seconds()
        total = sum(own.values()) or 1.0
        width = max((len(n) for n in own), default=5)
        lines = [f"  {name:<{width}}  {sec:7.1f} s  {100 * sec / total:5.1f} %" for name, sec in own.items()]
        return "\n".join(lines + [f"  {'total':<{width}}  {sum(own.values()):7.1f} s"])


_CLOCK: Optional[StageClock] = None


@contextlib.contextmanager
def clock() -> Iterator[StageClock]:
    """Time the stages run inside this block (one clock at a time; an inner clock replaces the outer one)."""
    global _CLOCK
    outer, _CLOCK = _CLOCK, StageClock()
    try:
        yield _CLOCK
    finally:
        _CLOCK = outer


@contextlib.contextmanager
def stage(name: str) -> Iterator[None]:
    """Time the block as stage ``name`` of the running clock, if one runs."""
    running = _CLOCK
    if running is None:
        yield
        return
    entry = StageTime(name)
    running._open.append(entry)
    start = time.perf_counter()
    try:
        yield
    finally:
        entry.seconds = time.perf_counter() - start
        running._open.pop()
        if running._open:
            running._open[-1].nested += entry.seconds
        running.stages.append(entry)


def timed(name: str, fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` timed as stage ``name``."""
    with stage(name):
        return fn(*args, **kwargs)


__all__ = ["StageClock", "StageTime", "clock", "stage", "timed"]
