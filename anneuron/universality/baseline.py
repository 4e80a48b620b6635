"""The paper's baseline: model B's neurons mixed by a random rotation per layer. A rotation keeps the layer's
activation statistics (its covariance up to the change of basis, the total variance) but destroys the neuron basis,
so the max correlation of A's neuron against the rotated layer is what chance and shared layer-wide structure give.

The paper's code draws Gaussian rows normalised to unit length (not orthogonal; its own comment says so). Here the
rotation is a Haar-random orthogonal matrix (QR of a Gaussian matrix, signs fixed), seeded by (seed, model id,
layer), so every tile job of a model draws the same rotation and a rerun gives identical numbers.
"""

from __future__ import annotations

import zlib

import numpy as np
import torch


def rotation(d: int, seed: int, model_id: str, layer: int) -> np.ndarray:
    """(d, d) float64 orthogonal R; rotated activations = activations @ R.T (row k of R mixes neuron k')."""
    rng = np.random.default_rng([seed, zlib.crc32(model_id.encode()), layer])
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    return q * np.sign(np.diag(r))[None, :]  # Haar measure (Mezzadri 2007): without the signs QR is biased


class Rotations:
    """One model's per-layer rotations, drawn on first use, as float32 tensors on `device`."""

    def __init__(self, d_mlp: int, seed: int, model_id: str, device: str | torch.device = "cpu"):
        self.d_mlp, self.seed, self.model_id, self.device = d_mlp, seed, model_id, torch.device(device)
        self._cache: dict[int, torch.Tensor] = {}

    def __call__(self, layer: int) -> torch.Tensor:
        if layer not in self._cache:
            r = rotation(self.d_mlp, self.seed, self.model_id, layer)
            self._cache[layer] = torch.from_numpy(r.T.copy()).float().to(self.device)  # stored transposed
        return self._cache[layer]

    def rotate(self, acts: torch.Tensor, layer: int, lo: int = 0, hi: int | None = None,
               out: torch.Tensor | None = None) -> torch.Tensor:
        """acts (T, d_mlp) of one layer -> (T, hi − lo): the rotated neurons [lo, hi) only (into `out`, which may
        be a column slice of a larger matrix)."""
        return torch.mm(acts, self(layer)[:, lo:hi], out=out)
