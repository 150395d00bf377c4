"""The verdict: which network, on which chip, against which ANN, decided at one scope by intervals.

Takes the report's typed entries (:mod:`slt_deploy.report.schema`): each network's and each ANN's energy per
profile as the cost stage gave it (:class:`~slt_deploy.report.schema.EnergyRecord`: the total at every scope, and
its parts as :class:`~slt_deploy.cost.energy.Term` intervals), each network's mapping and activity, the profiles'
kinds. Gives the verdict rows and the full matrix (:class:`~slt_deploy.report.schema.VerdictRow`,
:class:`~slt_deploy.report.schema.MatrixRow`), written once into report.json; ``deploy`` reads its chip's row from
there. The rule:

1. **Scope.** An energy covers a scope (``SCOPES``, narrowest first): ``arithmetic`` < ``chip-dynamic`` <
   ``chip`` < ``board``. A pair (SNN on profile P_s, ANN on target P_a) is compared at S = the narrower of the
   two profiles' scopes, both sides at S (:func:`slt_deploy.cost.energy.scoped_interval`): a part outside S is
   left out, a figure covering more than S (TrueNorth's all-in synaptic event, a board measurement) counts from
   0 to its value, and a needed figure nobody published, or S wider than what a profile models, leaves the high
   end open (inf). A 45 nm reference profile (arithmetic) is compared with itself only.
2. **Decision.** A side wins on energy only when its whole interval lies below the other's:
   SNN if snn.high < ann.low, ANN if ann.high < snn.low, otherwise ``undecided`` with both intervals shown. An
   open end (a bound) can lose but never wins by itself. A side is deployed only when it is also no less
   accurate (rule 4's match): where the side cheaper on energy is less accurate by more than the tolerance, the
   row's decision is ``trade-off`` (its ``energy_decision`` keeps the energy winner), since which to deploy then
   depends on what the accuracy is worth to the user. A network that does not fit the chip is ``does not fit``,
   whatever the energies.
3. **Ratio.** E_SNN / E_ANN lies in [snn.low / ann.high, snn.high / ann.low].
4. **Best ANN for a chip, at matched accuracy.** Among every ANN of the report (the dense ANN, the ANN pruned
   to each ticket's sparsity, ANNs given with ``--also-ann``) on every ANN target, the cheapest (lowest high end
   at the row's scope; ties: the lower low end) whose accuracy is no more than a tolerance below the SNN's::

       a_ANN >= a_SNN - tol,   tol = --accuracy-tolerance, default the standard error of the difference of the
                                     two test accuracies: sqrt(a_SNN (1 - a_SNN) / n + a_ANN (1 - a_ANN) / n)

   The row says how the two accuracies compare (``accuracy_match``): ``matched`` (within tol either way), ``ANN
   more accurate`` (every eligible ANN cheap enough to be chosen is better by more than tol: the SNN loses on
   accuracy too; the gap is given), or ``no ANN as accurate`` (every ANN is more than tol below the SNN: the
   most accurate one is compared, with its gap). The others stay in the full matrix.
6. **Scopes.** A chip's row is decided at ``chip-dynamic`` (what the chip spends per event) and again at ``chip``
   (plus static power over the inference: its latency back to back, 1 / ``--rate`` at a rate), each by the same
   rule; a reference profile at its own scope only.
5. **Break-even.** With the ANN fixed, the SNN's energy is linear in its spike activity a (spikes per neuron per
   step) and in its weight density d (the parts flagged ``activity`` / ``density`` in its terms)::

       E(a) = F + A x a / a_today         F: parts that do not grow with spikes (neuron updates, static power,
                                             the host's first layer); A: synaptic ops fed by spikes, their
                                             weight reads, spike outputs

   The SNN surely wins below a_win = a_today (ann.low - F.high) / A.high and surely loses above
   a_lose = a_today (ann.high - F.low) / A.low (intervals of F and A at the pair's scope). Likewise for density
   (every synaptic op and weight read, the host's first layer included), reported as weight sparsity 1 - d.
   A negative a_win means no activity makes the SNN win: its fixed part alone costs more than the ANN.
"""

from __future__ import annotations

import math
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from ..cost.energy import scoped_interval
from ..cost.profiles import SCOPES
from .schema import (ActivityBreakEven, AnnEntry, BreakEven, Comparison, EnergyRecord, MatrixRow, NetworkEntry,
                     ProfileEntry, SparsityBreakEven, VerdictRow)

Interval = Tuple[float, float]


def narrower(a: str, b: str) -> str:
    """The narrower of two scopes."""
    return a if SCOPES.index(a) <= SCOPES.index(b) else b


def compared(snn_kind: str, snn_name: str, ann_kind: str, ann_name: str) -> bool:
    """The pairing rule: which ANN target a network on a profile is compared with. A chip (kind neuromorphic)
    against every ANN target (kind ann); a reference profile against itself only. A chip against a reference
    convention would mix what each side counts (the convention leaves out memory, neurons and static power), so
    such pairs are not formed."""
    if snn_kind == "neuromorphic":
        return ann_kind == "ann"
    return snn_kind != "ann" and ann_kind != "neuromorphic" and snn_name == ann_name


