"""A small Spikformer (Zhou et al., ICLR 2023) with ConvPEP and the MultiSp levels 1 and 3 of Cheng et al.
(IROS 2024): the ``spikformer`` model of the registry.

``model.hidden = (D, depth, heads)``; the input is C x H x W with H and W divisible by 4 (the patch size)::

    pep        ConvPEP, Spikformer's SPS stem (conv -> BN -> pool -> LIF, the project's order, see models.py)
      conv1      C   -> D/4, 3x3, BN, avgpool 2, LIF     H/2 x W/2
      conv2      D/4 -> D/2, 3x3, BN, avgpool 2, LIF     H/4 x W/4: the patch grid, N = H W / 16 patches
      conv3      D/2 -> D,   3x3, BN, LIF                patch features x
      rpe        D   -> D,   3x3, BN, LIF                conv position embedding; output x + rpe(x)
      binarize   (model.binary_activations, MultiSp 3)  1[x > 0]: the output has two levels
    select     MultiSp 1: the round(model.patch_keep * N) patch positions with the highest running activity
    blocks.i   (depth of them) x = x + attn(x); x = x + mlp(x)
      attn       q, k, v, proj: Linear-BN-LIF; per head (q @ k^T * 0.125) @ v (no softmax), attn_lif
      mlp        fc1 Linear-BN-LIF (D -> 4D), fc2 Linear-BN-LIF (4D -> D)
    readout    mean over the tokens -> Linear (non-spiking: the per-step logits of the SpikingNet contract)

Every neuron comes from :func:`slt_deploy.models.activation` (snnTorch Leaky with ``init_hidden=True``, or ReLU
for the ANN twin), so :meth:`SpikingNet.reset_state` resets all of them and ``spiking=false`` gives the twin.
Spiking self-attention multiplies two spike tensors; NIR and Lava have no such primitive, so the NIR/netx
exporters refuse this model (:func:`deployment_advice`) while both ONNX exports handle it.
"""

from __future__ import annotations

from typing import Tuple

import torch
from torch import nn

from ..config import ModelConfig
from ..errors import ConfigError
from .layers import SpikingNet, activation, batchnorm_for
from .registry import _check_hidden, register_model

PATCH_SIZE = 4           # two 2x2 average poolings in the ConvPEP
MLP_RATIO = 4
ATTENTION_SCALE = 0.125  # Spikformer's fixed scale: with no softmax it only sets the range of the attn LIF input
ACTIVITY_MOMENTUM = 0.1  # like BatchNorm's running statistics
CONVPEP_LAYERS = ("pep.conv1", "pep.conv2", "pep.conv3", "pep.rpe")


def convpep_layers(model_or_config) -> Tuple[str, ...]:
    """Names (within ``model.body``, as ``search.prunable`` takes them) of the ConvPEP conv layers.

    Accepts a spikformer :class:`SpikingNet`, its body, or its :class:`ModelConfig`.
    """
    if isinstance(model_or_config, ModelConfig):
        if model_or_config.name != "spikformer":
            raise ConfigError(f"model {model_or_config.name!r} has no ConvPEP; only spikformer does")
        return CONVPEP_LAYERS
    body = model_or_config.body if isinstance(model_or_config, SpikingNet) else model_or_config
    if not isinstance(body, Spikformer):
        raise ConfigError(f"{type(body).__name__} has no ConvPEP; only the spikformer model does")
    return tuple(f"pep.{name}" for name, m in body.pep.named_children() if isinstance(m, nn.Conv2d))


def deployment_advice(body: "Spikformer") -> str:
    """Why the NIR/Lava exporters refuse a spikformer, what of it they could take, and what to use instead."""
    return ("spiking self-attention (q @ k^T @ v, a product of two spike tensors) has no NIR or Lava primitive; "
            f"only the ConvPEP convolutions ({', '.join(convpep_layers(body))}) map to NIR/Lava layers; "
            "export the whole network with --format onnx (ANN twin) or --format onnx-snn (unrolled SNN)")


class Binarize(nn.Module):
    """``1[x > 0]`` with a straight-through gradient (MultiSp level 3).

    In the SNN it turns the RPE sum of two spike maps ({0, 1, 2}) into their OR; in the ANN twin it is the
    Heaviside step on the sum of two ReLU maps. Stateless, so it is the same module in both networks (and the
    ANN twin of a spiking ticket keeps it).
    """

    onnx_traceable = True  # every class here says so: its forward is plain torch ops (exporters/onnx_format.py)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        step = (x > 0).to(x.dtype)
        if x.requires_grad:
            # value: exactly step (x - x is exactly 0); gradient: identity, the straight-through estimator
            return step + (x - x.detach())
        return step


