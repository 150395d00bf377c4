"""Static power at the rate the user runs (issue 30): the same rule on both sides, hand-computed."""

from __future__ import annotations

import math

import pytest

from slt_deploy.config import UsageConfig
from slt_deploy.cost import activity as A
from slt_deploy.cost.energy import ann_energy_from_activity, snn_energy
from slt_deploy.errors import ConfigError

PJ = 1e-12


def chip_activity(acs=1_000.0, updates=50.0, spikes=10.0, timesteps=5):
    layer = A.LayerActivity("fc2", "linear", "p2", 1, acs, acs, True, updates, spikes, 100, 100, 10, 10, 10)
    return A.NetworkActivity((layer,), timesteps, 1, "test")


def ann_activity(macs=1_000.0, weights=1_000):
    layer = A.LayerActivity("fc", "linear", "p", 1, macs, macs, False, 0.0, 0.0, weights, weights, 10, 10, 10,
                            False, True)
    return A.NetworkActivity((layer,), 1, 1, "test")


def test_back_to_back_charges_the_latency_and_a_rate_charges_the_period():
    back = snn_energy(chip_activity(), "loihi2", host_first_layer=False)
    assert back.components["static_power"] == pytest.approx(0.232 * 200e-6 * 5)  # P x step time x T
    slow = snn_energy(chip_activity(), "loihi2", host_first_layer=False, rate=100.0)
    assert slow.components["static_power"] == pytest.approx(0.232 / 100)         # P / rate: 2.32 mJ
    assert slow.counts["static_power"] == pytest.approx(0.01)
    # the dynamic part is untouched; at chip scope the static part is exact (no latency in it any more)
    assert slow.interval("chip-dynamic") == back.interval("chip-dynamic")
    assert slow.interval("chip")[1] - slow.interval("chip-dynamic")[1] == pytest.approx(2.32e-3)


def test_a_rate_makes_static_power_chargeable_without_a_latency():
    # Xylo's step time is unknown (nothing charged back to back) but its idle power is: 219 uW (188.2-542.9) / 10
    back = snn_energy(chip_activity(), "xylo", host_first_layer=False)
    assert "static_power" not in back.components and "timestep_latency" in back.unknown
    at = snn_energy(chip_activity(), "xylo", host_first_layer=False, rate=10.0)
    assert at.components["static_power"] == pytest.approx(21.9e-6)
    static = [t for t in at.terms if t.component == "static_power"][0]
    assert (static.low, static.high) == pytest.approx((18.82e-6, 54.29e-6))


def test_a_rate_faster_than_the_known_latency_is_refused():
    from slt_deploy.cost.energy import static_seconds
    from slt_deploy.cost.profiles import Figure, load_profile

    step = Figure("timestep_latency", 10.0, "us", "test", "measured")  # 10 us x 5 steps = 50 us per inference
    assert static_seconds(load_profile("loihi2"), step, 5, 20_000.0) == pytest.approx((50e-6, 50e-6, 50e-6))
    with pytest.raises(ConfigError, match=r"rate=1e\+06/s: one inference on loihi2 takes at least 5e-05 s"):
        static_seconds(load_profile("loihi2"), step, 5, 1e6)
    # Loihi 2's step time is an upper bound (low end 0): a fast rate cannot be refused, only charged
    assert snn_energy(chip_activity(), "loihi2", host_first_layer=False, rate=1e6).counts["static_power"] == 1e-6


def test_an_all_in_figure_measured_back_to_back_leaves_idle_time_unknown_at_a_rate():
    # MLPerf Tiny's board energy holds static power while inferences run back to back: at 1/s the idle time
    # between inferences is not in it, so the chip- and board-scope totals are open above, and the row says why
    back = ann_energy_from_activity(ann_activity(), "mlperf-tiny-gap9")
    assert math.isfinite(back.interval("board")[1])
    at = ann_energy_from_activity(ann_activity(), "mlperf-tiny-gap9", rate=1.0)
    assert at.interval("board")[1] == math.inf
    assert any("idle between inferences" in u for u in at.unknown)


def test_the_ann_side_follows_the_same_rule():
    # int8-45nm has no static power figure: at any rate its chip-scope total is open and names static_power
    at = ann_energy_from_activity(ann_activity(), "int8-45nm", rate=100.0)
    assert "static_power" in at.unknown and at.interval("chip")[1] == math.inf


@pytest.mark.parametrize("rate", [0.0, -1.0, math.inf])
def test_usage_rate_must_be_positive(rate):
    with pytest.raises(ConfigError, match="usage.rate"):
        UsageConfig(rate=rate)
    assert UsageConfig().rate is None and UsageConfig(rate=50.0).rate == 50.0


def test_the_cli_flags_come_from_the_typed_settings():
    from slt_deploy.cli import build_parser, usage_from_args

    for command in (["report", "t.safetensors", "--profiles", "loihi", "--out", "o"], ["demo"],
                    ["deploy", "t.safetensors", "--profile", "loihi", "--out", "o"]):
        args = build_parser().parse_args(command + ["--rate", "50", "--accuracy-tolerance", "0.5"])
        assert usage_from_args(args) == UsageConfig(rate=50.0, accuracy_tolerance=0.5)
        assert usage_from_args(build_parser().parse_args(command)) == UsageConfig()  # back to back, SE default
    with pytest.raises(ConfigError, match="usage.rate"):
        usage_from_args(build_parser().parse_args(["demo", "--rate", "0"]))
