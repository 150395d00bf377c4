"""The weight-memory rule (issue 30): the energy of a weight read grows smoothly with the store's size, and the
SNN's host layer and the ANN are stored and read by the same rule. Values computed by hand from Horowitz's
45 nm points (int8-45nm: 5 pJ / 32 bits at 8 KiB, 20 pJ / 64 bits at 32 KiB, 100 pJ / 64 bits at 1 MiB, DRAM
640 pJ / 32 bits)."""

from __future__ import annotations

import math

import pytest
import torch

from slt_deploy.cost import activity as A
from slt_deploy.cost.energy import ann_energy_from_activity, snn_energy
from slt_deploy.cost.mapping import WeightStore, weight_store
from slt_deploy.cost.profiles import MemoryLevel, load_profile, read_energy_per_bit

PJ = 1e-12
KIB = 8 * 1024  # bits


@pytest.mark.parametrize("profile", ["int8-45nm", "fp32-45nm"])
def test_one_byte_over_a_level_changes_the_read_energy_by_less_than_a_percent(profile):
    p = load_profile(profile)
    on_chip = [m for m in p.weight_memory if m.capacity_bits is not None]
    assert len(on_chip) == 3
    for level in on_chip[:-1]:  # the largest on-chip level borders DRAM: the one documented step
        at = p.weight_read(level.capacity_bits, 8).joules
        over = p.weight_read(level.capacity_bits + 8, 8).joules
        assert at == pytest.approx(level.per_bit() * 8)  # the curve passes through each sourced point
        assert 1.0 <= over / at < 1.01


def test_the_curve_between_points_is_a_power_law_in_size():
    p = load_profile("int8-45nm")
    # 16 KiB: halfway (in log size) from 8 to 32 KiB: sqrt(5/32 x 20/64) = 0.15625 x sqrt(2) pJ per bit
    assert p.weight_read(16 * KIB, 8).joules == pytest.approx(8 * 0.15625 * math.sqrt(2) * PJ)
    # the pruned ANN, a 36.1 KiB store: 0.3125 x (36.1 / 32) ** (ln 5 / ln 32) pJ per bit
    k = math.log(5) / math.log(32)
    assert k == pytest.approx(0.464386, abs=1e-6)
    assert p.weight_read(36.1 * KIB, 8).per_bit_j == pytest.approx(0.3125 * (36.1 / 32) ** k * PJ)
    assert p.weight_read(36.1 * KIB, 8).joules == pytest.approx(2.6440 * PJ, rel=1e-4)  # not 12.5 pJ (1 MB level)
    # below the smallest point the smallest level's figure; a 1-bit store costs what 8 KiB does
    assert p.weight_read(1, 8).joules == pytest.approx(1.25 * PJ)


def test_the_energy_grows_monotonically_up_to_the_chip_and_leaving_it_is_the_documented_step():
    p = load_profile("int8-45nm")
    sizes = [2 ** e for e in range(10, 24)]  # 128 B .. 1 MiB
    energies = [p.weight_read(s, 8).joules for s in sizes]
    assert energies == sorted(energies)
    largest = 1024 * KIB
    assert p.weight_read(largest, 8).joules == pytest.approx(12.5 * PJ)
    off = p.weight_read(largest + 8, 8)
    assert off.level.name == "dram" and off.joules == pytest.approx(160 * PJ)
    assert "off chip" in off.describe()


def test_a_profile_without_off_chip_memory_has_no_figure_past_its_largest_level():
    levels = (MemoryLevel("a", 10 * PJ, 64, 8 * KIB, "s", "published"),
              MemoryLevel("b", 20 * PJ, 64, 32 * KIB, "s", "published"))
    assert read_energy_per_bit(levels, 32 * KIB + 1) is None
    per_bit, level, below = read_energy_per_bit(levels, 16 * KIB)
    assert (level.name, below.name) == ("b", "a")
    assert per_bit == pytest.approx(10 / 64 * math.sqrt(2) * PJ)
    assert read_energy_per_bit((), 100) is None


def _pruned_layer(rows=30, cols=40, keep_every=4) -> A.SynapseLayer:
    w = torch.arange(1, rows * cols + 1, dtype=torch.float64).reshape(rows, cols) / 100.0
    w[torch.arange(rows * cols).reshape(rows, cols) % keep_every != 0] = 0.0  # 300 of 1,200 kept
    return A.SynapseLayer("fc1", "linear", w, (cols,), (rows,), None, "p1")


def test_the_store_is_the_smallest_encoding_with_its_index_bits():
    layer = _pruned_layer()
    # CSR: 300 x (8 + ceil(log2 40) = 6) + 31 row pointers x ceil(log2 301) = 9: 4,200 + 279 = 4,479 bits,
    # against 1,200 x 8 = 9,600 dense: sparse, 4,479 / 300 = 14.93 bits read per weight
    store = weight_store([layer], "int8-45nm")
    assert store == WeightStore(4479.0, 4479.0 / 300, "sparse")
    dense = A.SynapseLayer("fc1", "linear", torch.ones(30, 40, dtype=torch.float64), (40,), (30,), None, "p1")
    assert weight_store([dense], "int8-45nm") == WeightStore(9600.0, 8.0, "dense")
    assert weight_store([], "int8-45nm") is None


def test_the_host_layer_and_an_ann_layer_with_the_same_weights_cost_the_same():
    layer = _pruned_layer()
    store = weight_store([layer], "int8-45nm")
    macs = 250.0  # effective MACs of one sample (nonzero input x nonzero weight), the same on both sides
    host = A.LayerActivity("fc1", "linear", "p1", 40, macs, 1200, False, 30.0, 5.0, 1200, 300, 30, 40, 30,
                           True, True)
    chip = A.LayerActivity("fc2", "linear", "p2", 5, 50.0, 300, True, 50.0, 3.0, 300, 300, 10, 30, 10)
    snn = snn_energy(A.NetworkActivity((host, chip), 5, 1, "test"), "loihi", host="int8-45nm", host_store=store)
    ann_layer = A.LayerActivity("fc1", "linear", "p1", 40, macs, 1200, False, 0.0, 0.0, 1200, 300, 30, 40, 30,
                                False, True)
    ann = ann_energy_from_activity(A.NetworkActivity((ann_layer,), 1, 1, "test"), "int8-45nm", storage=store)
    assert snn.components["first_layer"] == pytest.approx(ann.total)
    # by hand: 4,479 bits = 0.55 KiB (the 8 KB SRAM's figure), 0.15625 pJ/bit x 14.93 bits + 0.3 pJ per MAC
    assert ann.total == pytest.approx(macs * (0.3 + 0.15625 * 4479 / 300) * PJ)
    # the old host rule (dense int8, 8 bits per read) would charge it less than the ANN pays for the same layer
    dense_rule = snn_energy(A.NetworkActivity((host, chip), 5, 1, "test"), "loihi", host="int8-45nm")
    assert dense_rule.components["first_layer"] == pytest.approx(macs * (0.3 + 1.25) * PJ)
