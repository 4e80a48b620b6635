"""The dataset pass on tiny random Llamas (tests/llama_models.py) against plain forwards: which hook holds the gated
product, and every recorded column and top-k example from the Hugging Face engine (SDPA, pre-hooks on down_proj)
and the bridge engine against the processed bridge's run_with_cache."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch
from conftest import write_token_shards
from llama_models import *  # noqa: F401,F403 (session fixtures)
from test_max_examples import brute_topk
from test_record import cached_rows

from anneuron import architecture as A
from anneuron.dataset.engines import BridgeEngine, HFEngine, load_engine
from anneuron.dataset.record import iter_shard, record_shard
from anneuron.demos.planted import demo_documents

WATCHED = [(0, 5), (2, 100), (1, 17)]


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> dict:
    """concat rows (one length) and truncate rows (many lengths: padded batches)."""
    texts = demo_documents(10, seed=5, sentences=(1, 5))
    base = tmp_path_factory.mktemp("llama_corpus")
    out = {}
    for mode in ("concat", "truncate"):
        (base / mode).mkdir()
        out[mode] = write_token_shards(texts, base / mode, 1, seq_len=24, chunking=mode)[0]
    return out


@pytest.fixture(scope="module")
def hf_engine(llama_dir):
    engine = load_engine(str(llama_dir), device="cpu", dtype="float32", engine="auto")
    assert isinstance(engine, HFEngine) and engine.family.name == "llama"
    return engine


def test_hook_post_is_the_gated_product_the_down_projection_reads(llama_bridge, llama_hf):
    """TransformerLens' blocks.L.mlp.hook_post (processed bridge) = act(gate x) · up x = down_proj's input in the
    raw Hugging Face model (x: what the MLP reads)."""
    toks = llama_bridge.to_tokens("The cat sat on the mat, and then an apple fell off the tree.")
    seen, mlp_in, handles = {}, {}, []
    for l, layer in enumerate(llama_hf.model.layers):
        handles.append(A.hook_neurons(layer, A.LLAMA, lambda a, l=l: seen.__setitem__(l, a)))
        handles.append(layer.mlp.register_forward_pre_hook(lambda m, inp, l=l: mlp_in.__setitem__(l, inp[0])))
    with torch.no_grad():
        _, cache = llama_bridge.run_with_cache(toks, names_filter=lambda n: n.endswith("mlp.hook_post"))
        llama_hf(toks)
    for h in handles:
        h.remove()
    worst = 0.0
    for l, layer in enumerate(llama_hf.model.layers):
        x = mlp_in[l]
        with torch.no_grad():
            by_hand = layer.mlp.act_fn(layer.mlp.gate_proj(x)) * layer.mlp.up_proj(x)
        torch.testing.assert_close(seen[l], by_hand, rtol=0, atol=0)
        worst = max(worst, float((cache[f"blocks.{l}.mlp.hook_post"] - seen[l]).abs().max()))
    print(f"max |bridge hook_post - raw down_proj input| = {worst:.3g}")
    assert worst < 1e-5


@pytest.mark.parametrize("engine,chunking", [("hf", "concat"), ("hf", "truncate"), ("bridge", "truncate")])
def test_columns_match_a_plain_forward(llama_bridge, hf_engine, shards, tmp_path, engine, chunking):
    eng = hf_engine if engine == "hf" else BridgeEngine(llama_bridge)
    assert_columns_match_a_plain_forward(llama_bridge, eng, shards[chunking], tmp_path, f"{engine}/{chunking}")


def assert_columns_match_a_plain_forward(bridge, eng, shard, tmp_path, what: str) -> None:
    """pred, pred_prob, topk, pred_post (normalized residual · W_E), watched activations: against a plain
    forward of each row alone through the processed bridge (run_with_cache)."""
    record_shard(eng, shard, tmp_path / "tok.parquet", tmp_path / "topk.parquet", WATCHED, batch_size=3,
                 top_k=20, pred_post=True, pred_topk=3, window_batches=2, progress=False)
    tok = pl.read_parquet(tmp_path / "tok.parquet")
    W_E = bridge.W_E.detach()
    worst, n_rows = 0.0, 0
    for chunk, row, logits, cache in cached_rows(bridge, shard):
        got = tok.filter(pl.col("chunk") == chunk).sort("pos")
        assert got["token"].to_list() == row.tokens
        assert got["pred"].to_list() == logits.argmax(-1).tolist()
        np.testing.assert_allclose(got["pred_prob"].to_numpy(), logits.softmax(-1).max(-1).values.numpy(),
                                   rtol=1e-4)
        assert got["topk"].to_list() == logits.topk(3, -1).indices.tolist()
        assert got["pred_post"].to_list() == (cache["ln_final.hook_normalized"][0] @ W_E.T).argmax(-1).tolist()
        for layer, nn in WATCHED:
            want = cache[f"blocks.{layer}.mlp.hook_post"][0, :, nn].numpy()
            np.testing.assert_allclose(got[f"L{layer}N{nn}"].to_numpy(), want, atol=1e-5, rtol=1e-5)  # fp32 rounding
            worst = max(worst, float(np.abs(got[f"L{layer}N{nn}"].to_numpy() - want).max()))
        n_rows += 1
    print(f"{what}: max |recorded - run_with_cache hook_post| = {worst:.3g}")
    assert len(tok) == sum(len(r.tokens) for _, r in iter_shard(shard)) and n_rows > 5


def test_normalized_residual_is_rms_only(llama_bridge):
    """ln_final.hook_normalized under RMSNorm = x / rms(x), no mean removed (what the HF engine computes)."""
    toks = llama_bridge.to_tokens("An apple a day.")
    with torch.no_grad():
        _, cache = llama_bridge.run_with_cache(toks)
    x = cache[f"blocks.{llama_bridge.cfg.n_layers - 1}.hook_resid_post"]
    eps = A.eps_of(llama_bridge.ln_final.original_component)
    torch.testing.assert_close(cache["ln_final.hook_normalized"], A.normalize(x, "RMS", eps), rtol=0, atol=1e-6)


def test_topk_equals_brute_force(llama_bridge, hf_engine, shards, tmp_path):
    shard = shards["concat"]
    record_shard(hf_engine, shard, tmp_path / "tok.parquet", tmp_path / "topk.parquet", WATCHED, batch_size=4,
                 top_k=4, pred_post=False, pred_topk=0, progress=False)
    topk = pl.read_parquet(tmp_path / "topk.parquet")
    rows = [dict(chunk=c, docs=row.docs,
                 acts=torch.stack([cache[f"blocks.{layer}.mlp.hook_post"][0]
                                   for layer in range(llama_bridge.cfg.n_layers)]))
            for c, row, _, cache in cached_rows(llama_bridge, shard)]
    expected = brute_topk(rows, 4)
    assert len(topk) == len(expected) == 3 * 128 * 4
    np.testing.assert_allclose(topk["value"].to_numpy(), expected["value"].to_numpy(), atol=1e-5)
    # the same examples in the same order, except that examples tied in exact arithmetic (a document's first
    # tokens, repeated in several documents) may swap ranks at float rounding
    j = topk.join(expected, on=["layer", "neuron", "rank"], suffix="_ref")
    swapped = j.filter((pl.col("chunk") != pl.col("chunk_ref")) | (pl.col("pos") != pl.col("pos_ref")))
    assert len(swapped) <= 0.01 * len(j)
    assert swapped.is_empty() or (swapped["value"] - swapped["value_ref"]).abs().max() < 1e-5
    # the same SET of examples per neuron, except where a tie straddles the top-k boundary: an example kept by one
    # side only must then sit at that neuron's k-th value (the tie broken by float rounding)
    key = ["layer", "neuron", "chunk", "pos"]
    boundary = expected.group_by("layer", "neuron").agg(pl.col("value").min().alias("kth"))
    only = pl.concat([topk.join(expected, on=key, how="anti"), expected.join(topk, on=key, how="anti")])
    off = only.join(boundary, on=["layer", "neuron"]).filter((pl.col("value") - pl.col("kth")).abs() > 1e-5)
    assert off.is_empty(), off
    assert len(only) <= 0.01 * len(j)
