"""Stage timings (slt_deploy/timing.py): nested stages' own times add up to the wall time, nothing is recorded
without a clock."""

from __future__ import annotations

import time

import pytest

from slt_deploy.timing import clock, stage, timed


@stage("inner")
def _inner():
    time.sleep(0.05)


def test_own_times_exclude_nested_stages_and_add_up():
    start = time.perf_counter()
    with clock() as c:
        with stage("outer"):
            time.sleep(0.05)
            _inner()
            timed("inner", _inner)
    wall = time.perf_counter() - start
    own = c.own_seconds()
    assert list(own) == ["inner", "outer"]
    assert own["inner"] == pytest.approx(0.10, abs=0.03) and own["outer"] == pytest.approx(0.05, abs=0.03)
    assert sum(own.values()) == pytest.approx(wall, abs=0.01)
    assert c.table().splitlines()[-1].split()[0] == "total"


def test_without_a_clock_nothing_is_recorded():
    with clock() as c:
        pass
    _inner()  # after the clock: not recorded anywhere
    assert c.stages == []
