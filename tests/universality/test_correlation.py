"""The tile's running sums against numpy.corrcoef on all pairs (whatever the float32 accumulators' fold cadence), the
shift that keeps them stable, the top pairs' ties, the rotation baseline, and the tile sizing."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from anneuron.universality.baseline import Rotations, rotation
from anneuron.universality.correlation import TileCorrelation, top_pairs
from anneuron.universality.plan import block_size, blocks, tile_bytes


def _data(t: int = 700, na: int = 13, nb: int = 11, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Correlated columns with different means and scales; one constant column on each side."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((t, 5))
    a = z @ rng.standard_normal((5, na)) + rng.standard_normal((t, na)) * 0.5 + rng.uniform(-3, 3, na)
    b = z @ rng.standard_normal((5, nb)) + rng.standard_normal((t, nb)) * 0.5 + rng.uniform(-3, 3, nb)
    a[:, 4] = 2.5
    b[:, 7] = -1.0
    return a.astype(np.float32), b.astype(np.float32)


def _dense(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """numpy.corrcoef's cross block, 0 where a column is constant (its NaN)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        c = np.corrcoef(a.astype(np.float64), b.astype(np.float64), rowvar=False)[: a.shape[1], a.shape[1]:]
    return np.nan_to_num(c, nan=0.0)


def _t(x: np.ndarray) -> torch.Tensor:
    """A copy: the tile centres its chunks in place."""
    return torch.tensor(x)


def _run(a, b, batch, **kw) -> TileCorrelation:
    tile = TileCorrelation(a.shape[1], b.shape[1], baseline=False, **kw)
    for s in range(0, len(a), batch):
        tile.update(_t(a[s:s + batch]), _t(b[s:s + batch]))
    return tile


@pytest.mark.parametrize("batch, fold_every", [(1, 8), (64, 1), (64, 3), (64, 100), (700, 8)])
def test_matches_numpy_corrcoef_on_all_pairs(batch, fold_every):
    """Folded every chunk, every 3 (11 chunks: a remainder folded at the end), or never before the end."""
    a, b = _data()
    rho = _run(a, b, batch, fold_every=fold_every).correlation().numpy()
    np.testing.assert_allclose(rho, _dense(a, b), atol=2e-6)
    assert (rho[4] == 0).all() and (rho[:, 7] == 0).all()


