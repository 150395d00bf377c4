"""16-channel spiking data for Xylo Audio 2 (16 input channels, 8 outputs) from the offline scikit-learn digits.

Each 8x8 digit is pooled 2x2 into 4x4 = 16 values (the 16 input channels) and only the classes 0..7 are kept
(Xylo has 8 output neurons). Each channel becomes a spike train of T steps (Bernoulli, probability = intensity,
seeded), so the data are events (N, T, 1, 4, 4) that enter the chip's input channels directly; written as an
``.npz`` (x_train, y_train, x_test, y_test) that ``--data-path`` reads (``--encoding events`` is picked for it).

    python examples/vendor_flows/digits16.py digits16.npz
"""

from __future__ import annotations

import sys

import numpy as np
from sklearn.datasets import load_digits


def digits16(seed: int = 0, timesteps: int = 16):
    digits = load_digits()
    keep = digits.target < 8
    images = digits.images[keep].reshape(-1, 4, 2, 4, 2).mean(axis=(2, 4))     # (N, 4, 4), values 0..16
    rng = np.random.default_rng(seed)
    p = (images / 16.0)[:, None, None]                                         # (N, 1, 1, 4, 4)
    x = (rng.random((len(p), timesteps, 1, 4, 4)) < p).astype(np.uint8)        # (N, T, 1, 4, 4) spikes
    y = digits.target[keep].astype(np.int64)
    order = rng.permutation(len(y))
    n_test = len(y) // 4
    test, train = order[:n_test], order[n_test:]
    return {"x_train": x[train], "y_train": y[train], "x_test": x[test], "y_test": y[test]}


if __name__ == "__main__":
    out = sys.argv[1] if len(sys.argv) > 1 else "digits16.npz"
    arrays = digits16()
    np.savez(out, **arrays)
    print(f"wrote {out}: {len(arrays['y_train'])} training and {len(arrays['y_test'])} test samples, 16 channels, "
          f"8 classes")
