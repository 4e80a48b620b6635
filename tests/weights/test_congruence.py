"""The streaming weights pass against a dense float64 reference (every basis, random LayerNorms folded in, chunks
that do not divide the neuron count and cross layer boundaries), moments against scipy, and the table contracts."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import scipy.stats as st
import torch

from anneuron.weights.congruence import (
    BASES,
    Weights,
    _row_topk,
    congruence_column,
    congruence_pass,
    congruence_row,
    moments_dense,
    moments_from_sums,
    neurons_table,
    tokens_table,
    weights_of,
)
from anneuron.weights.entropy import entropy_columns

K = 16
TOL = dict(rtol=1e-5, atol=1e-6)  # the bar for fp32 values and moments


@pytest.fixture(scope="module")
def small(tiny_bridge) -> Weights:
    """tiny_bridge's processed weights cut to 3 layers x 90 neurons (270; the full vocabulary)."""
    w = weights_of(tiny_bridge)
    return Weights([x[:90] for x in w.w_out], w.W_E, w.W_U)


def scipy_moments(rows: np.ndarray) -> np.ndarray:
    return np.stack([rows.mean(1), rows.var(1), st.skew(rows, axis=1, bias=True),
                     st.kurtosis(rows, axis=1, fisher=False, bias=True)], axis=1)


def dense_reference(weights: Weights) -> dict:
    """Everything the pass keeps, per basis, from the full matrices in float64."""
    W = torch.cat([w.double() for w in weights.w_out])  # (N, d)
    U = weights.W_U.double()  # (d, V)
    raw = W @ U
    cos = raw / W.norm(dim=1, keepdim=True) / U.norm(dim=0, keepdim=True)
    moments = dict(wu=scipy_moments(raw.numpy()), cos=scipy_moments(cos.numpy()))
    out = {}
    for basis, C in (("we", W @ weights.W_E.double().T), ("wu", raw), ("cosine", cos)):
        tv, ti = C.t().topk(K, dim=1)
        nv, ni = C.topk(K, dim=1)
        bv, bi = C.topk(K, dim=1, largest=False)
        out[basis] = dict(C=C.numpy(), tok_v=tv.numpy(), tok_i=ti.numpy(), top_v=nv.numpy(), top_i=ni.numpy(),
                          bot_v=bv.numpy(), bot_i=bi.numpy(), **moments)
    return out


@pytest.fixture(scope="module")
def reference(small) -> dict:
    return dense_reference(small)


def assert_topk(ids, vals, ref_rows, ref_ids, ref_vals, exact: bool, tol=TOL):
    """Top-k ids per row. exact: the same ids. Otherwise (fp32) every chosen id has the reference value of its
    rank: ids may only differ between entries tied at fp32 precision."""
    np.testing.assert_allclose(vals, ref_vals, **tol)
    if exact:
        np.testing.assert_array_equal(ids, ref_ids)
        return
    np.testing.assert_allclose(np.take_along_axis(ref_rows, ids, axis=1), ref_vals, **tol)
    assert (ids != ref_ids).mean() < 1e-3


def check(res, ref, exact: bool, moments_tol=TOL, tol=TOL):
    """The pass's result against dense_reference's: top-k (assert_topk), d_tok, d_neu (within `tol`), moments."""
    assert_topk(res.token_top_ids, res.token_top_values, ref["C"].T, ref["tok_i"], ref["tok_v"], exact, tol)
    assert_topk(res.neuron_top_ids, res.neuron_top_values, ref["C"], ref["top_i"], ref["top_v"], exact, tol)
    assert_topk(res.neuron_bottom_ids, res.neuron_bottom_values, ref["C"], ref["bot_i"], ref["bot_v"], exact, tol)
    np.testing.assert_allclose(res.d_tok, ref["tok_v"][:, 0] - ref["tok_v"][:, 1], **tol)
    np.testing.assert_allclose(res.d_neu, ref["top_v"][:, 0] - ref["top_v"][:, 1], **tol)
    np.testing.assert_allclose(res.wu_moments, ref["wu"], **moments_tol)
    np.testing.assert_allclose(res.cos_moments, ref["cos"], **moments_tol)


