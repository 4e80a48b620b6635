"""Entropy neurons from the weights (Gurnee et al. 2024, Sec. 5.3): neurons whose output weights write almost only
into the unembedding's (near-)null space, so they change the residual's norm (and through the final norm the
entropy of the next-token distribution) without favouring any token. Per neuron: ‖w_out‖ and the share of
‖w_out‖² in the span of W_U's bottom singular directions (docs/science.md "Entropy neurons").

The null space: the k left singular vectors of W_U (d_model x vocab, processed: the final norm's gain folded in)
with the smallest singular values, k = `congruence.null_dims`. One SVD of W_U (d_model x d_model work through the
Gram matrix W_U W_Uᵀ) and one (neurons x d_model) @ (d_model x k) product; memory: the Gram matrix and W_out once.
"""

from __future__ import annotations

import numpy as np
import torch


def null_space(W_U: torch.Tensor, k: int) -> torch.Tensor:
    """(d_model, k) orthonormal basis of the span of W_U's k bottom left singular vectors (float64). W_U: (d_model,
    vocab). Through the Gram matrix: its eigenvectors are W_U's left singular vectors, eigenvalues σ²."""
    if not 0 < k < W_U.shape[0]:
        raise ValueError(f"congruence.null_dims: {k} must be between 1 and d_model - 1 ({W_U.shape[0] - 1})")
    u = W_U.double()
    _, vecs = torch.linalg.eigh(u @ u.T)  # ascending eigenvalues
    return vecs[:, :k]


def entropy_columns(w_out: list[torch.Tensor], W_U: torch.Tensor, k: int) -> dict[str, np.ndarray]:
    """`w_out_norm` and `null_share` (in [0, 1]; NaN for a zero w_out) per flat neuron. w_out: per layer
    (d_mlp, d_model)."""
    basis = null_space(W_U, k)
    norms, shares = [], []
    for w in w_out:
        w = w.double()
        sq = (w * w).sum(1)
        proj = ((w @ basis) ** 2).sum(1)
        norms.append(sq.sqrt())
        shares.append(torch.where(sq > 0, proj / sq.clamp_min(1e-300), torch.full_like(sq, float("nan"))))
    return {"w_out_norm": torch.cat(norms).cpu().numpy(), "null_share": torch.cat(shares).cpu().numpy()}
