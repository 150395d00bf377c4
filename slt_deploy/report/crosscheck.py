"""Cross-checks: other tools' counts of the same networks on the same samples, next to the project's own.

Takes the report's networks and their measured runs (:mod:`.measure`); gives, per network, NeuroBench 2.3.0's
metrics with a per-layer comparison against the project's counts (:class:`~.schema.NeurobenchEntry`) and SANA-FE
2.2.9 runs for every profile that names SANA-FE architectures (:class:`~.schema.SanafeEntry`). Both replay
snnTorch models, so a NIR input gets a note instead.
"""

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import torch

from ..timing import stage
from ..cost.profiles import HardwareProfile
from .measure import Measured, encoded
from .networks import Network
from .schema import NeurobenchEntry, SanafeEntry


def _samples(net: Network, samples: int):
    xs, ys = [], []
    for x_seq, y in encoded(net, samples, progress=False):
        xs.append(x_seq)
        ys.append(y)
    return torch.cat(xs, 1), torch.cat(ys)


@stage("NeuroBench")
def neurobench_entry(net: Network, m: Measured, samples: int) -> NeurobenchEntry:
    """NeuroBench's own metrics on the ticket's snnTorch network and the same samples (NIR inputs: a note)."""
    from ..cost.neurobench_metrics import compare_layers, neurobench_metrics, neurobench_summary

    if net.kind != "ticket":
        return NeurobenchEntry(note="NeuroBench runs snnTorch models; this input is a NIR graph")
    x_seq, y = _samples(net, samples)
    nb = neurobench_metrics(net.ticket.build_model(), x_seq, y)
    return NeurobenchEntry.model_validate(
        {"version": nb["version"], "metrics": nb["metrics"], "summary": neurobench_summary(nb),
         "layers": compare_layers(m.activity, nb, net.first_layer_on_host)}, strict=False)


@stage("SANA-FE")
def sanafe_entries(net: Network, profiles: Sequence[HardwareProfile], samples: int) -> Dict[str, SanafeEntry]:
    """SANA-FE on the deployed network of a ticket, for every profile that names SANA-FE architectures."""
    from ..cost import sanafe_sim

    out = {}
    for p in profiles:
        if not sanafe_sim.architectures(p):
            continue
        if net.kind != "ticket":
            out[p.name] = SanafeEntry(runs=[], note="SANA-FE replays snnTorch runs; this input is NIR")
            continue
        x_seq, _ = _samples(net, min(samples, sanafe_sim.MAX_SAMPLES))
        run = sanafe_sim.simulate_profile(net.ticket.build_model(), x_seq, p, host_fed=net.first_layer_on_host)
        out[p.name] = SanafeEntry.model_validate(run, strict=False)
    return out


@dataclass(frozen=True)
class CrossChecks:
    """One network's cross-checks; None: not asked for (the entry then has no such field)."""

    neurobench: Optional[NeurobenchEntry] = None
    sanafe: Optional[Dict[str, SanafeEntry]] = None

    def fields(self) -> dict:
        return {k: v for k, v in (("neurobench", self.neurobench), ("sanafe", self.sanafe)) if v is not None}


def crosschecks(networks: Sequence[Network], measured: Sequence[Measured], profiles: Sequence[HardwareProfile],
                samples: int, neurobench: bool, sanafe: bool) -> List[CrossChecks]:
    """Per network, the checks asked for."""
    return [CrossChecks(neurobench_entry(net, m, samples) if neurobench else None,
                        sanafe_entries(net, profiles, samples) if sanafe else None)
            for net, m in zip(networks, measured)]