def at_scope(breakdown: EnergyRecord, scope: str) -> Interval:
    """The breakdown's total at ``scope`` as (low, high) joules, as the cost stage computed it."""
    low, high = breakdown.at_scope(scope)
    return low, high


def decide(snn: Interval, ann: Interval) -> str:
    """Rule 2: 'SNN', 'ANN' or 'undecided'."""
    if snn[1] < ann[0]:
        return "SNN"
    if ann[1] < snn[0]:
        return "ANN"
    return "undecided"


def with_accuracy(energy_decision: str, accuracy_match: str) -> str:
    """Rule 2 with rule 4: the energy winner, unless it is the less accurate side by more than the tolerance
    (``trade-off``)."""
    if (energy_decision, accuracy_match) in (("SNN", "ANN more accurate"), ("ANN", "ANN less accurate")):
        return "trade-off"
    return energy_decision


def ratio_interval(snn: Interval, ann: Interval) -> Interval:
    """Rule 3: the interval of E_SNN / E_ANN (inf where the ANN's low end is 0 or the SNN's high end open)."""
    low = snn[0] / ann[1] if ann[1] > 0 else math.inf   # an open ANN end (inf) gives 0
    high = snn[1] / ann[0] if ann[0] > 0 else math.inf
    return low, high


def _split(breakdown: EnergyRecord, flag: str, scope: str) -> Tuple[Interval, Interval]:
    """(parts that do not grow with ``flag``, parts that do) at ``scope``; open ends go with the fixed part."""
    terms = breakdown.terms
    fixed = scoped_interval([t for t in terms if not getattr(t, flag)], scope, breakdown.scope,
                            breakdown.open_below)
    scaling = scoped_interval([t for t in terms if getattr(t, flag)], scope, breakdown.scope)
    return fixed, scaling


def break_even(breakdown: EnergyRecord, ann: Interval, scope: str, flag: str,
               today: Optional[float]) -> Tuple[Optional[float], Optional[float], Interval, Interval]:
    """Rule 5 for one quantity (``flag`` 'activity' or 'density', ``today`` its current value): (the value below
    which the SNN surely wins, the value above which it surely loses, the fixed part, the scaling part); a value
    is None where none decides it."""
    (f_low, f_high), (a_low, a_high) = _split(breakdown, flag, scope)
    win = lose = None
    if today is not None and today > 0:
        if a_high > 0 and math.isfinite(a_high) and math.isfinite(f_high) and math.isfinite(ann[0]):
            win = today * (ann[0] - f_high) / a_high
        if a_low > 0 and math.isfinite(ann[1]):
            lose = today * (ann[1] - f_low) / a_low
    return win, lose, (f_low, f_high), (a_low, a_high)


def _break_evens(snn: EnergyRecord, ann: Interval, scope: str, network: NetworkEntry) -> BreakEven:
    """Spike activity as it is; density d turned into weight sparsity 1 - d ('win above', 'lose below')."""
    today = network.activity.spike_activity
    win, lose, fixed, scaling = break_even(snn, ann, scope, "activity", today)
    activity = ActivityBreakEven(today=today, win_below=win, lose_above=lose, fixed_j=list(fixed),
                                 scaling_j=list(scaling))
    density = 1.0 - network.sparsity
    win, lose, fixed, scaling = break_even(snn, ann, scope, "density", density)
    flip = (lambda d: None if d is None else 1.0 - d)
    sparsity = SparsityBreakEven(today=flip(density), win_above=flip(win), lose_below=flip(lose),
                                 fixed_j=list(fixed), scaling_j=list(scaling))
    return BreakEven(activity=activity, sparsity=sparsity)


def row_scopes(snn_scope: str) -> List[str]:
    """Rule 6: the scopes a network on a profile of scope ``snn_scope`` is decided at."""
    if SCOPES.index(snn_scope) < SCOPES.index("chip-dynamic"):
        return [snn_scope]
    return ["chip-dynamic", "chip"]


def accuracy_tolerance(snn_accuracy: float, ann_accuracy: float, samples: int,
                       given: Optional[float] = None) -> float:
    """Rule 4's tolerance (a fraction): ``given``, or the standard error of the difference of two accuracies
    measured on ``samples`` test samples each."""
    if given is not None:
        return given
    n = max(samples, 1)
    return math.sqrt(snn_accuracy * (1 - snn_accuracy) / n + ann_accuracy * (1 - ann_accuracy) / n)


def accuracy_match(snn_accuracy: float, ann_accuracy: float, tolerance: float) -> str:
    """How an ANN's accuracy stands against the SNN's (rule 4)."""
    gap = ann_accuracy - snn_accuracy
    if gap > tolerance:
        return "ANN more accurate"
    if gap < -tolerance:
        return "ANN less accurate"
    return "matched"


