"""The demo's synthetic data set: Gaussian clusters, one per class, packed into one fs3 file."""

from __future__ import annotations

import numpy as np

FEATURES = 64
CLASSES = 10
SAMPLE_DTYPE = np.dtype([("x", "<f4", (FEATURES,)), ("y", "<i8")])


def make_samples(n: int, seed: int = 0) -> np.ndarray:
    """``n`` labelled samples: class centres at distance ~3 sigma, so a small MLP learns them well."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0.0, 1.0, (CLASSES, FEATURES)).astype(np.float32) * 0.6
    y = rng.integers(0, CLASSES, n)
    out = np.empty(n, SAMPLE_DTYPE)
    out["y"] = y
    out["x"] = centres[y] + rng.normal(0.0, 1.0, (n, FEATURES)).astype(np.float32)
    return out


def decode(samples: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """(features float32 [n, FEATURES], labels int64 [n]) from packed sample bytes."""
    arr = np.frombuffer(b"".join(samples), SAMPLE_DTYPE)
    return arr["x"], arr["y"]
