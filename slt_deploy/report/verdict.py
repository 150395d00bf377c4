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
2. **Decision.** A side wins only when its whole interval lies below the other's:
   SNN if snn.high < ann.low, ANN if ann.high < snn.low, otherwise ``undecided`` with both intervals shown. An
   open end (a bound) can lose but never wins by itself. A network that does not fit the chip is
   ``does not fit``, whatever the energies.
3. **Ratio.** E_SNN / E_ANN lies in [snn.low / ann.high, snn.high / ann.low].
4. **Best ANN for a chip.** Among every ANN of the report (the dense ANN, the ANN pruned to the ticket's
   sparsity, ANNs given with ``--also-ann``) on every ANN target, the one with the lowest high end at its
   pair's scope (ties: the lower low end); the others stay in the full matrix.
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


def comparisons(network: NetworkEntry, pname: str, profiles: Dict[str, ProfileEntry],
                anns: Sequence[AnnEntry]) -> List[Comparison]:
    """Every (ANN, ANN target) a network on ``pname`` is compared with, each at its own common scope, with its
    break-even (rule 5)."""
    snn_b = network.energy[pname]
    me = profiles[pname]
    targets = [a for a, p in profiles.items() if compared(me.kind, me.name, p.kind, p.name)]
    rows = []
    for target in targets:
        for ann in anns:
            ab = ann.energy.get(target)
            if ab is None:
                continue
            scope = narrower(snn_b.scope, ab.scope)
            snn_i, ann_i = at_scope(snn_b, scope), at_scope(ab, scope)
            rows.append(Comparison(ann=ann.label, ann_profile=target, scope=scope, ann_sparsity=ann.sparsity,
                                   ann_accuracy=ann.accuracy_measured, ann_trained=ann.trained,
                                   snn_interval_j=list(snn_i), ann_interval_j=list(ann_i),
                                   ratio_interval=list(ratio_interval(snn_i, ann_i)), decision=decide(snn_i, ann_i),
                                   break_even=_break_evens(snn_b, ann_i, scope, network)))
    return rows


def _best(rows: Iterable[Comparison]) -> Optional[Comparison]:
    """Rule 4: the lowest high end, ties broken by the lower low end."""
    rows = list(rows)
    return min(rows, key=lambda r: (r.ann_interval_j[1], r.ann_interval_j[0])) if rows else None


def _verdict_row(n: NetworkEntry, pname: str, rows: List[Comparison]) -> VerdictRow:
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
        return VerdictRow(**row, scope=snn_b.scope, decision="no ANN target to compare with", break_even=None)
    return VerdictRow(**row, scope=best.scope, snn_interval_at_scope_j=best.snn_interval_j,
                      ratio_interval=best.ratio_interval,
                      decision=best.decision if fits is not False else "does not fit",
                      energy_decision=best.decision, break_even=best.break_even)


def verdict_tables(networks: Sequence[NetworkEntry], profiles: Dict[str, ProfileEntry],
                   anns: Sequence[AnnEntry]) -> Tuple[List[VerdictRow], List[MatrixRow]]:
    """(short verdict: one row per network x SNN profile, full matrix: one row per network x profile x ANN x
    target). Every energy is per inference, in joules."""
    short, matrix = [], []
    for n in networks:
        for pname in n.energy:
            rows = comparisons(n, pname, profiles, anns)
            fits = None if n.mapping.get(pname) is None else n.mapping[pname].fits
            matrix += [MatrixRow(network=n.label, profile=pname, fits=fits, **dict(r)) for r in rows]
            short.append(_verdict_row(n, pname, rows))
    return short, matrix
