"""The energy objective (``search.objective=energy``): search for what the chip charges.

Every round's network is measured once on ``search.holdout`` training samples held out of training (the last ones
of the training split, never trained on): one counted forward pass gives its accuracy, its activity and its energy
per inference on ``search.cost_profile``. The meter that does it belongs to the cost stage
(:mod:`slt_deploy.cost.objective`, the report's own counter and energy code); the drivers hand it to the search.

Rounds (a *point* is one ticket at one T, with its measured accuracy a and energy e):

- round 0 trains the dense network at T; its held-out accuracy a_0 is the reference. Early-Time's estimate on
  that very run's logits (:func:`~slt_deploy.search.early_time.choose_t_early` with ``search.et_lambda``) gives
  T_early (event input keeps T: its frames are binned for T when loaded), and the dense network is also
  evaluated there. When that point holds accuracy (below), the later
  rounds train at T_early, as Early-Time searches (else at T); every round is evaluated at the T it trained at
  and at the other of T / T_early, each point kept as its own ticket (same weights, its ``timesteps``, its own
  test accuracy);
- ``imp``: round k prunes and rewinds as :mod:`.imp` does; ``biprop``: round k is a multi-prize ticket of the
  untrained network at sparsity 1 - (1 - prune_fraction)^k; ``dense``: round 0 only;
- rounds go on past ``search.rounds`` up to ``search.max_rounds`` while the round's best point holds
  a >= a_0 - ``max_accuracy_drop`` / 100, and stop at the first round that does not;
- ``train.spike_penalty`` adds the activity regulariser to every round's training (:class:`.train.SpikeRates`).

The **front** is the set of non-dominated points: p is dominated when some q has a_q >= a_p and e_q <= e_p with
one of them strict (equal points: the first, the earlier round, is kept). ``front.json`` holds every point, the
front and the chosen point: the cheapest with a >= a_0 - drop, whose ticket is the search's final ticket.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import torch

from ..data import ArrayDataset, DatasetSplit, batches, encode
from ..data.encoding import first_layer_on_host
from ..errors import ConfigError
from ..ticket import Ticket
from ..utils import generator, write_json_atomic
from .early_time import accumulated_kl, choose_t_early
from .masks import prune_magnitude

MEASURE_BATCH = 500


def holdout_split(split: DatasetSplit, n: int) -> tuple:
    """(the split with its last ``n`` training samples removed, those samples)."""
    train = split.train
    if n >= len(train):
        raise ConfigError(f"search.holdout={n} must be smaller than the {len(train)} training samples")
    def part(rows: slice, tag: str) -> ArrayDataset:
        return ArrayDataset(f"{train.name} ({tag})", train.images[rows], train.labels[rows], train.num_classes)

    cut = len(train) - n
    return DatasetSplit(part(slice(0, cut), "training"), split.test), part(slice(cut, len(train)), "held out")


def dominates(q: dict, p: dict) -> bool:
    return (q["accuracy"] >= p["accuracy"] and q["energy_j"] <= p["energy_j"]
            and (q["accuracy"] > p["accuracy"] or q["energy_j"] < p["energy_j"]))


def non_dominated(points: Sequence[dict]) -> List[dict]:
    """The points no other point dominates (see the module docstring), in their order; of equal points the
    first is kept."""
    out = []
    for i, p in enumerate(points):
        if any(dominates(q, p) for q in points):
            continue
        if any(q["accuracy"] == p["accuracy"] and q["energy_j"] == p["energy_j"] for q in points[:i]):
            continue
        out.append(p)
    return out


def choose(points: Sequence[dict], reference: float, max_drop: float) -> Optional[dict]:
    """The cheapest point with accuracy >= ``reference`` - ``max_drop`` points (None when none is)."""
    within = [p for p in points if p["accuracy"] >= reference - max_drop / 100.0 - 1e-12]
    return min(within, key=lambda p: p["energy_j"]) if within else None


class EnergyRounds:
    """Measures, logs and keeps the points of one energy-objective search (results cached for resuming)."""

    def __init__(self, ctx):
        if ctx.meter is None:
            raise ConfigError("search.objective=energy needs the cost stage's meter (slt_deploy.cost.objective."
                              "round_meter); the slt-deploy commands and the API pass it")
        self.ctx = ctx
        self.s = ctx.config.search
        self.T = ctx.config.data.timesteps
        self.host_first_layer = first_layer_on_host(ctx.config.data.encoding)
        self.points: List[dict] = []
        self.reference: Optional[float] = None
        self.t_early: Optional[int] = None
        self.measure_seconds = 0.0

    # -- measuring ------------------------------------------------------------------------------
    def _batches(self, timesteps: int, device):
        data_cfg = self.ctx.config.data
        gen = generator(self.s.seed, "holdout")
        for x, y in batches(self.ctx.holdout, MEASURE_BATCH, shuffle=False):
            yield encode(x, data_cfg.encoding, timesteps, gen).to(device), y

    def measure(self, k: int, model, timesteps: int) -> dict:
        """The round's cost entry at ``timesteps``, from its cache file or from one counted run."""
        path = self.ctx.paths.round_cost(k, timesteps)
        if path.exists():
            return json.loads(path.read_text())
        device = next(model.parameters()).device
        entry = self.ctx.meter(model.eval(), self._batches(timesteps, device), self.host_first_layer)
        logits = entry.pop("logits")
        if k == 0 and timesteps == self.T:
            # Event data is binned into T frames when it is loaded: fewer steps would be the first frames of a
            # T-frame recording, which a ticket kept at that T (its data re-binned into fewer, longer frames)
            # never sees, so T stays put for event input.
            fixed = self.T < 3 or self.ctx.config.data.encoding == "events"
            kl = accumulated_kl(logits, self.s.et_direction)
            entry["t_early"] = self.T if fixed else choose_t_early(kl, self.s.et_lambda)
        write_json_atomic(path, entry)
        return entry

    # -- rounds ---------------------------------------------------------------------------------
    def add(self, k: int, label: str, model, mask, ticket: Ticket, seconds: float, method: str, times: list,
            extra: dict, history: Sequence[dict] = ()) -> bool:
        """Measure round ``k`` at the T it was trained at (``ticket``'s) and at the other of T / T_early, log it,
        keep its points; True while accuracy holds."""
        trained_at = ticket.record.timesteps
        entry = self.measure(k, model, trained_at)
        self.measure_seconds += entry["seconds"]
        if k == 0:
            self.reference = entry["accuracy"]
            self.t_early = int(entry.get("t_early", self.T))
        variants = [(trained_at, ticket, entry, self.ctx.paths.round_ticket(k))]
        for t in sorted({self.T, self.t_early} - {trained_at}, reverse=True):
            path = self.ctx.paths.round_ticket(k, t)
            other = self.ctx.save_ticket(path, model, mask, method=method, round=k, timesteps=t, wall_time_s=times,
                                         extra=dict(extra, trained_at_timesteps=trained_at))
            e = self.measure(k, model, t)
            self.measure_seconds += e["seconds"]
            variants.append((t, other, e, path))
        penalty = [h["spike_penalty"] for h in history if "spike_penalty" in h]
        for i, (t, tk, e, path) in enumerate(variants):
            point = {"round": k, "label": label if i == 0 else f"{label} at T={t}", "timesteps": t,
                     "trained_at": trained_at, "ticket": str(path.relative_to(self.ctx.paths.root)),
                     "cost": str(self.ctx.paths.round_cost(k, t).relative_to(self.ctx.paths.root)),
                     "sparsity": tk.record.sparsity, "accuracy": e["accuracy"], "test_accuracy": tk.record.accuracy,
                     "spikes": e["spikes"], "synops": e["synops"], "acs": e["acs"], "macs": e["macs"],
                     "neuron_updates": e["neuron_updates"], "energy_j": e["energy_j"],
                     "energy_kind": e["energy_kind"]}
            self.points.append(point)
            facts = {"holdout_accuracy": round(e["accuracy"], 6), "energy_j": e["energy_j"],
                     "energy_kind": e["energy_kind"], "spikes": round(e["spikes"], 3), "synops": round(e["synops"], 1),
                     "measure_s": round(e["seconds"], 3)}
            if penalty and i == 0:
                facts["spike_penalty_by_epoch"] = penalty
            self.ctx.log_round(point["label"], seconds if i == 0 else 0.0, tk, **facts)
        best = max(e["accuracy"] for _, _, e, _ in variants)
        return self.holds(best)

    def holds(self, accuracy: float) -> bool:
        return accuracy >= self.reference - self.s.max_accuracy_drop / 100.0 - 1e-12

    def train_timesteps(self) -> int:
        """T for the rounds after the dense one: T_early when the dense round evaluated there holds accuracy
        (Early-Time's search at T_early, kept for deployment), else T."""
        at_early = [p for p in self.points if p["round"] == 0 and p["timesteps"] == self.t_early]
        return self.t_early if at_early and self.holds(at_early[0]["accuracy"]) else self.T

    def last_round(self) -> int:
        return max(self.s.rounds, self.s.max_rounds)

    # -- the front ------------------------------------------------------------------------------
    def finish(self) -> Ticket:
        front = non_dominated(self.points)
        chosen = choose(front, self.reference, self.s.max_accuracy_drop) or self.points[0]
        meter = self.ctx.meter
        data = {"objective": "energy", "profile": meter.profile.name, "host": meter.host.name,
                "binary_synapses": "binary" in meter.profile.encodings,
                "accuracy_on": f"{len(self.ctx.holdout)} held-out training samples",
                "reference_accuracy": self.reference, "max_accuracy_drop": self.s.max_accuracy_drop,
                "t_early": self.t_early, "timesteps": self.T, "measure_seconds": round(self.measure_seconds, 3),
                "points": self.points, "front": front, "chosen": chosen}
        write_json_atomic(self.ctx.paths.front, data)
        from .plots import plot_front

        plot_front(data, self.ctx.paths.front_plot, title=self.ctx.paths.root.name)
        self.ctx.echo(f"  front: {len(front)} of {len(self.points)} points; chosen {chosen['label']}: "
                      f"{100 * chosen['accuracy']:.2f} % held-out, {chosen['energy_j'] * 1e9:.2f} nJ on "
                      f"{meter.profile.name}")
        return Ticket.load(self.ctx.paths.root / chosen["ticket"])


