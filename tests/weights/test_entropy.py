"""Entropy neurons from the weights: the null space against numpy's SVD, and planted neurons whose w_out lies in
it (share 1) or in the unembedding's top directions (share 0)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from anneuron.weights.entropy import entropy_columns, null_space


def _unembedding(d: int = 16, v: int = 300, seed: int = 0) -> np.ndarray:
    """(d, v) with singular values spread over 3 orders of magnitude, so the bottom directions are well defined."""
    rng = np.random.default_rng(seed)
    u, _ = np.linalg.qr(rng.standard_normal((d, d)))
    vt, _ = np.linalg.qr(rng.standard_normal((v, d)))
    return (u * np.logspace(1, -2, d)) @ vt.T


def test_null_space_is_the_bottom_singular_span():
    W_U = _unembedding()
    basis = null_space(torch.from_numpy(W_U), 4).numpy()
    u, s, _ = np.linalg.svd(W_U, full_matrices=False)
    np.testing.assert_allclose(basis @ basis.T, u[:, -4:] @ u[:, -4:].T, atol=1e-10)  # the same projector
    with pytest.raises(ValueError, match="congruence.null_dims"):
        null_space(torch.from_numpy(W_U), 16)


def test_planted_entropy_neuron_and_a_norm():
    W_U = _unembedding()
    u, _, _ = np.linalg.svd(W_U, full_matrices=False)
    rng = np.random.default_rng(1)
    w = rng.standard_normal((2, 5, 16))
    w[0, 1] = 7.0 * (u[:, -4:] @ rng.standard_normal(4))  # an entropy neuron: all in the null space, norm 7·…
    w[1, 3] = u[:, :3] @ rng.standard_normal(3)  # a token writer: nothing in the null space
    w[1, 4] = 0.0
    got = entropy_columns([torch.from_numpy(x) for x in w], torch.from_numpy(W_U), 4)
    flat = w.reshape(10, 16)
    np.testing.assert_allclose(got["w_out_norm"], np.linalg.norm(flat, axis=1), rtol=1e-12)
    assert got["null_share"][1] == pytest.approx(1.0, abs=1e-10)
    assert got["null_share"][5 + 3] == pytest.approx(0.0, abs=1e-10)
    assert np.isnan(got["null_share"][9])
    want = (np.linalg.norm(flat[:9] @ u[:, -4:], axis=1) / np.linalg.norm(flat[:9], axis=1)) ** 2  # 9: the zero row
    np.testing.assert_allclose(got["null_share"][:9], want, rtol=1e-9, atol=1e-12)
