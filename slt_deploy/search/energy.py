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

The rounds are the methods' own loops (:mod:`.imp`, :mod:`.biprop`, :mod:`.baselines`); this objective is the hook
they call at every round (:class:`EnergyRounds`, a :class:`.rounds.RoundHook`): it trains the dense reference
round where a method starts pruned, sets T after round 0, measures and logs each round, applies the stopping rule
and ends with the front's chosen ticket.

The **front** is the set of non-dominated points: p is dominated when some q has a_q >= a_p and e_q <= e_p with
one of them strict (equal points: the first, the earlier round, is kept). ``front.json`` holds every point, the
front and the chosen point: the cheapest with a >= a_0 - drop, whose ticket is the search's final ticket.
"""

from __future__ import annotations

from typing import List, Optional, Sequence

from ..data import ArrayDataset, DatasetSplit, batches, encode
from ..data.encoding import first_layer_on_host
from ..errors import ConfigError
from ..run_files import CostFile, Measured, load_cost, write_cost, write_front
from ..ticket import Ticket
from ..utils import generator
from .early_time import accumulated_kl, choose_t_early
from .rounds import Round, RoundHook

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


#: Methods whose rounds start pruned: the hook trains their dense reference round 0 itself (training phase, log
#: label). IMP's own round 0 is the dense network.
REFERENCE_ROUNDS = {"biprop": ("round_00", "round 0 (dense)"), "dense": ("dense", "dense")}


class EnergyRounds(RoundHook):
    """The energy objective as the hook on a method's rounds (:class:`.rounds.RoundHook`): measures, logs and
    keeps the points of every round (results cached for resuming), stops pruning when accuracy no longer holds,
    and ends with the front's chosen ticket. Needs the cost stage's meter on the context (``ctx.meter``)."""

    def __init__(self, ctx):
        super().__init__(ctx)
        self.s = ctx.config.search
        self.T = ctx.config.data.timesteps
        self.host_first_layer = first_layer_on_host(ctx.config.data.encoding)
        self.points: List[dict] = []
        self.reference: Optional[float] = None
        self.t_early: Optional[int] = None
        self.measure_seconds = 0.0
        self.max_round = max(self.s.rounds, self.s.max_rounds)

    # -- measuring ------------------------------------------------------------------------------
    def _batches(self, timesteps: int, device):
        data_cfg = self.ctx.config.data
        gen = generator(self.s.seed, "holdout")
        for x, y in batches(self.ctx.holdout, MEASURE_BATCH, shuffle=False):
            yield encode(x, data_cfg.encoding, timesteps, gen).to(device), y

    def measure(self, k: int, model, timesteps: int) -> CostFile:
        """The round's cost entry at ``timesteps``, from its cache file or from one counted run."""
        path = self.ctx.paths.round_cost(k, timesteps)
        if path.exists():
            return load_cost(path, self.ctx.paths.root)
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
        return write_cost(path, entry)

    # -- the hook -------------------------------------------------------------------------------
    def start(self, method: str) -> int:
        """Round 0, the accuracy reference: a method that starts pruned gets the dense network trained here."""
        if method not in REFERENCE_ROUNDS:
            return 0
        phase_name, label = REFERENCE_ROUNDS[method]
        ctx, T = self.ctx, self.T
        model = ctx.new_model()
        mask = ctx.dense_mask(model)
        phase = ctx.train_phase(phase_name, model, mask, T, 0)
        ticket = ctx.save_ticket(ctx.paths.round_ticket(0), model, mask, method="dense", round=0, timesteps=T,
                                 wall_time_s=[phase.seconds], extra={})
        self.add(Round(0, label, model, mask, ticket, phase.seconds, "dense", [phase.seconds], {}, phase.history))
        return 1

    def timesteps(self, T: int) -> int:
        return self.train_timesteps()

    def last_round(self, planned: int) -> int:
        """Past the method's rounds up to ``search.max_rounds`` (the stopping rule in :meth:`done` ends it)."""
        return self.max_round

    def done(self, r: Round) -> bool:
        """Measure and log the round; past the fixed rounds, a round whose accuracy does not hold ends the search."""
        holds = self.add(r)
        if holds or r.k < self.s.rounds:
            return True
        if r.k < self.max_round:
            self.ctx.echo(f"  {r.label}: accuracy fell more than {self.s.max_accuracy_drop} points below the dense "
                          f"round; pruning stops")
        return False

    # -- rounds ---------------------------------------------------------------------------------
    def add(self, r: Round) -> bool:
        """Measure round ``r.k`` at the T it was trained at (its ticket's) and at the other of T / T_early, log it,
        keep its points; True while accuracy holds."""
        k, label, model, mask, ticket = r.k, r.label, r.model, r.mask, r.ticket
        trained_at = ticket.record.timesteps
        entry = self.measure(k, model, trained_at)
        self.measure_seconds += entry.seconds
        if k == 0:
            self.reference = entry.accuracy
            self.t_early = self.T if entry.t_early is None else entry.t_early
        variants = [(trained_at, ticket, entry, self.ctx.paths.round_ticket(k))]
        for t in sorted({self.T, self.t_early} - {trained_at}, reverse=True):
            path = self.ctx.paths.round_ticket(k, t)
            other = self.ctx.save_ticket(path, model, mask, method=r.method, round=k, timesteps=t,
                                         wall_time_s=r.times, extra=dict(r.extra, trained_at_timesteps=trained_at))
            e = self.measure(k, model, t)
            self.measure_seconds += e.seconds
            variants.append((t, other, e, path))
        penalty = [h["spike_penalty"] for h in r.history if "spike_penalty" in h]
        for i, (t, tk, e, path) in enumerate(variants):
            point = {"round": k, "label": label if i == 0 else f"{label} at T={t}",
                     "trained_at": trained_at, "ticket": str(path.relative_to(self.ctx.paths.root)),
                     "cost": str(self.ctx.paths.round_cost(k, t).relative_to(self.ctx.paths.root)),
                     "sparsity": tk.record.sparsity, "accuracy": e.accuracy, "test_accuracy": tk.record.accuracy,
                     **e.model_dump(include=set(Measured.model_fields))}  # the cost file's counts, at T = t
            self.points.append(point)
            facts = {"holdout_accuracy": round(e.accuracy, 6), "energy_j": e.energy_j,
                     "energy_kind": e.energy_kind, "spikes": round(e.spikes, 3), "synops": round(e.synops, 1),
                     "measure_s": round(e.seconds, 3)}
            if penalty and i == 0:
                facts["spike_penalty_by_epoch"] = penalty
            self.ctx.log_round(point["label"], r.seconds if i == 0 else 0.0, tk, **facts)
        best = max(e.accuracy for _, _, e, _ in variants)
        return self.holds(best)

    def holds(self, accuracy: float) -> bool:
        return accuracy >= self.reference - self.s.max_accuracy_drop / 100.0 - 1e-12

    def train_timesteps(self) -> int:
        """T for the rounds after the dense one: T_early when the dense round evaluated there holds accuracy
        (Early-Time's search at T_early, kept for deployment), else T."""
        at_early = [p for p in self.points if p["round"] == 0 and p["timesteps"] == self.t_early]
        return self.t_early if at_early and self.holds(at_early[0]["accuracy"]) else self.T

    # -- the front ------------------------------------------------------------------------------
    def finish(self, last: Optional[Ticket] = None) -> Ticket:
        """Write front.json and its plot; the chosen point's ticket is the search's final ticket."""
        front = non_dominated(self.points)
        chosen = choose(front, self.reference, self.s.max_accuracy_drop) or self.points[0]
        meter = self.ctx.meter
        data = {"objective": "energy", "profile": meter.profile.name, "host": meter.host.name,
                "binary_synapses": "binary" in meter.profile.encodings,
                "accuracy_on": f"{len(self.ctx.holdout)} held-out training samples",
                "reference_accuracy": self.reference, "max_accuracy_drop": self.s.max_accuracy_drop,
                "t_early": self.t_early, "timesteps": self.T, "measure_seconds": round(self.measure_seconds, 3),
                "points": self.points, "front": front, "chosen": chosen}
        write_front(self.ctx.paths.front, data)
        from .plots import plot_front

        plot_front(data, self.ctx.paths.front_plot, title=self.ctx.paths.root.name)
        self.ctx.echo(f"  front: {len(front)} of {len(self.points)} points; chosen {chosen['label']}: "
                      f"{100 * chosen['accuracy']:.2f} % held-out, {chosen['energy_j'] * 1e9:.2f} nJ on "
                      f"{meter.profile.name}")
        return Ticket.load(self.ctx.paths.root / chosen["ticket"])