def _stops(ctx, rounds: "EnergyRounds", k: int, holds: bool, label: str) -> bool:
    """The stopping rule: past the fixed rounds, a round whose accuracy does not hold ends the search."""
    s = ctx.config.search
    if holds or k < s.rounds:
        return False
    if k < rounds.last_round():
        ctx.echo(f"  {label}: accuracy fell more than {s.max_accuracy_drop} points below the dense round; "
                 f"pruning stops")
    return True


def _dense_round(ctx, rounds: "EnergyRounds", phase_name: str, label: str, method: str, **train) -> Ticket:
    """Round 0 of every energy search: the dense network at full T, the accuracy reference of the front."""
    T = ctx.config.data.timesteps
    model = ctx.new_model()
    mask = ctx.dense_mask(model)
    phase = ctx.train_phase(phase_name, model, mask, T, 0, **train)
    ticket = ctx.save_ticket(ctx.paths.round_ticket(0), model, mask, method=method, round=0, timesteps=T,
                             wall_time_s=[phase.seconds], extra={})
    rounds.add(0, label, model, mask, ticket, phase.seconds, method, [phase.seconds], {}, phase.history)
    return ticket


def run_imp_energy(ctx) -> Ticket:
    s = ctx.config.search
    rounds = EnergyRounds(ctx)
    ticket = _dense_round(ctx, rounds, "round_00", "round 0 (dense)", "imp", save_rewind_at=s.rewind_epoch)
    times = list(ticket.record.wall_time_s)
    T_search = rounds.train_timesteps()
    for k in range(1, rounds.last_round() + 1):
        mask = prune_magnitude(ctx.layers(ticket.build_model()), ticket.mask, s.prune_fraction, s.scope)
        model = ctx.new_model()
        first_epoch = ctx.load_rewind(model)
        phase = ctx.train_phase(f"round_{k:02d}", model, mask, T_search, first_epoch)
        times.append(phase.seconds)
        ticket = ctx.save_ticket(ctx.paths.round_ticket(k), model, mask, method="imp", round=k, timesteps=T_search,
                                 wall_time_s=times, extra={})
        holds = rounds.add(k, f"round {k}", model, mask, ticket, phase.seconds, "imp", times, {}, phase.history)
        if _stops(ctx, rounds, k, holds, f"round {k}"):
            break
    return rounds.finish()


