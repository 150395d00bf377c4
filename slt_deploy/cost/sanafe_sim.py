"""SANA-FE 2.2.9 on the deployed network, replaying the spikes of a real run.

A profile names its SANA-FE architectures (``sanafe:`` in the profile file): ``loihi`` is SANA-FE's own
calibrated Loihi (``sanafe.load_loihi()``, IEEE TCAD 2025), a file name an architecture YAML in
``hardware_profiles/sanafe/`` (e.g. ``loihi_profile_figures.yaml``, the profile's own per-event figures).

What is simulated is the on-chip part of the deployment: the host-computed first layer is left out (it is the
host's component of the analytical model). Every on-chip population becomes two SANA-FE groups on the same
cores: a *sink* (non-firing neurons that receive the synapses and are updated every step, ``force_update``) and
a *replay* group (``model: input``) that fires exactly the population's recorded spikes. Only nonzero synapses
are connected, so SANA-FE counts one synaptic event per (spike x nonzero weight): the effective ACs. The N
samples run back to back as N x T timesteps (replay needs no state reset); energy and simulated time are divided
by N (per inference) and by N x T (per timestep).

A recurrent layer (RLeaky) is a synapse layer from a replay group to its own population's sink: SANA-FE counts
every replayed spike through it, the last step's of each sample included, which in the deployed network reach
no step (the analytical count uses the previous step's spikes): its synaptic events exceed the analytical
ones by each sample's last-step spikes x their kept recurrent weights, and the result's note says so.

With the profile-figures architecture the SANA-FE total equals the analytical model's on-chip events
(synaptic_op x ACs + neuron_update x neurons x T + spike_out x spikes). With SANA-FE's calibrated Loihi, a
replayed spike leaves an input soma, whose spike-out energy is 0 there, so that figure (69.3 pJ on its LIF soma)
is not in SANA-FE's total: the result says so and gives it separately.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import torch
from torch import nn

from ..errors import SltError
from .activity import count_from_spikes, record_run
from .mapping import unrolled_synapses
from .profiles import HardwareProfile

MAX_SAMPLES = 200           # samples replayed per architecture (simulation time grows with N x T)
CALIBRATED = {"loihi": {"sink": "loihi_lif", "replay": "loihi_inputs", "synapse": "loihi_sparse_synapse",
                        "neurons_per_core": 1024, "spike_out_j": 69.3e-12}}
PROFILE_FIGURES = {"sink": "sink", "replay": "replay", "synapse": "synapse", "neurons_per_core": 1024,
                   "spike_out_j": None}


class SanafeError(SltError):
    """The deployed network cannot be simulated on the SANA-FE architecture (e.g. too few cores)."""


def architectures(profile: HardwareProfile) -> Tuple[str, ...]:
    return tuple(getattr(profile, "sanafe", ()) or ())


def _arch_file(name: str) -> Path:
    from importlib import resources

    return Path(str(resources.files("slt_deploy.hardware_profiles"))) / "sanafe" / name


def _load(name: str):
    import sanafe

    if name in CALIBRATED:
        return sanafe.load_loihi(), CALIBRATED[name]
    return sanafe.load_arch(str(_arch_file(name))), PROFILE_FIGURES


def replay(model: nn.Module, x_seq: torch.Tensor, arch_name: str, host_fed: bool) -> dict:
    """Run SANA-FE on the on-chip part of ``model`` replaying its spikes on the (T, N, ...) input ``x_seq``."""
    import sanafe

    layers, inputs, spikes = record_run(model, x_seq)
    steps, n = x_seq.shape[0], x_seq.shape[1]
    chip_layers = [l for l in layers if not (host_fed and l.source is None)]
    if any(l.source is None for l in chip_layers):
        raise SanafeError("the replay feeds on-chip populations only; a first layer on chip (event input) would "
                          "need the input events as a replayed group, which is not built here")
    arch, units = _load(arch_name)
    net = sanafe.Network()
    populations: Dict[str, int] = {}
    for l in layers:
        populations.setdefault(l.population, l.neurons)
    cores = arch.cores()
    per_core = units["neurons_per_core"] // 2  # a sink and a replay neuron per population neuron
    needed = sum(-(-c // per_core) for c in populations.values())
    if needed > len(cores):
        raise SanafeError(f"SANA-FE architecture {arch_name}: the network needs {needed} cores at {per_core} "
                          f"neurons each (a sink and a replay neuron per neuron), the architecture has {len(cores)}")
    core_index = 0
    sinks, replays = {}, {}
    total_spikes = 0
    for pop, count in populations.items():
        sink = net.create_neuron_group(f"{pop}.sink", count, {"threshold": 1e30, "leak_decay": 0.0,
                                                               "force_update": True},
                                       soma_hw_name=units["sink"], default_synapse_hw_name=units["synapse"])
        sinks[pop] = sink
        rec = spikes.get(pop)
        if rec is not None:
            s = rec.reshape(steps, n, -1).permute(1, 0, 2).reshape(n * steps, -1).numpy()  # (N*T, neurons)
            total_spikes += int(np.count_nonzero(s))
            group = net.create_neuron_group(f"{pop}.replay", count, {})
            times = [[] for _ in range(count)]
            for t, j in zip(*np.nonzero(s)):
                times[j].append(int(t) + 1)
            replays[pop] = group
        for j in range(count):
            if j % per_core == 0 and j:
                core_index += 1
            slot = j % per_core
            sink[j].map_to_core(cores[core_index])
            if rec is not None:
                replays[pop][j].set_attributes(model_attributes={"spikes": times[j]},
                                               soma_hw_name=f"{units['replay']}[{slot}]")
                replays[pop][j].map_to_core(cores[core_index])
        core_index += 1
    for l in chip_layers:
        # only nonzero synapses exist; their values change no event here (sinks never fire, replay groups fire
        # the recorded spikes), so each is given weight 1
        axons, neurons = unrolled_synapses(l)
        replays[l.source].connect_neurons_sparse(sinks[l.population], {"weight": [1.0] * len(axons)},
                                                 list(zip(axons.tolist(), neurons.tolist())))
    chip = sanafe.SpikingChip(arch)
    chip.load(net)
    result = chip.sim(n * steps)
    energy = float(result["energy"]["total"])
    out = {"architecture": arch_name, "samples": n, "timesteps": steps,
           "energy_per_inference_j": energy / n, "energy_components_per_inference_j":
               {k: float(v) / n for k, v in result["energy"].items()},
           "latency_per_timestep_s": float(result["sim_time"]) / (n * steps),
           "latency_per_inference_s": float(result["sim_time"]) / n,
           "spikes_per_inference": total_spikes / n, "note": "",
           "activity": count_from_spikes(layers, inputs, spikes, source="snntorch (SANA-FE replay)")}
    notes = []
    if units["spike_out_j"] is not None:
        missing = units["spike_out_j"] * total_spikes / n
        out["spike_out_not_in_total_j"] = missing
        notes.append(f"replayed spikes leave SANA-FE input somas (0 J): its {units['spike_out_j'] * 1e12:.1f} pJ "
                     f"LIF spike-out, {missing:.4g} J per inference, is not in this total")
    recurrent = [l.name for l in chip_layers if l.recurrent]
    if recurrent:
        notes.append(f"recurrent layer(s) {', '.join(recurrent)}: each sample's last-step spikes are counted "
                     f"through them too (one more step than the deployed network)")
    out["note"] = "; ".join(notes)
    return out


def simulate_profile(model: nn.Module, x_seq: torch.Tensor, profile: HardwareProfile, host_fed: bool) -> dict:
    """Every SANA-FE architecture the profile names, on the same run; with the analytical on-chip total."""
    import importlib.util

    if importlib.util.find_spec("sanafe") is None:
        return {"runs": [], "note": "sanafe is not installed (pip install sanafe==2.2.9; Python 3.10 wheel)"}
    from .energy import snn_energy

    runs: List[dict] = []
    for name in architectures(profile):
        try:
            r = replay(model, x_seq, name, host_fed)
        except SanafeError as exc:
            runs.append({"architecture": name, "samples": 0, "energy_per_inference_j": None,
                         "latency_per_timestep_s": None, "latency_per_inference_s": None,
                         "analytical_chip_j": None, "note": f"not simulated: {exc}"})
            continue
        # the analytical model on the very samples replayed, its on-chip components only
        b = snn_energy(r.pop("activity"), profile, host_first_layer=host_fed)
        r["analytical_chip_j"] = sum(v for k, v in b.components.items() if k != "first_layer")
        runs.append(r)
    return {"runs": runs, "note": ""}