def comparisons(network: NetworkEntry, pname: str, profiles: Dict[str, ProfileEntry],
                anns: Sequence[AnnEntry], scope: Optional[str] = None,
                tolerance: Optional[float] = None) -> List[Comparison]:
    """Every (ANN, ANN target) a network on ``pname`` is compared with, at ``scope`` (default: each pair's common
    scope), with its break-even (rule 5) and how the accuracies compare (rule 4; ``tolerance`` a fraction, None:
    the standard error of the difference)."""
    snn_b = network.energy[pname]
    me = profiles[pname]
    targets = [a for a, p in profiles.items() if compared(me.kind, me.name, p.kind, p.name)]
    rows = []
    for target in targets:
        for ann in anns:
            ab = ann.energy.get(target)
            if ab is None:
                continue
            at = scope or narrower(snn_b.scope, ab.scope)
            snn_i, ann_i = at_scope(snn_b, at), at_scope(ab, at)
            tol = accuracy_tolerance(network.accuracy_measured, ann.accuracy_measured, network.samples, tolerance)
            rows.append(Comparison(ann=ann.label, ann_profile=target, scope=at, ann_sparsity=ann.sparsity,
                                   ann_accuracy=ann.accuracy_measured, ann_trained=ann.trained,
                                   snn_interval_j=list(snn_i), ann_interval_j=list(ann_i),
                                   ratio_interval=list(ratio_interval(snn_i, ann_i)), decision=decide(snn_i, ann_i),
                                   break_even=_break_evens(snn_b, ann_i, at, network), tolerance=tol,
                                   accuracy_gap=ann.accuracy_measured - network.accuracy_measured,
                                   accuracy_match=accuracy_match(network.accuracy_measured, ann.accuracy_measured,
                                                                 tol)))
    return rows


def _cheapest(rows: Iterable[Comparison]) -> Optional[Comparison]:
    """The lowest high end, ties broken by the lower low end."""
    rows = list(rows)
    return min(rows, key=lambda r: (r.ann_interval_j[1], r.ann_interval_j[0])) if rows else None


def _best(rows: Iterable[Comparison]) -> Optional[Comparison]:
    """Rule 4: the cheapest ANN no more than its tolerance below the SNN's accuracy; where every ANN is further
    below, the most accurate one (the cheapest of those), so the row still names what the SNN is set against."""
    rows = list(rows)
    eligible = [r for r in rows if r.accuracy_match != "ANN less accurate"]
    if eligible:
        return _cheapest(eligible)
    top = max((r.ann_accuracy for r in rows), default=None)
    return _cheapest(r for r in rows if r.ann_accuracy == top)


def _verdict_row(n: NetworkEntry, pname: str, rows: List[Comparison], scope: str) -> VerdictRow:
    snn_b = n.energy[pname]
    mapping = n.mapping.get(pname)
    fits = None if mapping is None else mapping.fits
    lat = n.per_inference.get(pname)
    best = _best(rows)
    row = dict(network=n.label, profile=pname, fits=fits, why="" if mapping is None else mapping.why,
               cores=None if mapping is None else mapping.cores_used, snn_energy_j=snn_b.total,
               snn_kind=snn_b.kind, snn_unknown=snn_b.unknown, snn_scope=snn_b.scope,
               snn_interval_j=list(at_scope(snn_b, snn_b.scope)),
               snn_latency_s=None if lat is None else lat.latency_s,
               snn_latency_from=None if lat is None else lat.latency_from,
               accuracy=n.accuracy_measured, best_ann=best, alternatives=len(rows))
    if best is None:
        return VerdictRow(**row, scope=scope, decision="no ANN target to compare with", break_even=None)
    return VerdictRow(**row, scope=best.scope, snn_interval_at_scope_j=best.snn_interval_j,
                      ratio_interval=best.ratio_interval,
                      decision=("does not fit" if fits is False
                                else with_accuracy(best.decision, best.accuracy_match)),
                      energy_decision=best.decision, break_even=best.break_even)


def verdict_tables(networks: Sequence[NetworkEntry], profiles: Dict[str, ProfileEntry],
                   anns: Sequence[AnnEntry], tolerance: Optional[float] = None
                   ) -> Tuple[List[VerdictRow], List[MatrixRow]]:
    """(short verdict: one row per network x SNN profile x scope (rule 6), full matrix: one row per network x
    profile x scope x ANN x target). Every energy is per inference, in joules; ``tolerance``: rule 4's, a fraction
    (None: the standard error of the difference)."""
    short, matrix = [], []
    for n in networks:
        for pname in n.energy:
            fits = None if n.mapping.get(pname) is None else n.mapping[pname].fits
            for scope in row_scopes(n.energy[pname].scope):
                rows = comparisons(n, pname, profiles, anns, scope, tolerance)
                matrix += [MatrixRow(network=n.label, profile=pname, fits=fits, **dict(r)) for r in rows]
                short.append(_verdict_row(n, pname, rows, scope))
    return short, matrix
