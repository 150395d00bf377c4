"""Masks and pruning: pure functions from (weights, old mask) to a new mask.

A :class:`Mask` maps a layer name (as in ``model.body``) to a boolean tensor shaped like that layer's weight.
Only conv and linear weights are ever masked; biases and BatchNorm parameters are never pruned.
"""

from __future__ import annotations

from typing import Dict, Mapping, Tuple

import torch
from torch import nn

from ..errors import ConfigError
from ..ticket import Mask  # the container is part of the ticket artifact


def apply_mask(layers: Mapping[str, nn.Module], mask: Mapping[str, torch.Tensor]) -> None:
    """Zero the pruned weights in place (and their gradients, so momentum never revives them). ``mask``: a
    :class:`Mask`, or its :func:`mask_multipliers` (what training applies after every step)."""
    with torch.no_grad():
        for name, keep in mask.items():
            w = layers[name].weight
            w.mul_(keep.to(w.device, w.dtype))
            if w.grad is not None:
                w.grad.mul_(keep.to(w.device, w.dtype))


def mask_multipliers(layers: Mapping[str, nn.Module], mask: Mask) -> Dict[str, torch.Tensor]:
    """The mask as training applies it after every step: each layer's keep mask as 0/1 in its weight's dtype and
    device, converted once (not twice per step); a layer with nothing pruned is left out, as multiplying by one
    changes nothing and costs two passes over the weight and its gradient per step (dense training: every layer)."""
    out = {}
    for name, keep in mask.items():
        if not bool(keep.all()):
            w = layers[name].weight
            out[name] = keep.to(w.device, w.dtype)
    return out


def _scores(layers: Mapping[str, nn.Module], mask: Mask) -> Dict[str, torch.Tensor]:
    return {name: layers[name].weight.detach().abs().cpu() for name in mask}


def _keep_largest(values: torch.Tensor, alive: torch.Tensor, n_keep: int) -> torch.Tensor:
    """Boolean mask keeping the n_keep largest ``values`` among ``alive`` entries.

    Ties are broken by position (a stable sort), so the result is deterministic and the count is exact.
    """
    flat = values.flatten().double()
    flat = torch.where(alive.flatten(), flat, torch.full_like(flat, -1.0))  # dead entries rank last
    order = torch.argsort(flat, descending=True, stable=True)
    keep = torch.zeros_like(flat, dtype=torch.bool)
    keep[order[:n_keep]] = True
    return keep.view_as(values)


def prune_magnitude(layers: Mapping[str, nn.Module], mask: Mask, fraction: float, scope: str) -> Mask:
    """Remove ``round(fraction * surviving)`` of the surviving weights with the smallest magnitude.

    ``scope="global"`` ranks all prunable weights together (Kim et al.); ``"layerwise"`` prunes the same
    fraction of each layer's survivors.
    """
    if not 0.0 <= fraction < 1.0:
        raise ConfigError(f"prune fraction {fraction} must be in [0, 1)")
    scores = _scores(layers, mask)
    if scope == "layerwise":
        return Mask((name, _keep_largest(scores[name], mask[name],
                                         mask[name].sum().item() - round(fraction * mask[name].sum().item())))
                    for name in mask)
    if scope != "global":
        raise ConfigError(f"unknown pruning scope {scope!r}; use global or layerwise")
    alive = mask.kept()
    keep = _keep_largest(torch.cat([scores[n].flatten() for n in mask]),
                         torch.cat([mask[n].flatten() for n in mask]), alive - round(fraction * alive))
    return _split(keep, mask)


def mask_at_sparsity(layers: Mapping[str, nn.Module], names, sparsity: float, scope: str) -> Mask:
    """Magnitude mask of the given layers at a target sparsity, from scratch (Early-Bird's per-epoch mask)."""
    dense = Mask((n, torch.ones_like(layers[n].weight, dtype=torch.bool)) for n in names)
    return prune_magnitude(layers, dense, sparsity, scope)


def score_mask(scores: Mapping[str, torch.Tensor], sparsity: float, scope: str) -> Mask:
    """Keep the largest ``|score|`` entries: ``n - round(sparsity * n)`` of each layer (``layerwise``) or of all
    layers together (``global``); the count is exact (ties broken by position)."""
    if not 0.0 <= sparsity < 1.0:
        raise ConfigError(f"sparsity {sparsity} must be in [0, 1)")
    magnitude = {n: s.detach().abs().cpu() for n, s in scores.items()}
    if scope == "layerwise":
        return Mask((n, _keep_largest(m, torch.ones_like(m, dtype=torch.bool), m.numel() - round(sparsity * m.numel())))
                    for n, m in magnitude.items())
    if scope != "global":
        raise ConfigError(f"unknown pruning scope {scope!r}; use global or layerwise")
    flat = torch.cat([m.flatten() for m in magnitude.values()])
    keep = _keep_largest(flat, torch.ones_like(flat, dtype=torch.bool), flat.numel() - round(sparsity * flat.numel()))
    return _split(keep, Mask((n, torch.ones_like(m, dtype=torch.bool)) for n, m in magnitude.items()))


def random_mask(shapes: Mapping[str, Tuple[int, ...]], layer_sparsity: Mapping[str, float],
                generator: torch.Generator) -> Mask:
    """Random mask with exactly the given per-layer sparsity (the random-ticket baseline)."""
    out = Mask()
    for name, shape in shapes.items():
        n = int(torch.Size(shape).numel())
        n_keep = n - round(layer_sparsity[name] * n)
        keep = torch.zeros(n, dtype=torch.bool)
        keep[torch.randperm(n, generator=generator)[:n_keep]] = True
        out[name] = keep.view(shape)
    return out


def hamming_distance(a: Mask, b: Mask) -> float:
    """Normalized Hamming distance: fraction of mask entries that differ."""
    if list(a) != list(b):
        raise ValueError("masks cover different layers")
    differ = sum(int((a[n] != b[n]).sum()) for n in a)
    return differ / a.total()


def _split(flat_keep: torch.Tensor, like: Mask) -> Mask:
    out, start = Mask(), 0
    for name, m in like.items():
        out[name] = flat_keep[start:start + m.numel()].view(m.shape)
        start += m.numel()
    return out