@pytest.mark.parametrize("basis", BASES)
def test_fp32_pass_matches_dense_float64(small, reference, basis):
    """fp32, chunks of 100 (270 neurons: crosses layers at 90 and 180, last chunk 70), 16-row cache blocks."""
    res = congruence_pass(small, basis=basis, top_k=K, chunk_neurons=100, device="cpu", dtype=torch.float32,
                          progress=False)
    check(res, reference[basis], exact=False)


@pytest.mark.parametrize("basis", BASES)
def test_float64_pass_is_exact(small, reference, basis):
    """Chunks of 128 (crossing layers), 7-row blocks. The same algorithm in float64 picks exactly the reference's
    top-k (the fp32 test allows fp32 ties only)."""
    res = congruence_pass(small, basis=basis, top_k=K, chunk_neurons=128, device="cpu", sub_rows=7,
                          dtype=torch.float64, progress=False)
    check(res, reference[basis], exact=True, moments_tol=dict(rtol=1e-9, atol=1e-12))


def test_chunks_smaller_than_k_and_k_above_neuron_count(small):
    """Chunks of 5 neurons with top_k 8: the per-token top-k is merged densely until 8 neurons are seen, then from
    candidates; with 3 x 4 = 12 neurons a top_k of 50 keeps all 12 per token."""
    w = Weights([x[:13] for x in small.w_out], small.W_E, small.W_U)
    ref = torch.cat([x.double() for x in w.w_out]) @ w.W_E.double().T  # (39, V), basis we
    res = congruence_pass(w, basis="we", top_k=8, chunk_neurons=5, device="cpu", sub_rows=3, dtype=torch.float64,
                          progress=False)
    np.testing.assert_array_equal(res.token_top_ids, ref.topk(8, dim=0).indices.T.numpy())
    np.testing.assert_array_equal(res.neuron_top_ids, ref.topk(8, dim=1).indices.numpy())
    w12 = Weights([x[:4] for x in small.w_out], small.W_E, small.W_U)
    res = congruence_pass(w12, basis="wu", top_k=50, chunk_neurons=5, device="cpu", dtype=torch.float64, progress=False)
    ref = torch.cat([x.double() for x in w12.w_out]) @ w12.W_U.double()
    assert res.token_top_ids.shape == (w.d_vocab, 12)
    np.testing.assert_array_equal(res.token_top_ids, ref.topk(12, dim=0).indices.T.numpy())


def test_moments_match_scipy():
    """Population moments, kurtosis not excess, on rows far from centred (mean 100) and heavy-tailed."""
    rng = np.random.default_rng(0)
    rows = np.stack([100 + rng.standard_normal(5000), rng.standard_t(3, 5000), rng.exponential(size=5000) - 7,
                     np.r_[rng.normal(0, 0.01, 4990), np.full(10, 0.5)]])
    want = scipy_moments(rows)
    np.testing.assert_allclose(moments_dense(rows), want, rtol=1e-10, atol=1e-12)
    # the pass's form: power sums about a shift that is only roughly the mean
    shift = rows.mean(1) + 0.3 * rows.std(1)
    c = rows - shift[:, None]
    sums = np.stack([(c**p).sum(1) for p in range(1, 5)], axis=1)
    np.testing.assert_allclose(moments_from_sums(sums, shift, rows.shape[1]), want, rtol=1e-9, atol=1e-12)
    assert np.isnan(moments_dense(np.ones((1, 10)))[0, 2:]).all()  # zero variance: no skew or kurtosis


