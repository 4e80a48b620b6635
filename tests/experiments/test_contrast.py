"""Contrast congruence (anneuron/experiments/contrast.py) against dense products and scipy."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from anneuron.contracts import EXPERIMENT_SCHEMAS
from anneuron.experiments.contrast import contrast_scores, contrast_summary, contrast_table, ranks, spearman


def test_scores_and_ranks_equal_a_dense_reference():
    g = torch.Generator().manual_seed(0)
    w_out = [torch.randn(7, 5, generator=g) for _ in range(3)]
    d = torch.randn(5, generator=g)
    s = contrast_scores(w_out, d)
    dense = torch.cat(w_out).double() @ d.double()
    assert torch.allclose(s.flatten(), dense)
    r = ranks(s).flatten()
    assert r[int(dense.argmax())] == 1 and r[int(dense.argmin())] == dense.numel()
    assert sorted(r) == list(range(1, 22))
    t = contrast_table(s)
    assert t.schema == EXPERIMENT_SCHEMAS["contrast"] and t.num_rows == 21


def test_ties_rank_by_flat_id():
    s = torch.tensor([[1.0, 2.0], [2.0, 0.0]])
    assert ranks(s).tolist() == [[3, 1], [2, 4]]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_spearman_equals_scipy(seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=50)
    y = x + rng.normal(size=50)
    x[:5] = 0.5  # ties
    assert spearman(x, y) == pytest.approx(spearmanr(x, y).statistic)
    y[3] = np.nan  # not patched exactly: left out
    assert spearman(x, y) == pytest.approx(spearmanr(np.delete(x, 3), np.delete(y, 3)).statistic)
    assert spearman(x[:2], y[:2]) is None and spearman(np.ones(9), y[:9]) is None


def test_summary_over_the_patched_layers():
    scores = torch.tensor([[0.0, 5.0, 1.0], [3.0, 2.0, 4.0]])
    exact = torch.tensor([[float("nan")] * 3, [0.1, 0.2, 0.9]])
    out = contrast_summary(scores, exact, [1])
    assert out["contrast_rank_of_best_exact"] == 2  # L1N2 (exact 0.9) has the 2nd largest contrast of all six
    assert out["contrast_spearman"] == pytest.approx(spearmanr([3, 2, 4], [0.1, 0.2, 0.9]).statistic)
    assert contrast_summary(scores, exact, []) == dict(contrast_spearman=None, contrast_rank_of_best_exact=None)
