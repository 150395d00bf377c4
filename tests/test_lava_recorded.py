"""The fast simulators (numpy and torch) against Lava's own fixed_pt outputs, recorded once by Lava
(tests/data/lava_recorded/make.py): bit for bit on every Python, Lava installed or not (the torch simulator
refuses recurrent graphs, so those replay in numpy only). Where Lava is installed,
Lava is run again on the same networks and must still give the recorded outputs (the record is Lava's, not ours)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from slt_deploy.compile import first_mismatch
from slt_deploy.simulate.fastsim import SimError, simulate
from slt_deploy.simulate.fastsim_torch import TorchFastSim

HERE = Path(__file__).parent / "data" / "lava_recorded"


def _load_make():
    spec = importlib.util.spec_from_file_location("lava_recorded_make", HERE / "make.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


MAKE = _load_make()
NETWORKS = MAKE.networks()
RECORD = np.load(MAKE.RECORD)


def recorded(name: str) -> dict:
    prefix = f"{name}/"
    out = {k[len(prefix):]: RECORD[k] for k in RECORD.files if k.startswith(prefix)}
    out["spikes"] = {k[len("spikes/"):]: v for k, v in out.items() if k.startswith("spikes/")}
    return out


def network(name: str):
    builder, first_layer, _ = NETWORKS[name]
    rec = recorded(name)
    assert str(rec["first_layer"]) == first_layer
    return MAKE.lowered(builder, first_layer), rec


def assert_matches_record(run, rec: dict, net, who: str) -> None:
    """Spikes of every population, the raw readout current and the outputs, exactly."""
    changed = MAKE.fingerprint(net) != str(rec["fingerprint"])
    hint = (" (the network is no longer the one Lava recorded: re-record with Python 3.10 and Lava, "
            "tests/data/lava_recorded/make.py)" if changed else "")
    assert sorted(run.spikes) == sorted(rec["spikes"]), who + hint
    assert first_mismatch({k: np.asarray(v) for k, v in run.spikes.items()}, rec["spikes"]) is None, who + hint
    for pop, spikes in rec["spikes"].items():
        np.testing.assert_array_equal(np.asarray(run.spikes[pop]).astype(np.int8), spikes, err_msg=who + hint)
    np.testing.assert_array_equal(run.readout_current, rec["readout_current"], err_msg=who + hint)
    np.testing.assert_array_equal(run.outputs, rec["outputs"], err_msg=who + hint)


def test_the_record_covers_the_fast_simulator_cases_and_the_named_kinds():
    cases = MAKE.fastsim_cases().CASES
    assert len(cases) >= 14 and {c[0] for c in cases} <= set(NETWORKS)  # every fast-simulator case
    assert {f"{name}/x" for name in NETWORKS} <= set(RECORD.files)
    nets = {name: network(name)[0] for name in ("lenet-300-100-mnist", "two-layer-cycle-chip",
                                                 "cubalif-bias-chip", "lif-subtract-host")}
    assert [p.size for p in nets["lenet-300-100-mnist"].populations] == [300, 100]
    assert any(pr.recurrent for pr in nets["two-layer-cycle-chip"].projections)
    assert all(p.current_bias is not None and p.node_type == "CubaLIF" for p in nets["cubalif-bias-chip"].populations)
    assert {p.reset for p in nets["lif-subtract-host"].populations} == {"subtract"}
    assert MAKE.RECORD.stat().st_size < 2 * 2 ** 20  # compact test data


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_fast_simulators_reproduce_lava_bit_for_bit(name):
    net, rec = network(name)
    assert 0 < min(s.mean() for s in rec["spikes"].values()) and max(s.mean() for s in rec["spikes"].values()) < 1
    assert_matches_record(simulate(net, rec["x"]), rec, net, "numpy fast simulator")
    if any(pr.recurrent for pr in net.projections):  # the torch one refuses recurrence in one line
        with pytest.raises(SimError, match=r"recurrent=True is not implemented by the torch fast simulator"):
            TorchFastSim(net, "cpu")
        return
    assert_matches_record(TorchFastSim(net, "cpu").run(rec["x"]), rec, net, "torch fast simulator")


# the fast simulator's own cases are run in Lava by tests/test_fastsim.py (fast simulator == Lava, live), and the
# replay above gives fast simulator == record: Lava is re-run here only on the networks no other test runs in Lava
LAVA_ONLY_HERE = sorted(set(NETWORKS) - {c[0] for c in MAKE.fastsim_cases().CASES})


@pytest.mark.lava
@pytest.mark.parametrize("name", LAVA_ONLY_HERE)
def test_lava_still_gives_the_recorded_outputs(name):
    from slt_deploy.simulate.lava import run_lava

    net, rec = network(name)
    assert_matches_record(run_lava(net, rec["x"]), rec, net, "Lava fixed_pt")
