"""Hardware profiles: every shipped file loads and validates; schema errors name the file and field."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import yaml

from slt_deploy.cost.profiles import (ENCODINGS, FIGURES, LIMITS, REQUIRED_FIGURES, REQUIRED_LIMITS, STATUSES,
                                 HardwareProfile, ProfileError, list_profiles, load_profile, profile_names)

EXPECTED = {"loihi", "loihi2", "truenorth", "dynapcnn", "xylo", "cmos45", "int8-45nm", "fp32-45nm"}


def shipped_yaml(name: str) -> dict:
    return yaml.safe_load((Path(load_profile(name).path)).read_text())


def write(tmp_path: Path, data: dict, name: str = "custom.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


# ------------------------------------------------------------------------------------- shipped profiles

def test_every_shipped_profile_loads_and_validates():
    profiles = list_profiles()
    names = {p.name for p in profiles}
    assert EXPECTED <= names
    assert sum(p.kind == "ann" for p in profiles) >= 2
    for p in profiles:
        assert Path(p.path).stem == p.name                     # file named after the profile
        # a weight_memory section stands for the memory_access figure (the read follows the footprint)
        assert set(REQUIRED_FIGURES[p.kind]) - ({"memory_access"} if p.weight_memory else set()) <= set(p.figures)
        assert set(REQUIRED_LIMITS[p.mapping]) <= set(p.limits)
        for entry in list(p.figures.values()) + list(p.limits.values()) + list(p.synapse_format.values()):
            assert entry.source and entry.status in STATUSES
            # unknown is null, never invented; a number always has a status that is not unknown
            assert (entry.value is None) == (entry.status in ("unknown", "excluded"))
            if entry.status in ("estimate", "derived", "included", "excluded", "unverified"):
                assert entry.note, f"{p.name}.{entry.name} needs its reasoning"


def test_figures_match_reference_section_7():
    cmos = load_profile("cmos45")
    assert math.isclose(cmos.energy("mac"), 4.6e-12) and math.isclose(cmos.energy("synaptic_op"), 0.9e-12)
    loihi = load_profile("loihi")
    assert math.isclose(loihi.energy("synaptic_op"), 23.6e-12)
    assert loihi.limit("synaptic_memory_per_core") == 16384 * 64
    assert loihi.limit("neurons_per_core") == 1024 and loihi.limit("fan_in_per_core") == 4096
    assert loihi.format_constant("word_bits") == 64 and loihi.format_constant("max_synapses_per_entry") == 60
    assert load_profile("truenorth").energy("synaptic_op") == pytest.approx(26e-12)
    dyn = load_profile("dynapcnn")
    assert dyn.limit("kernel_memory_per_core") == tuple(k * 1024 for k in [16, 16, 16, 32, 32, 64, 64, 16, 16])
    assert dyn.encodings == ("dense",)
    assert load_profile("loihi2").energy("static_power") == pytest.approx(0.232)
    # no public per-op figure: an upper bound derived from Intel's measured PilotNet run (1.094 mJ / 3.66e7 ops)
    l2 = load_profile("loihi2").figure("synaptic_op")
    assert l2.status == "derived" and l2.bound == "upper" and l2.value == pytest.approx(1.093544e-3 / 3.66e7 * 1e12, rel=2e-3)
    assert math.isclose(load_profile("fp32-45nm").energy("mac"), 4.6e-12)


def test_profile_is_frozen_and_read_only():
    p = load_profile("loihi")
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.name = "x"
    with pytest.raises(TypeError):
        p.figures["mac"] = None
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.figures["synaptic_op"].value = 1.0
    assert p.figure("mac").status == "unknown"
    assert load_profile("int8-45nm").figure("synaptic_op") is None   # not listed by an ANN target


def test_user_profile_file_loads_by_path(tmp_path):
    data = shipped_yaml("loihi")
    data["name"] = "my-chip"
    data["figures"]["static_power"] = {"value": "1e-3", "unit": "W", "source": "my lab", "status": "measured"}
    p = load_profile(write(tmp_path, data))
    assert isinstance(p, HardwareProfile) and p.name == "my-chip"
    assert p.energy("static_power") == pytest.approx(1e-3)           # "1e-3" (YAML string) read as a number
    assert load_profile(str(write(tmp_path, data, "other.yml"))).name == "my-chip"


# ------------------------------------------------------------------------------------- schema errors

def test_unknown_profile_name_lists_valid_names():
    with pytest.raises(ProfileError, match=r"unknown hardware profile 'loihi3'; available: .*loihi2.*truenorth"):
        load_profile("loihi3")
    assert EXPECTED <= set(profile_names())


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d["figures"]["synaptic_op"].pop("unit"), r"custom\.yaml: figures\.synaptic_op\.unit is missing"),
    (lambda d: d["figures"].pop("neuron_update"), r"custom\.yaml: figures\.neuron_update is missing"),
    (lambda d: d.pop("kind"), r"custom\.yaml: missing required field 'kind'"),
    (lambda d: d["limits"].pop("cores"), r"custom\.yaml: limits\.cores is missing"),
    (lambda d: d["figures"]["synaptic_op"].update(unit="W"),
     r"custom\.yaml: figures\.synaptic_op\.unit 'W' is not allowed; use one of: pJ, nJ, uJ"),
    (lambda d: d["limits"]["synaptic_memory_per_core"].update(unit="pJ"),
     r"limits\.synaptic_memory_per_core\.unit 'pJ' is not allowed; use one of: bits, bytes, KiB"),
    (lambda d: d["figures"]["synaptic_op"].update(value=-1.0),
     r"custom\.yaml: figures\.synaptic_op\.value=-1\.0 is out of range \(must be >= 0\)"),
    (lambda d: d["limits"]["cores"].update(value=0), r"limits\.cores\.value=0 is out of range"),
    (lambda d: d["limits"]["cores"].update(value=1.5), r"limits\.cores\.value must be an integer"),
    (lambda d: d["figures"]["synaptic_op"].update(value="lots"), r"figures\.synaptic_op\.value must be a number"),
    (lambda d: d.update(colour="blue"), r"custom\.yaml: unknown key\(s\) colour; valid keys: name, kind"),
    (lambda d: d["figures"].update(energy_per_hop={"value": 3.0}),
     r"unknown key\(s\) figures\.energy_per_hop; valid keys: synaptic_op"),
    (lambda d: d["figures"]["synaptic_op"].update(confidence="high"),
     r"unknown key\(s\) figures\.synaptic_op\.confidence; valid keys: value, unit, source, status, note"),
    (lambda d: d["figures"]["synaptic_op"].update(value=None),
     r"figures\.synaptic_op\.value is null but status is pre-silicon; use status unknown"),
    (lambda d: d["figures"]["mac"].update(value=4.6),
     r"figures\.mac\.value must be null when status is unknown"),
    (lambda d: d["figures"]["synaptic_op"].update(status="guess"),
     r"figures\.synaptic_op\.status='guess' is not one of: measured"),
    (lambda d: d["figures"]["synaptic_op"].update(status="estimate", note=""),
     r"figures\.synaptic_op\.note is required when status is estimate"),
    (lambda d: d["figures"]["synaptic_op"].update(source=""), r"figures\.synaptic_op\.source must be a non-empty"),
    (lambda d: d["figures"]["memory_access"].update(value=2.0), r"figures\.memory_access\.value must be 0 when"),
    (lambda d: d["limits"]["encodings"].update(value=["dense", "zip"]), r"limits\.encodings\.value .* must list"),
    (lambda d: d["limits"]["neurons_per_core"].update(value=[1024, 1024]),
     r"limits\.neurons_per_core\.value must be one number: mapping partition"),
    (lambda d: d.pop("synapse_format"), r"limits\.encodings lists runlength, which needs a synapse_format"),
    (lambda d: d["synapse_format"]["index_bits_min"].update(value=12), r"index_bits_min=12 exceeds index_bits_max"),
    (lambda d: d.update(kind="quantum"), r"kind='quantum' is not one of: neuromorphic, ann, reference"),
    (lambda d: d["figures"]["synaptic_op"].update(bound="maybe"),
     r"figures\.synaptic_op\.bound 'maybe' is not one of: lower, upper"),
    (lambda d: d["limits"]["cores"].update(bound="upper"), r"limits\.cores\.bound applies to energy figures only"),
    (lambda d: d.update(sanafe="loihi"), r"custom\.yaml: sanafe must be a list of SANA-FE architecture names"),
])
def test_schema_errors_name_file_and_field(tmp_path, mutate, message):
    data = shipped_yaml("loihi")
    mutate(data)
    with pytest.raises(ProfileError, match=message) as info:
        load_profile(write(tmp_path, data))
    assert "\n" not in str(info.value)                                # one line


def test_per_core_list_must_match_core_count(tmp_path):
    data = shipped_yaml("dynapcnn")
    data["limits"]["neurons_per_core"]["value"] = [64, 64]
    with pytest.raises(ProfileError, match=r"limits\.neurons_per_core\.value lists 2 cores but limits\.cores is 9"):
        load_profile(write(tmp_path, data))


def test_loihi_names_its_bounds_and_sanafe_architectures():
    loihi = load_profile("loihi")
    assert {n: f.bound for n, f in loihi.figures.items() if f.bound} == {
        "synaptic_op": "lower", "neuron_update": "upper", "spike_out": "lower"}
    assert loihi.sanafe == ("loihi", "loihi_profile_figures.yaml")
    assert loihi.to_dict()["sanafe"] == ["loihi", "loihi_profile_figures.yaml"]


def test_unreadable_and_malformed_files(tmp_path):
    with pytest.raises(ProfileError, match=r"nope\.yaml: cannot read hardware profile"):
        load_profile(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ProfileError, match=r"bad\.yaml: not valid YAML"):
        load_profile(bad)
    bad.write_text("- a list\n")
    with pytest.raises(ProfileError, match=r"bad\.yaml: a profile must be a mapping"):
        load_profile(bad)


def test_schema_registry_is_consistent():
    for kind, names in REQUIRED_FIGURES.items():
        assert set(names) <= set(FIGURES)
    for mapping, names in REQUIRED_LIMITS.items():
        assert set(names) <= set(LIMITS)
    assert ENCODINGS == ("dense", "sparse", "runlength", "binary")


def test_to_dict_round_trips_through_the_schema(tmp_path):
    for profile in list_profiles():
        data = profile.to_dict()
        for section in ("figures", "limits"):               # unit-less entries (encodings, flags) omit the unit
            for entry in data[section].values():
                if not entry["unit"]:
                    entry.pop("unit")
        again = load_profile(write(tmp_path, data, f"{profile.name}.yaml"))
        assert again.to_dict() == profile.to_dict()


def test_the_simulator_a_profile_ends_with_is_a_field_of_its_file(tmp_path):
    """deploy's vendor run comes from the profile file, not a code table; a name that is no backend is refused."""
    from slt_deploy.cost.profiles import list_profiles, parse_profile

    assert {p.name: p.simulator for p in list_profiles() if p.simulator} == {"xylo": "xylosim", "dynapcnn": "sinabs"}
    assert load_profile("speck").simulator == "sinabs"
    data = shipped_yaml("xylo")
    assert load_profile(write(tmp_path, data)).to_dict()["simulator"] == "xylosim"
    data["simulator"] = "xylosimm"
    with pytest.raises(ProfileError, match=r"custom\.yaml: simulator='xylosimm' is not one of: reference, .*xylosim"):
        load_profile(write(tmp_path, data))
    del data["simulator"]
    assert parse_profile(data).simulator is None
