"""Early-Time tickets (Kim et al., ECCV 2022): search at a reduced number of timesteps T_early.

After a short dense training at the full T, the output distribution accumulated over the first t steps,
P_t = softmax(sum_{i<=t} logits_i), is compared with P_T. The paper's Eq. 1 uses KL(P_t || P_T); the
official code computes KL(P_T || P_t) -- both are offered (``search.et_direction``). The divergences are
normalized by their value at t = 2, and T_early is the smallest t in {2..T-1} whose normalized divergence
is below lambda (default 0.6). If none is, the search keeps the full T (no early time is possible).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List

import torch
import torch.nn.functional as F

from .train import predict

PROBE_SAMPLES = 1000  # training samples on which the divergences are measured


def accumulated_kl(logits: torch.Tensor, direction: str) -> torch.Tensor:
    """Mean KL divergence between P_t and P_T for t = 1..T; ``logits`` is (T, N, classes)."""
    log_p = F.log_softmax(logits.double().cumsum(0), dim=-1)  # log P_t for every t
    log_final = log_p[-1].expand_as(log_p)
    if direction == "paper":  # KL(P_t || P_T)
        kl = (log_p.exp() * (log_p - log_final)).sum(-1)
    else:  # "code": KL(P_T || P_t)
        kl = (log_final.exp() * (log_final - log_p)).sum(-1)
    return kl.mean(1)


def choose_t_early(kl: torch.Tensor, lam: float) -> int:
    """Smallest t in {2..T-1} whose KL, normalized by the KL at t = 2, is below ``lam``; else T."""
    T = kl.shape[0]
    ref = float(kl[1])
    for t in range(2, T):
        normalized = float(kl[t - 1]) / ref if ref > 0 else 0.0
        if normalized < lam:
            return t
    return T


@dataclass(frozen=True)
class EarlyTime:
    t_early: int
    kl: List[float]           # KL at t = 1..T
    normalized: List[float]   # KL / KL at t = 2
    seconds: float


def select_early_time(ctx) -> EarlyTime:
    """Train the dense network for ``et_epochs`` at full T, then pick T_early (phase ``et_probe``)."""
    cfg = ctx.config
    T = cfg.data.timesteps
    model = ctx.new_model()
    phase = ctx.train_phase("et_probe", model, ctx.dense_mask(model), T, 0, cfg.search.et_epochs)
    logits = predict(model, ctx.split.train, cfg.data, T, (cfg.search.seed, "et_probe"), limit=PROBE_SAMPLES)
    kl = accumulated_kl(logits, cfg.search.et_direction)
    ref = float(kl[1])
    normalized = [float(k) / ref if ref > 0 else 0.0 for k in kl]
    result = EarlyTime(choose_t_early(kl, cfg.search.et_lambda), [round(float(k), 6) for k in kl],
                       [round(n, 6) for n in normalized], phase.seconds)
    ctx.log_round("early-time probe", phase.seconds, t_early=result.t_early, kl=result.kl,
                  kl_normalized=result.normalized, direction=cfg.search.et_direction)
    return result


def search_timesteps(ctx):
    """(T used by the search, wall times so far, ticket facts): T_early with Early-Time, else the full T."""
    s = ctx.config.search
    if not s.early_time:
        return ctx.config.data.timesteps, [], {}
    et = select_early_time(ctx)
    return et.t_early, [et.seconds], {"t_early": et.t_early, "et_kl_normalized": et.normalized,
                                      "et_direction": s.et_direction}