@pytest.mark.parametrize("largest", [True, False])
def test_block_prefilter_topk_is_exact(largest):
    """Maxima of 128-token blocks, then the k best blocks only: the same as a full topk, with several of the best
    values in one block and some in the tail after the last full block."""
    g = torch.Generator().manual_seed(0)
    z = torch.randn(6, 50257, generator=g)
    sign = 1 if largest else -1
    z[0, 1000:1010] = sign * torch.arange(10, 20.0)  # ten of the best in one block
    z[1, -20:] = sign * torch.arange(5, 25.0)  # all of the best in the tail
    nb = z.shape[1] // 128
    blocks = z[:, :nb * 128].unflatten(1, (nb, 128))
    ext = blocks.amax(2) if largest else blocks.amin(2)
    v, i = _row_topk(z, ext, 16, largest)
    want = z.topk(16, dim=1, largest=largest)
    torch.testing.assert_close(v, want.values)
    torch.testing.assert_close(i, want.indices)


@pytest.mark.parametrize("basis", BASES)
def test_single_rows_and_columns(small, reference, basis):
    C = reference[basis]["C"]
    for flat in (0, 95, 269):
        np.testing.assert_allclose(congruence_row(small, flat, basis), C[flat], **TOL)
    for t in (0, 281, 50256):
        np.testing.assert_allclose(congruence_column(small, t, basis), C[:, t], **TOL)


def test_save_matrix_writes_each_layer_in_fp16(small, reference, tmp_path):
    res = congruence_pass(small, basis="cosine", top_k=K, chunk_neurons=64, device="cpu", dtype=torch.float32,
                          matrix_dir=tmp_path / "matrix", progress=False)
    assert sorted(p.name for p in (tmp_path / "matrix").iterdir()) == ["L0.npy", "L1.npy", "L2.npy"]
    C = reference["cosine"]["C"]
    for layer in range(3):
        m = np.load(tmp_path / "matrix" / f"L{layer}.npy")
        assert m.dtype == np.float16 and m.shape == (90, small.d_vocab)
        np.testing.assert_allclose(m, C[90 * layer:90 * (layer + 1)], rtol=1e-3, atol=1e-4)
    assert res.neuron_top_ids.shape == (270, K)


def test_tables_follow_design(small):
    res = congruence_pass(small, basis="we", top_k=4, chunk_neurons=128, device="cpu", dtype=torch.float32,
                          progress=False)
    strs = [f"t{i}" for i in range(small.d_vocab)]
    tokens, neurons = tokens_table(res, strs), neurons_table(res, entropy_columns(small.w_out, small.W_U, 4))
    assert tokens.column_names == ["token_id", "token_str", "top_neurons", "top_values", "d_tok"]
    assert tokens.schema.field("top_neurons").type == pa.list_(pa.int64())
    assert tokens.schema.field("top_values").type == pa.list_(pa.float32())
    assert neurons.column_names == ["layer", "neuron", "top_token_ids", "top_values", "bottom_token_ids",
                                    "bottom_values", "d_neu", "wu_mean", "wu_var", "wu_skew", "wu_kurt", "cos_mean",
                                    "cos_var", "cos_skew", "cos_kurt", "w_out_norm", "null_share"]
    assert neurons.column("layer").to_pylist()[89:91] == [0, 1] and neurons.column("neuron").to_pylist()[90] == 0
    row = neurons.slice(100, 1).to_pylist()[0]
    assert row["top_token_ids"] == res.neuron_top_ids[100].tolist()
    assert row["d_neu"] == pytest.approx(row["top_values"][0] - row["top_values"][1])
    assert tokens.slice(281, 1).to_pylist()[0]["top_neurons"] == res.token_top_ids[281].tolist()


def test_bridge_weights_are_views(tiny_bridge):
    """weights_of never stacks W_out (the bridge's W_out property copies 943 MB at GPT-2 Large shape)."""
    w = weights_of(tiny_bridge)
    for layer, block in enumerate(tiny_bridge.blocks):
        assert w.w_out[layer].data_ptr() == block.mlp.W_out.data_ptr()
    assert w.rows(250, 260).shape == (10, 64)
    torch.testing.assert_close(w.rows(250, 260), torch.cat([w.w_out[0][250:], w.w_out[1][:4]]))