def run_dense_energy(ctx) -> Ticket:
    rounds = EnergyRounds(ctx)
    _dense_round(ctx, rounds, "dense", "dense", "dense")
    return rounds.finish()


def run_biprop_energy(ctx) -> Ticket:
    """The dense SNN as round 0 (the reference), then one multi-prize ticket per sparsity."""
    from .biprop import ScoredNet
    from ..utils import derive_seed

    s = ctx.config.search
    rounds = EnergyRounds(ctx)
    _dense_round(ctx, rounds, "round_00", "round 0 (dense)", "dense")
    T_search = rounds.train_timesteps()
    for k in range(1, rounds.last_round() + 1):
        sparsity = 1.0 - (1.0 - s.prune_fraction) ** k
        net = ctx.new_model()
        torch.manual_seed(derive_seed(s.seed, "biprop_init", k))
        scored = ScoredNet(net, ctx.layers(net), sparsity, s.scope)
        phase = ctx.train_phase(f"scores_{k:02d}", scored, ctx.dense_mask(net), T_search, 0)
        mask = scored.mask()
        alphas = scored.alphas(mask)
        baked = scored.bake()
        extra = {"binary": True, "alpha": alphas, "scored_layers": list(alphas), "spiking": ctx.model_config.spiking}
        ticket = ctx.save_ticket(ctx.paths.round_ticket(k), baked, mask, method="biprop", round=k,
                                 timesteps=T_search, wall_time_s=[phase.seconds], extra=extra)
        holds = rounds.add(k, f"biprop {100 * sparsity:.1f} %", baked, mask, ticket, phase.seconds, "biprop",
                           [phase.seconds], extra, phase.history)
        if _stops(ctx, rounds, k, holds, f"biprop {100 * sparsity:.1f} %"):
            break
    return rounds.finish()


ENERGY_METHODS: Dict[str, object] = {"imp": run_imp_energy, "biprop": run_biprop_energy, "dense": run_dense_energy}

