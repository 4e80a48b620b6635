"""Contrast congruence (docs/science.md "Contrast congruence"): does the weight direction predict who restores LD?

An experiment's logit difference reads the final residual along d = u_answer − u_wrong (the processed unembedding
columns the model's forward uses, so LD = ln_final(resid) · d + const). A neuron writes w_out[l, n] per unit of
activation, so w_out[l, n] · d is how much one unit of its activation moves LD directly (ignoring everything
downstream of it and the final norm's scale). Ranked per experiment beside the exact patch scores: where the two
agree (high Spearman over the patched layers), the weights alone would have found the experiment's neurons.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import torch
from jaxtyping import Float
from torch import Tensor

from anneuron.contracts import EXPERIMENT_SCHEMAS


def contrast_scores(w_out: list[Float[Tensor, "d_mlp d_model"]],
                    direction: Float[Tensor, "d_model"]) -> Float[Tensor, "L d_mlp"]:
    """w_out[l] @ direction for every layer, in float64 (a few hundred thousand dot products: exact and cheap)."""
    d = direction.detach().to("cpu", torch.float64)
    return torch.stack([w.detach().to("cpu", torch.float64) @ d for w in w_out])


def ranks(scores: Float[Tensor, "L d_mlp"]) -> np.ndarray:
    """(L, d_mlp) int ranks over all neurons, 1 = most positive; ties by flat id (layer, then neuron)."""
    flat = scores.flatten().numpy()
    order = np.lexsort((np.arange(flat.size), -flat))
    r = np.empty(flat.size, np.int64)
    r[order] = np.arange(1, flat.size + 1)
    return r.reshape(scores.shape)


def contrast_table(scores: Float[Tensor, "L d_mlp"]) -> pa.Table:
    """The `exp_contrast` table: every neuron's score and rank."""
    n_layers, d_mlp = scores.shape
    return pa.table({"layer": np.repeat(np.arange(n_layers), d_mlp), "neuron": np.tile(np.arange(d_mlp), n_layers),
                     "score": scores.flatten().numpy(), "rank": ranks(scores).flatten()},
                    schema=EXPERIMENT_SCHEMAS["contrast"])


def spearman(x: np.ndarray, y: np.ndarray) -> float | None:
    """Spearman's rank correlation (average ranks for ties); None with fewer than 3 points or no spread."""
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if len(x) < 3:
        return None
    rx, ry = _average_ranks(x), _average_ranks(y)
    if rx.std() == 0 or ry.std() == 0:
        return None
    return float(np.corrcoef(rx, ry)[0, 1])


def _average_ranks(v: np.ndarray) -> np.ndarray:
    order = np.argsort(v, kind="stable")
    r = np.empty(len(v), np.float64)
    r[order] = np.arange(1, len(v) + 1)
    uniq, inverse, counts = np.unique(v, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=r)
    return (sums / counts)[inverse]


def contrast_summary(scores: Float[Tensor, "L d_mlp"], exact: Float[Tensor, "L d_mlp"],
                     layers: list[int]) -> dict:
    """What summary.json reports: Spearman(contrast, exact) over the neurons of the patched layers, and the
    contrast rank (over all neurons) of the best exact neuron."""
    r = ranks(scores)
    if not layers:
        return dict(contrast_spearman=None, contrast_rank_of_best_exact=None)
    s = scores[layers].flatten().numpy()
    e = exact[layers].flatten().double().numpy()
    best = int(np.nanargmax(np.where(np.isnan(e), -np.inf, e)))
    layer, neuron = layers[best // scores.shape[1]], best % scores.shape[1]
    return dict(contrast_spearman=spearman(s, e), contrast_rank_of_best_exact=int(r[layer, neuron]))
