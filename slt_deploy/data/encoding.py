"""Minibatches and spike encodings (direct, rate, latency; events pass through)."""


from typing import Iterator, Optional, Tuple

import numpy as np
import torch

from ..errors import DataError

from .base import ENCODINGS, IMAGE_ENCODINGS, LATENCY_THRESHOLD, ArrayDataset

# ------------------------------------------------------------------------------------- first-layer placement

def first_layer_on_host(encoding: str, binary: bool = False) -> bool:
    """Where a deployment computes the first synapse layer: on the chip when the input is already spikes (event
    data, or a sequence given as is whose every value is 0 or 1: ``binary``), on the host for every other input
    (real values; and rate or latency codes, which the host makes from real values and so feeds as currents).
    The one rule for the compiler's ``first_layer``, the simulator, the report and the energy search."""
    return not (encoding == "events" or (encoding == "given" and binary))


# ------------------------------------------------------------------------------------- batches and encoding

def batches(ds: ArrayDataset, batch_size: int, shuffle: bool,
            generator: Optional[torch.Generator] = None) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
    """Minibatches ``(x, y)``: x float32 (B, C, H, W) in [0, 1] (uint8 / 255), y int64 (B,).

    For event data x is float32 (B, T, C, H, W) of the 0/1 spikes as they are (not scaled).
    Every sample appears exactly once (the last batch may be smaller). When ``shuffle``, the order is
    ``torch.randperm(len(ds), generator=generator)``, so a seeded generator gives a reproducible order.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} must be >= 1")
    n = len(ds)
    order = torch.randperm(n, generator=generator).numpy() if shuffle else np.arange(n)
    scale = ds.images.dtype == np.uint8 and not ds.is_events
    for start in range(0, n, batch_size):
        idx = order[start:start + batch_size]
        x = torch.from_numpy(ds.images[idx])  # fancy indexing copies, so the tensor owns its memory
        x = x.float().div_(255.0) if scale else x.float()
        yield x, torch.from_numpy(ds.labels[idx])


def encode(x: torch.Tensor, encoding: str, timesteps: int,
           generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Turn a batch ``x`` in [0, 1] into a (T, *x.shape) input sequence.

    * ``events``: x is already a spike sequence, (B, T, C, H, W) event frames from :func:`batches`; it is
      returned as (T, B, C, H, W). Its bins are fixed when the dataset is loaded (``data.timesteps``); a
      smaller ``timesteps`` takes the first bins (the start of the recording: what Early-Time's outputs
      "accumulated over steps 1..t" see), a larger one is an error.
    * ``direct``: x itself at every step (real-valued input to the first layer, as in Kim et al.), as a view
      that shares x's memory at every step: read it, or copy it (``.contiguous()``) before writing to it.
    * ``rate``: Bernoulli spikes with probability x per step, from ``torch.rand(generator=generator)``;
      the draws are made on the generator's device so a seed gives the same spikes on CPU and GPU.
    * ``latency``: one spike per nonzero pixel at step round((T - 1) * (1 - x)) (brighter = earlier,
      x = 1 at step 0), via ``snntorch.spikegen.latency`` with linear, normalize and clip; pixels below
      :data:`LATENCY_THRESHOLD` (half an 8-bit grey level, so in practice only zeros) never spike.
    """
    if encoding not in ENCODINGS:
        raise DataError(f"data.encoding={encoding!r} is not one of: {', '.join(ENCODINGS)}")
    if timesteps < 1:
        raise DataError(f"data.timesteps={timesteps} must be >= 1")
    if encoding == "events":
        if x.dim() != 5:
            raise DataError(f"data.encoding=events needs event frames (B, T, C, H, W), got a batch of shape "
                            f"{tuple(x.shape)}: image data takes {', '.join(IMAGE_ENCODINGS)}")
        if x.shape[1] < timesteps:
            raise DataError(f"data.timesteps={timesteps} exceeds the {x.shape[1]} time bins of the event data; "
                            f"event data is binned when loaded, so load it with data.timesteps={timesteps}")
        return x[:, :timesteps].transpose(0, 1).contiguous()
    if x.dim() == 5:
        raise DataError(f"data.encoding={encoding} is for images, but the batch is event frames "
                        f"{tuple(x.shape)} (B, T, C, H, W): set data.encoding=events")
    if encoding == "direct":  # a view of x broadcast over time (stride 0): no copy, and known constant in time
        return x.unsqueeze(0).expand(timesteps, *x.shape)
    if x.numel() and (x.min() < 0 or x.max() > 1):
        raise ValueError(f"{encoding} encoding needs inputs in [0, 1], got [{x.min():.3g}, {x.max():.3g}]")
    if encoding == "rate":
        device = generator.device if generator is not None else x.device
        u = torch.rand((timesteps, *x.shape), generator=generator, device=device).to(x.device)
        return (u < x).to(x.dtype)
    if x.numel() == 0:  # snntorch's latency takes min/max of its input, which an empty tensor lacks
        return x.new_zeros((timesteps, *x.shape))
    from snntorch import spikegen  # lazy: snntorch pulls in much at import time

    return spikegen.latency(x, num_steps=timesteps, threshold=LATENCY_THRESHOLD, linear=True,
                            normalize=True, clip=True).to(x.dtype)