class ConvPEP(nn.Module):
    """Convolutional patch embedding with a conv position embedding: (B, C, H, W) -> (B, D, H/4, W/4)."""

    onnx_traceable = True

    def __init__(self, cfg: ModelConfig, dim: int):
        super().__init__()
        c = cfg.input_shape[0]
        widths = ((c, dim // 4, True), (dim // 4, dim // 2, True), (dim // 2, dim, False))
        for i, (c_in, c_out, pool) in enumerate(widths, start=1):
            self._block(f"conv{i}", c_in, c_out, pool, cfg)
        self._block("rpe", dim, dim, False, cfg)
        self.binarize = Binarize() if cfg.binary_activations else None

    def _block(self, name: str, c_in: int, c_out: int, pool: bool, cfg: ModelConfig) -> None:
        self.add_module(name, nn.Conv2d(c_in, c_out, 3, padding=1, bias=not cfg.batchnorm))
        if cfg.batchnorm:
            self.add_module(f"{name}_bn", batchnorm_for(name, c_out))
        if pool:
            self.add_module(f"{name}_pool", nn.AvgPool2d(2))
        self.add_module(f"{name}_lif", activation(cfg))

    def _run(self, name: str, x: torch.Tensor) -> torch.Tensor:
        for part in ("", "_bn", "_pool", "_lif"):
            layer = getattr(self, name + part, None)
            if layer is not None:
                x = layer(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._run("conv3", self._run("conv2", self._run("conv1", x)))
        x = x + self._run("rpe", x)
        return self.binarize(x) if self.binarize is not None else x


class PatchSelect(nn.Module):
    """MultiSp level 1: keep ``n_keep`` of the ``n_patches`` tokens, always the same positions.

    Why a running score rather than a per-sample one: the set of kept positions must not change over the
    timesteps of a sample (the encoder's LIF neurons hold a membrane per token, which would be fed another
    patch's features if token i meant a different patch at the next step), and one fixed set for the
    deployed network means the dropped patches' encoder work is gone for every input, which is the saving
    patch sparsity is for. So ``activity`` is a buffer, like BatchNorm's running statistics: an exponential
    running average (momentum 0.1) of the mean ConvPEP output of each patch position over the training data,
    updated at the first step of each training sequence (:meth:`Spikformer.start_sequence`); eval only reads it. The kept set is
    its top ``n_keep`` positions (ties broken by position), in grid order. With ``n_keep == n_patches`` the
    tokens pass unchanged (the dense model).
    """

    onnx_traceable = True

    def __init__(self, n_patches: int, n_keep: int):
        super().__init__()
        self.n_patches, self.n_keep = n_patches, n_keep
        self.register_buffer("activity", torch.zeros(n_patches))
        # derived from ``activity``, so not saved; a buffer so that it follows .to(device) and ONNX sees a
        # constant index (a Gather), not a sort
        self.register_buffer("kept", torch.arange(n_keep), persistent=False)

    def refresh(self) -> None:
        order = torch.argsort(self.activity, descending=True, stable=True)[: self.n_keep]
        self.kept.copy_(order.sort().values)

    @torch.no_grad()
    def update(self, features: torch.Tensor) -> None:
        """Fold the mean activity per position of a (B, D, h, w) ConvPEP output into the running score."""
        self.activity.mul_(1 - ACTIVITY_MOMENTUM).add_(features.detach().float().mean(dim=(0, 1)).flatten(),
                                                       alpha=ACTIVITY_MOMENTUM)
        self.refresh()

    def _load_from_state_dict(self, *args, **kwargs):
        super()._load_from_state_dict(*args, **kwargs)
        self.refresh()  # the kept set of a loaded ticket is that of its saved activity

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        if self.n_keep == self.n_patches:
            return tokens
        return tokens.index_select(1, self.kept)

    def extra_repr(self) -> str:
        return f"keep {self.n_keep} of {self.n_patches} patches"


def _token_bn(bn: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """BatchNorm1d over the feature axis of (B, N, D) tokens (normalized over batch and tokens)."""
    return bn(x.transpose(1, 2)).transpose(1, 2)


class _LinearUnits(nn.Module):
    """Holds Linear-BN-LIF units by name: ``<name>``, ``<name>_bn``, ``<name>_lif``."""

    def _unit(self, name: str, d_in: int, d_out: int, cfg: ModelConfig) -> None:
        self.add_module(name, nn.Linear(d_in, d_out, bias=not cfg.batchnorm))
        if cfg.batchnorm:
            bn = nn.BatchNorm1d(d_out)
            bn.fold_bn_into = name  # the marker every BatchNorm of the project carries
        else:
            bn = nn.Identity()
        self.add_module(f"{name}_bn", bn)
        self.add_module(f"{name}_lif", activation(cfg))

    def _run(self, name: str, x: torch.Tensor) -> torch.Tensor:
        return getattr(self, f"{name}_lif")(_token_bn(getattr(self, f"{name}_bn"), getattr(self, name)(x)))


class SpikingSelfAttention(_LinearUnits):
    """Spikformer's SSA: q, k, v spikes; per head ``(q @ k^T * scale) @ v`` with no softmax; LIF; projection."""

    onnx_traceable = True

    def __init__(self, dim: int, heads: int, cfg: ModelConfig):
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        for name in ("q", "k", "v"):
            self._unit(name, dim, dim, cfg)
        self.attn_lif = activation(cfg)
        self._unit("proj", dim, dim, cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # heads as slices of the feature axis, not a reshape to (B, heads, N, D/heads): the ONNX graph then
        # keeps static shapes (MAC counting needs them) with a dynamic batch
        q, k, v = (self._run(u, x).split(self.head_dim, dim=2) for u in ("q", "k", "v"))
        out = torch.cat([((qh @ kh.transpose(1, 2)) * ATTENTION_SCALE) @ vh for qh, kh, vh in zip(q, k, v)], dim=2)
        return self._run("proj", self.attn_lif(out))


class SpikingMLP(_LinearUnits):
    onnx_traceable = True

    def __init__(self, dim: int, hidden: int, cfg: ModelConfig):
        super().__init__()
        self._unit("fc1", dim, hidden, cfg)
        self._unit("fc2", hidden, dim, cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._run("fc2", self._run("fc1", x))


class EncoderBlock(nn.Module):
    onnx_traceable = True

    def __init__(self, dim: int, heads: int, cfg: ModelConfig):
        super().__init__()
        self.attn = SpikingSelfAttention(dim, heads, cfg)
        self.mlp = SpikingMLP(dim, MLP_RATIO * dim, cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(x)
        return x + self.mlp(x)


def patch_count(cfg: ModelConfig) -> Tuple[int, int]:
    """(patches, kept patches) of a resolved spikformer config; ConfigError for inputs it cannot take."""
    _, h, w = cfg.input_shape
    if h % PATCH_SIZE or w % PATCH_SIZE or h < PATCH_SIZE or w < PATCH_SIZE:
        raise ConfigError(f"model.input_shape={tuple(cfg.input_shape)}: spikformer's ConvPEP pools twice by 2, so "
                          f"H and W must be multiples of {PATCH_SIZE} (the patch size); got {h}x{w}")
    n = (h // PATCH_SIZE) * (w // PATCH_SIZE)
    keep = round(cfg.patch_keep * n)  # Python's round, as the pruning counts: half to even (0.5 * 49 -> 24)
    if keep == 0:
        raise ConfigError(f"model.patch_keep={cfg.patch_keep} keeps 0 of the {n} patches of a {h}x{w} input; "
                          f"use model.patch_keep >= {1 / n:.4g} (one patch)")
    return n, keep


class Spikformer(nn.Module):
    """The body: one timestep, (B, C, H, W) -> (B, classes) logits."""

    onnx_traceable = True

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        _check_hidden(cfg, 3)
        dim, depth, heads = cfg.hidden
        if dim % 4 or dim % heads:
            raise ConfigError(f"model.hidden={tuple(cfg.hidden)}: spikformer's embed_dim {dim} must be divisible "
                              f"by 4 (ConvPEP widths D/4, D/2, D) and by the {heads} heads")
        n, keep = patch_count(cfg)
        self.dim = dim
        self.pep = ConvPEP(cfg, dim)
        self.select = PatchSelect(n, keep)
        self.blocks = nn.ModuleList(EncoderBlock(dim, heads, cfg) for _ in range(depth))
        self.readout = nn.Linear(dim, cfg.num_classes)
        self._first_step = True

    def start_sequence(self) -> None:
        """Called by SpikingNet.reset_state before every sequence (the ANN twin's too)."""
        self._first_step = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        update, self._first_step = self.training and self._first_step, False
        features = self.pep(x)
        if update:  # once per training sequence, so every step of a sample sees the same kept patches
            self.select.update(features)
        # a constant target shape (not flatten(2)) keeps the ONNX shapes static with a dynamic batch
        tokens = features.reshape(-1, self.dim, self.select.n_patches).transpose(1, 2)
        tokens = self.select(tokens)                                    # (B, kept patches, D)
        for block in self.blocks:
            tokens = block(tokens)
        return self.readout(tokens.mean(1))


@register_model("spikformer", (64, 1, 4),
                "Spikformer: ConvPEP stem + spiking self-attention blocks; hidden = embed_dim,depth,heads; "
                "MultiSp model.patch_keep / model.binary_activations",
                options=("patch_keep", "binary_activations"))
def _spikformer(cfg: ModelConfig) -> nn.Module:
    return Spikformer(cfg)
