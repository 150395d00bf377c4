"""Sourced figures (issue 30): MLPerf Tiny ranges over all four reference benchmarks, and readings whose source
contradicts itself set aside (kept for the record, never a value, range end or bound). Hand-computed."""

from __future__ import annotations

import copy

import pytest
import yaml

from slt_deploy.cost.profiles import ProfileError, load_profile, parse_profile

# median energy per inference (uJ, results.txt) and reference-model MACs, per benchmark
MACS = {"ic": 12_534_936, "kws": 2_665_584, "vww": 7_494_744, "ad": 265_864}
MEASURED_UJ = {
    "mlperf-tiny-gap9": {"ic": 27.711, "kws": 18.561, "vww": 40.801, "ad": 5.252},
    "mlperf-tiny-stm32u5": {"ic": 2578.969, "kws": 656.163, "vww": 1354.685, "ad": 81.875},
}


@pytest.mark.parametrize("name", sorted(MEASURED_UJ))
def test_mlperf_tiny_range_spans_all_four_benchmarks_and_the_value_is_the_fc_model(name):
    per_mac_pj = {b: MEASURED_UJ[name][b] * 1e-6 / MACS[b] * 1e12 for b in MACS}
    mac = load_profile(name).figure("mac")
    assert mac.range == pytest.approx((min(per_mac_pj.values()), max(per_mac_pj.values())), rel=2e-3)
    assert mac.value == pytest.approx(per_mac_pj["ad"], rel=2e-3)  # the anomaly-detection autoencoder
    assert "anomaly" in mac.note and "visual wake words" in mac.note


def test_hand_computed_per_mac_figures():
    assert 5.252e-6 / 265_864 == pytest.approx(19.75e-12, rel=1e-3)      # GAP9, anomaly detection
    assert 40.801e-6 / 7_494_744 == pytest.approx(5.44e-12, rel=1e-3)    # GAP9, visual wake words
    assert 81.875e-6 / 265_864 == pytest.approx(308.0e-12, rel=1e-3)     # STM32U5, anomaly detection
    assert 1354.685e-6 / 7_494_744 == pytest.approx(180.8e-12, rel=1e-3)  # STM32U5, visual wake words


def test_an_inconsistent_reading_is_kept_but_never_used():
    static = load_profile("loihi2").figure("static_power")
    assert [r.value for r in static.inconsistent] == [0.281775]
    assert "0.2757 W" in static.inconsistent[0].note
    # the set-aside reading widens nothing: the interval is the consistent measurement alone
    assert static.range is None and static.interval() == pytest.approx((0.232, 0.232))


def _loihi2_data() -> dict:
    with open(load_profile("loihi2").path) as f:
        return yaml.safe_load(f)


def test_an_inconsistent_reading_must_say_why():
    data = _loihi2_data()
    del data["figures"]["static_power"]["inconsistent"][0]["note"]
    with pytest.raises(ProfileError, match=r"figures.static_power.inconsistent\[0\].note is missing"):
        parse_profile(data, "loihi2.yaml")
    data = _loihi2_data()
    data["figures"]["static_power"]["inconsistent"] = "0.28"
    with pytest.raises(ProfileError, match=r"figures.static_power.inconsistent must be a list"):
        parse_profile(data, "loihi2.yaml")
    limits = copy.deepcopy(_loihi2_data())
    limits["limits"]["cores"]["inconsistent"] = [{"value": 1, "source": "s", "note": "n"}]
    with pytest.raises(ProfileError, match=r"limits.cores.inconsistent applies to energy figures only"):
        parse_profile(limits, "loihi2.yaml")