def test_reductions_and_top_pairs_match_the_dense_matrix():
    a, b = _data(seed=1)
    dense = _dense(a, b)
    tile = TileCorrelation(a.shape[1], b.shape[1], 100, 200, baseline=False)
    tile.update(_t(a), _t(b))
    sa, sb, (pa_, pb_, pc) = tile.result(top_k=7)
    np.testing.assert_allclose(sa.max_corr, dense.max(1), atol=2e-6)
    np.testing.assert_array_equal(sa.argmax, dense.argmax(1) + 200)
    np.testing.assert_allclose(sa.min_corr, dense.min(1), atol=2e-6)
    np.testing.assert_array_equal(sb.argmax, dense.argmax(0) + 100)
    order = np.argsort(-dense.ravel(), kind="stable")[:7]
    np.testing.assert_array_equal(pa_, order // b.shape[1] + 100)
    np.testing.assert_array_equal(pb_, order % b.shape[1] + 200)
    np.testing.assert_allclose(pc, dense.ravel()[order], atol=2e-6)


@pytest.mark.parametrize("fold_every", [1, 8, 1000])
def test_the_shift_keeps_large_means_exact(fold_every):
    """A mean 10^4 times the spread: unshifted float32 sums lose the correlation, the shifted ones keep it, whether
    the 16 chunks' products meet in float64 at once or only after all of them summed in float32."""
    rng = np.random.default_rng(2)
    z = rng.standard_normal((4000, 1))
    a = (3000.0 + 0.1 * (z + 0.3 * rng.standard_normal((4000, 3)))).astype(np.float32)
    b = (-2000.0 + 0.1 * (z + 0.3 * rng.standard_normal((4000, 2)))).astype(np.float32)
    want = _dense(a, b)
    good = _run(a, b, 256, fold_every=fold_every).correlation().numpy()
    bad = _run(a, b, 256, shifted=False, fold_every=fold_every).correlation().numpy()
    assert np.abs(good - want).max() < 1e-5
    assert np.abs(bad - want).max() > 0.1


def test_rotation_is_orthogonal_seeded_and_per_model_and_layer():
    r = rotation(40, 0, "m", 3)
    np.testing.assert_allclose(r @ r.T, np.eye(40), atol=1e-12)
    np.testing.assert_array_equal(r, rotation(40, 0, "m", 3))
    assert not np.allclose(r, rotation(40, 0, "m", 4)) and not np.allclose(r, rotation(40, 0, "n", 3))
    assert not np.allclose(r, rotation(40, 1, "m", 3))
    x = torch.randn(50, 40)
    np.testing.assert_allclose(Rotations(40, 0, "m").rotate(x, 3).numpy(), x.numpy() @ r.T, atol=1e-4)


def test_baseline_accumulators_match_numpy_on_the_rotated_columns():
    a, b = _data(seed=3, na=9, nb=9)
    ra, rb = a @ rotation(9, 0, "a", 0).T.astype(np.float32), b @ rotation(9, 0, "b", 0).T.astype(np.float32)
    tile = TileCorrelation(9, 9)
    for s in range(0, len(a), 100):
        sl = slice(s, s + 100)
        tile.update(*(_t(x[sl]) for x in (a, b, ra, rb)))
    sa, sb, _ = tile.result(top_k=1)
    np.testing.assert_allclose(sa.baseline_max, _dense(a, rb).max(1), atol=2e-6)
    np.testing.assert_allclose(sb.baseline_max, _dense(ra, b).max(0), atol=2e-6)


def test_the_rotation_baseline_leaves_no_permuted_twin_universal():
    """B = A's independent neurons permuted: each neuron's max ρ is 1 at its twin, and against B rotated no neuron
    reaches the 0.5 threshold (chance alone: about sqrt(2 ln d / d) ~ 0.16 for d = 256)."""
    rng = np.random.default_rng(4)
    d, t = 256, 4000
    a = (rng.gamma(2.0, size=(t, d)) * rng.uniform(0.5, 2, d)).astype(np.float32)  # skewed, unequal scales
    perm = rng.permutation(d)
    b = np.empty_like(a)
    b[:, perm] = a
    ra, rb = a @ rotation(d, 0, "a", 0).T.astype(np.float32), b @ rotation(d, 0, "b", 0).T.astype(np.float32)
    tile = TileCorrelation(d, d)
    tile.update(*(_t(x) for x in (a, b, ra, rb)))
    sa, sb, _ = tile.result(top_k=1)
    np.testing.assert_allclose(sa.max_corr, 1.0, atol=1e-5)
    np.testing.assert_array_equal(sa.argmax, perm)
    assert sa.baseline_max.max() < 0.5 and sb.baseline_max.max() < 0.5, (sa.baseline_max.max(), sb.baseline_max.max())


def test_top_pairs_ties_go_to_the_lowest_row_then_column():
    """Against a brute-force sort of every entry, on a matrix of few distinct values (ties at the k-th value)."""
    rng = np.random.default_rng(5)
    rho = rng.integers(0, 4, (9, 7)).astype(np.float64) / 4
    for k in (1, 5, 20, 63, 100):
        rows, cols, vals = top_pairs(torch.from_numpy(rho.copy()), k)
        flat = rho.ravel()
        want = np.lexsort((np.arange(flat.size), -flat))[:k]
        np.testing.assert_array_equal(rows * 7 + cols, want)
        np.testing.assert_array_equal(vals, flat[want])


def test_blocks_that_do_not_divide_the_neuron_count():
    assert blocks(10, 4) == [(0, 4), (4, 8), (8, 10)]
    assert blocks(3, 5) == [(0, 3)]


def test_the_tile_side_is_the_largest_that_fits_the_budget():
    """3 float64 + 3 float32 matrices of side², a chunk of 4 float32 (tokens x side) activations, 16 MB of
    workspace."""
    assert tile_bytes(100, 512) == 36 * 100**2 + 16 * 512 * 100 + 16 * 2**20
    for side, chunk in ((2, 1), (100, 512), (2896, 4096), (41402, 4096)):
        mb = tile_bytes(side, chunk) / 2**20
        assert block_size(mb, 10**6, 10**6, chunk) == side
        assert block_size(mb * (1 - 1e-9), 10**6, 10**6, chunk) == side - 1
    assert block_size(1e6, 30, 20) == 30
    with pytest.raises(ValueError, match="tile_mb"):
        block_size(1e-9, 10, 10)
