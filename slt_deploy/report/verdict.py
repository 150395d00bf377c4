"""The verdict: which network, on which chip, against which ANN, decided at one scope by intervals.

Inputs are the report's per-network and per-ANN energy breakdowns (``EnergyBreakdown.to_dict()``: the total as
:class:`slt_deploy.cost.energy.Term` intervals, each with the scope it belongs to and covers). The rule, used by
``report`` and ``deploy`` alike:

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

from ..cost.energy import Term, scoped_interval
from ..cost.profiles import SCOPES

Interval = Tuple[float, float]


def narrower(a: str, b: str) -> str:
    """The narrower of two scopes."""
    return a if SCOPES.index(a) <= SCOPES.index(b) else b


def _terms(breakdown: dict) -> List[Term]:
    return [Term(**t) for t in breakdown.get("terms", [])]


def at_scope(breakdown: dict, scope: str) -> Interval:
    """The breakdown's total at ``scope`` as (low, high) joules."""
    return scoped_interval(_terms(breakdown), scope, breakdown["scope"], breakdown.get("open_below", ()))


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


def _split(breakdown: dict, flag: str, scope: str) -> Tuple[Interval, Interval]:
    """(parts that do not grow with ``flag``, parts that do) at ``scope``; open ends go with the fixed part."""
    terms = _terms(breakdown)
    fixed = scoped_interval([t for t in terms if not getattr(t, flag)], scope, breakdown["scope"],
                            breakdown.get("open_below", ()))
    scaling = scoped_interval([t for t in terms if getattr(t, flag)], scope, breakdown["scope"])
    return fixed, scaling


def break_even(breakdown: dict, ann: Interval, scope: str, flag: str, today: float) -> dict:
    """Rule 5 for one quantity (``flag`` 'activity' or 'density', ``today`` its current value): the values below
    which the SNN surely wins and above which it surely loses (None where no value decides it)."""
    (f_low, f_high), (a_low, a_high) = _split(breakdown, flag, scope)
    out = {"today": today, "win_below": None, "lose_above": None, "fixed_j": [f_low, f_high],
           "scaling_j": [a_low, a_high]}
    if today is None or today <= 0:
        return out
    if a_high > 0 and math.isfinite(a_high) and math.isfinite(f_high) and math.isfinite(ann[0]):
        out["win_below"] = today * (ann[0] - f_high) / a_high
    if a_low > 0 and math.isfinite(ann[1]):
        out["lose_above"] = today * (ann[1] - f_low) / a_low
    return out


def _activity(network: dict) -> Optional[float]:
    per = network["activity"]["per_sample"]
    return per["output_spikes"] / per["neuron_updates"] if per["neuron_updates"] else None


def _pairs_for(profile: dict, ann_profiles: Dict[str, dict]) -> List[str]:
    """ANN targets a network on ``profile`` is compared with: ANN targets for a chip, itself for a reference."""
    if profile["kind"] == "neuromorphic":
        return [a for a, p in ann_profiles.items() if p["kind"] == "ann"]
    return [a for a in ann_profiles if a == profile["name"]]


def comparisons(network: dict, pname: str, profiles: Dict[str, dict], anns: Sequence[dict]) -> List[dict]:
    """Every (ANN, ANN target) a network on ``pname`` is compared with, each at its own common scope, with its
    break-even (rule 5)."""
    snn_b = network["energy"][pname]
    activity, density = _activity(network), 1.0 - network["sparsity"]
    ann_profiles = {a: profiles[a] for a in profiles if profiles[a]["kind"] != "neuromorphic"}
    rows = []
    for target in _pairs_for(profiles[pname], ann_profiles):
        for ann in anns:
            ab = ann["energy"].get(target)
            if ab is None:
                continue
            scope = narrower(snn_b["scope"], ab["scope"])
            snn_i, ann_i = at_scope(snn_b, scope), at_scope(ab, scope)
            rows.append({"ann": ann["label"], "ann_profile": target, "scope": scope,
                         "ann_sparsity": ann.get("sparsity"), "ann_accuracy": ann["accuracy_measured"],
                         "ann_trained": ann.get("trained"),
                         "snn_interval_j": list(snn_i), "ann_interval_j": list(ann_i),
                         "ratio_interval": list(ratio_interval(snn_i, ann_i)), "decision": decide(snn_i, ann_i),
                         "break_even": {"activity": break_even(snn_b, ann_i, scope, "activity", activity),
                                        "sparsity": _as_sparsity(break_even(snn_b, ann_i, scope, "density",
                                                                            density))}})
    return rows


def _best(rows: Iterable[dict]) -> Optional[dict]:
    rows = list(rows)
    return min(rows, key=lambda r: (r["ann_interval_j"][1], r["ann_interval_j"][0])) if rows else None


def verdict_tables(data: dict) -> Tuple[List[dict], List[dict]]:
    """(short verdict: one row per network x SNN profile, full matrix: one row per network x profile x ANN x
    target). Every energy is per inference, in joules."""
    anns = [data["ann"], *data.get("ann_others", [])]
    short, matrix = [], []
    for n in data["networks"]:
        for pname, snn_b in n["energy"].items():
            mapping = n["mapping"].get(pname)
            fits = None if mapping is None else mapping["fits"]
            why = "" if mapping is None else (mapping["failures"][0] if mapping["failures"] else
                                              "; ".join(mapping["unchecked"]) if fits is None else "")
            rows = comparisons(n, pname, data["profiles"], anns)
            for r in rows:
                matrix.append({"network": n["label"], "profile": pname, "fits": fits, **r})
            best = _best(rows)
            lat = n.get("per_inference", {}).get(pname, {})
            row = {"network": n["label"], "profile": pname, "fits": fits, "why": why,
                   "cores": None if mapping is None else mapping["cores_used"],
                   "snn_energy_j": snn_b["total"], "snn_kind": snn_b["kind"], "snn_unknown": snn_b["unknown"],
                   "snn_scope": snn_b["scope"], "snn_interval_j": list(at_scope(snn_b, snn_b["scope"])),
                   "snn_latency_s": lat.get("latency_s"), "snn_latency_from": lat.get("latency_from"),
                   "accuracy": n["accuracy_measured"], "best_ann": best, "alternatives": len(rows)}
            if best is None:
                row.update(scope=snn_b["scope"], decision="no ANN target to compare with", break_even=None)
            else:
                scope = best["scope"]
                decision = best["decision"] if fits is not False else "does not fit"
                row.update(scope=scope, snn_interval_at_scope_j=best["snn_interval_j"],
                           ratio_interval=best["ratio_interval"], decision=decision,
                           energy_decision=best["decision"], break_even=best["break_even"])
            short.append(row)
    return short, matrix


def _as_sparsity(density: dict) -> dict:
    """Density break-even turned into weight sparsity (1 - d): 'win above', 'lose below'."""
    flip = (lambda d: None if d is None else 1.0 - d)
    return {"today": flip(density["today"]), "win_above": flip(density["win_below"]),
            "lose_below": flip(density["lose_above"]), "fixed_j": density["fixed_j"],
            "scaling_j": density["scaling_j"]}


def energy_at_activity(breakdown: dict, scope: str, today: float, activity: float) -> Interval:
    """The SNN's energy interval at another spike activity (rule 5's line), for the break-even plot."""
    k = activity / today if today else 0.0
    return scoped_interval(_terms(breakdown), scope, breakdown["scope"], breakdown.get("open_below", ()),
                           scale_activity=k)
