"""What one search round costs: its evaluation run counted and charged on a profile, for the energy objective.

The search stage cannot import the cost stage (imports point down the pipeline), so the search takes a *meter*
(``search(..., meter=round_meter(config))``, made by the drivers): a callable that runs the round's network once
on the held-out batches it is given and returns that run's accuracy, its activity (:func:`count_snntorch`, the
counter every report uses) and its energy per inference on the profile (:func:`snn_energy`, charged as the
report charges it: a reference profile costs its own host layer, a chip's host-computed first layer is charged on
the report's host profile). One forward pass gives all three: the logits are taken by a hook on the very run the
counter records, nothing is simulated again.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Iterable, List, Optional, Tuple

import torch

from .activity import LayerActivity, NetworkActivity, count_snntorch, merge_activity
from .energy import snn_energy
from .profiles import HOST_PROFILE, HardwareProfile, ProfileError, host_of, load_profile


class EnergyMeter:
    """Accuracy, activity and energy of one network from one counted run (see the module docstring)."""

    def __init__(self, profile: str, host: str = HOST_PROFILE):
        self.profile: HardwareProfile = load_profile(profile)
        if self.profile.kind == "ann":
            raise ProfileError(f"search.cost_profile={profile}: profile {self.profile.name} is an ANN target; the "
                               f"energy objective costs the spiking network (a neuromorphic or reference profile)")
        spike_cost = self.profile.figure("synaptic_op")
        if spike_cost is None or spike_cost.value is None:
            raise ProfileError(f"search.cost_profile={profile}: profile {self.profile.name} publishes no energy per "
                               f"synaptic op, so a round's energy would be unknown; cost on a profile that does")
        self.host = host_of(self.profile, load_profile(host))

    def __call__(self, model: torch.nn.Module, batches: Iterable[Tuple[torch.Tensor, torch.Tensor]],
                 host_first_layer: bool) -> dict:
        """``batches``: encoded (T, B, ...) inputs and labels. Returns a JSON-ready dict (see :func:`cost_entry`)."""
        start = time.perf_counter()
        logits: List[torch.Tensor] = []
        hook = model.register_forward_hook(lambda module, args, output: logits.append(output.detach()))
        parts, correct, n, steps = [], 0, 0, []
        try:
            for x_seq, y in batches:
                parts.append(count_snntorch(model, x_seq, source="snntorch (held-out training samples)"))
                out = logits.pop()
                steps.append(out.cpu())
                correct += int((out.sum(0).argmax(1).cpu() == y).sum())
                n += len(y)
        finally:
            hook.remove()
        activity = parts[0] if len(parts) == 1 else merge_activity(parts)
        entry = cost_entry(activity, self.profile, self.host, host_first_layer)
        entry.update(accuracy=correct / n, samples=n, seconds=time.perf_counter() - start)
        entry["logits"] = torch.cat(steps, dim=1)  # (T, N, classes), for Early-Time's estimate; not written
        return entry


def cost_entry(activity: NetworkActivity, profile: HardwareProfile, host: HardwareProfile,
               host_first_layer: bool) -> dict:
    """The round's counts (per sample) and its energy on ``profile``, as written in the run log and front.json;
    ``layers`` keeps every per-layer count, so another profile can cost the same run (:func:`activity_of`)."""
    energy = snn_energy(activity, profile, host=host, host_first_layer=host_first_layer)
    return {"timesteps": activity.timesteps, "spikes": activity.output_spikes,
            "synops": activity.effective_synops, "acs": activity.effective_acs, "macs": activity.effective_macs,
            "neuron_updates": activity.neuron_updates, "energy_j": energy.total, "energy_kind": energy.kind,
            "energy_components": dict(energy.components), "profile": profile.name, "host": host.name,
            "host_first_layer": host_first_layer,
            "layers": [dataclasses.asdict(l) for l in activity.layers], "source": activity.source,
            "counted_samples": activity.samples}


def activity_of(entry: dict) -> NetworkActivity:
    """The measured activity back from a :func:`cost_entry` (for costing the same run on another profile)."""
    fields = {f.name for f in dataclasses.fields(LayerActivity)}
    layers = tuple(LayerActivity(**{k: v for k, v in layer.items() if k in fields}) for layer in entry["layers"])
    return NetworkActivity(layers, int(entry["timesteps"]), int(entry["counted_samples"]), entry.get("source", ""))


def recost(entry: dict, profile: str, host: str = HOST_PROFILE) -> dict:
    """The same measured run charged on another profile (the counts are not measured again)."""
    p = load_profile(profile)
    h = host_of(p, load_profile(host))
    return cost_entry(activity_of(entry), p, h, bool(entry["host_first_layer"]))


def round_meter(config) -> Optional[EnergyMeter]:
    """The meter a search with ``config`` needs: None for the accuracy objective. A bad profile name fails here
    whatever the objective (a setting that names nothing is refused, not ignored), before anything is written."""
    try:
        profile = load_profile(config.search.cost_profile)
    except ProfileError as exc:
        raise ProfileError(f"search.cost_profile: {exc}") from None
    return EnergyMeter(config.search.cost_profile) if profile and config.search.objective == "energy" else None


__all__ = ["EnergyMeter", "HOST_PROFILE", "activity_of", "cost_entry", "recost", "round_meter"]
