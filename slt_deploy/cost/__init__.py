"""The cost stage: what a network costs on a hardware profile.

Takes measured activity (:mod:`.activity`: op counts from real runs of the snnTorch ticket, the reference
executor or a simulator) and a hardware profile (:mod:`.profiles`, the data files in ``hardware_profiles/``);
gives energy per inference by component (:mod:`.energy`), weight memory per layer and encoding, and the core
mapping with its fit verdict (:mod:`.mapping`).
"""

from .activity import LayerActivity, NetworkActivity, SynapseLayer, count_from_spikes, count_simulation, \
    count_snntorch, synapse_layers
from .energy import OPS_RULES, EnergyBreakdown, ann_energy, ann_energy_from_activity, ann_energy_from_layers, \
    energy_ratio, snn_energy
from .mapping import MappingResult, layer_memory, map_network
from .profiles import HardwareProfile, ProfileError, list_profiles, load_profile, profile_names, profiles_table

__all__ = ["LayerActivity", "NetworkActivity", "SynapseLayer", "count_from_spikes", "count_simulation",
           "count_snntorch", "synapse_layers", "EnergyBreakdown", "ann_energy", "ann_energy_from_layers",
           "energy_ratio", "snn_energy", "ann_energy_from_activity", "OPS_RULES", "MappingResult", "layer_memory",
           "map_network", "HardwareProfile",
           "ProfileError", "list_profiles", "load_profile", "profile_names", "profiles_table"]
