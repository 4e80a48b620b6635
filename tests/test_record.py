"""The dataset pass against plain forwards and a brute-force sort; shards against one pass; kill and rerun."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest
import torch
from conftest import write_token_shards
from test_max_examples import brute_topk

from anneuron.demo import demo_documents
from anneuron.max_examples import build_max_examples, merge_tables
from anneuron.record import iter_shard, record_shard

WATCHED = [(0, 5), (2, 200), (1, 17)]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict:
    """Small token shards from demo text: concat in 2 shards and in 1, and truncate (rows of many lengths)."""
    texts = demo_documents(12, seed=11, sentences=(1, 5))
    base = tmp_path_factory.mktemp("corpus")
    out = {}
    for name, n, mode in (("concat", 2, "concat"), ("single", 1, "concat"), ("truncate", 1, "truncate")):
        (base / name).mkdir()
        out[name] = write_token_shards(texts, base / name, n, seq_len=24, chunking=mode)
    return out


@pytest.fixture(scope="module")
def tiny_hf(tiny_dir):
    """The tiny model through the default engine for GPT-2: Hugging Face, SDPA attention, fused gelu_new."""
    from anneuron.engines import HFGPT2Engine, load_engine

    engine = load_engine(str(tiny_dir), device="cpu", dtype="float32")
    assert isinstance(engine, HFGPT2Engine)
    return engine


def run(bridge, shard: Path, folder: Path, **kw) -> tuple[pl.DataFrame, pl.DataFrame]:
    kw.setdefault("progress", False)
    record_shard(bridge, shard, folder / "tok.parquet", folder / "topk.parquet", kw.pop("watched", WATCHED), **kw)
    return pl.read_parquet(folder / "tok.parquet"), pl.read_parquet(folder / "topk.parquet")


def cached_rows(bridge, shard: Path):
    """Per row (batch of one, no padding): chunk, row, logits (T, V) and the cache of every hook_post."""
    names = [f"blocks.{layer}.mlp.hook_post" for layer in range(bridge.cfg.n_layers)] + ["ln_final.hook_normalized"]
    for chunk, row in iter_shard(shard):
        with torch.no_grad():
            logits, cache = bridge.run_with_cache(torch.tensor([row.tokens]), names_filter=lambda n: n in names)
        yield chunk, row, logits[0], cache


@pytest.mark.parametrize("engine,chunking", [("hf", "concat"), ("hf", "truncate"), ("bridge", "truncate")])
def test_columns_match_a_plain_forward(tiny_bridge, tiny_hf, corpus, tmp_path, engine, chunking):
    """pred = argmax of the model's own logits, pred_prob its softmax, topk, pred_post, watched activations,
    next_token and doc: all against a plain forward of each row alone through the processed bridge (batched rows
    are right-padded; the hf engine runs the raw weights, SDPA and fused gelu_new)."""
    shard = corpus[chunking][0]
    tok, _ = run(tiny_hf if engine == "hf" else tiny_bridge, shard, tmp_path, batch_size=3, pred_post=True,
                 pred_topk=3, window_batches=2)
    assert tok.columns == ["chunk", "pos", "doc", "token", "next_token", "pred", "pred_prob", "pred_post", "topk",
                           "L0N5", "L2N200", "L1N17"]
    W_E = tiny_bridge.W_E.detach()
    n_rows = 0
    lengths = set()
    for chunk, row, logits, cache in cached_rows(tiny_bridge, shard):
        got = tok.filter(pl.col("chunk") == chunk).sort("pos")
        n = len(row.tokens)
        lengths.add(n)
        assert got["pos"].to_list() == list(range(n))
        assert got["token"].to_list() == row.tokens
        assert got["doc"].to_list() == row.docs
        assert got["next_token"].to_list() == row.tokens[1:] + [row.next_after]
        assert got["pred"].to_list() == logits.argmax(-1).tolist()
        np.testing.assert_allclose(got["pred_prob"].to_numpy(), logits.softmax(-1).max(-1).values.numpy(),
                                   rtol=1e-4)
        assert got["topk"].to_list() == logits.topk(3, -1).indices.tolist()
        post = (cache["ln_final.hook_normalized"][0] @ W_E.T).argmax(-1)
        assert got["pred_post"].to_list() == post.tolist()
        for layer, nn in WATCHED:
            np.testing.assert_allclose(got[f"L{layer}N{nn}"].to_numpy(),
                                       cache[f"blocks.{layer}.mlp.hook_post"][0, :, nn].numpy(), atol=1e-5)
        n_rows += 1
    assert len(tok) == sum(len(r.tokens) for _, r in iter_shard(shard)) and n_rows > 5
    assert tok.select(["chunk", "pos"]).equals(tok.select(["chunk", "pos"]).sort(["chunk", "pos"]))
    if chunking == "truncate":
        assert len(lengths) > 3  # rows of many lengths went through padded batches


def test_topk_equals_brute_force(tiny_bridge, tiny_hf, corpus, tmp_path):
    """Every neuron's top-k examples (one per document, ties by (chunk, pos)) against a sort over the shard."""
    shard = corpus["concat"][0]
    _, topk = run(tiny_hf, shard, tmp_path, batch_size=4, top_k=4)
    rows = [dict(chunk=c, docs=row.docs,
                 acts=torch.stack([cache[f"blocks.{layer}.mlp.hook_post"][0]
                                   for layer in range(tiny_bridge.cfg.n_layers)]))
            for c, row, _, cache in cached_rows(tiny_bridge, shard)]
    expected = brute_topk(rows, 4)
    keys = ["layer", "neuron", "rank", "chunk", "pos", "doc"]
    assert topk.select(keys).equals(expected.select(keys))
    np.testing.assert_allclose(topk["value"].to_numpy(), expected["value"].to_numpy(), atol=1e-5)
    assert len(topk) == tiny_bridge.cfg.n_layers * tiny_bridge.cfg.d_mlp * 4


def test_merging_shards_equals_one_pass(tiny_hf, corpus, tmp_path):
    """Two shards (tokens concatenated, top-k merged) give exactly the tables of one unsharded pass."""
    parts = []
    for i, shard in enumerate(corpus["concat"]):
        (tmp_path / str(i)).mkdir()
        parts.append(run(tiny_hf, shard, tmp_path / str(i), batch_size=1, top_k=3))
    (tmp_path / "all").mkdir()
    tok_all, topk_all = run(tiny_hf, corpus["single"][0], tmp_path / "all", batch_size=1, top_k=3)
    assert pl.concat([t for t, _ in parts]).sort(["chunk", "pos"]).equals(tok_all)
    assert merge_tables([k for _, k in parts], 3).equals(topk_all)


def test_unknown_neuron_is_refused(tiny_hf, corpus, tmp_path):
    with pytest.raises(ValueError, match="L3N0 does not exist"):
        run(tiny_hf, corpus["concat"][0], tmp_path, watched=[(3, 0)])
    assert not (tmp_path / "tok.parquet").exists()


KILLER = """
import os, signal, sys
import anneuron.record as R
from anneuron.engines import load_engine
calls = 0
orig = R.Recorder.run_batch
def run_batch(self, *a, **k):
    global calls
    calls += 1
    if calls == 4:
        os.kill(os.getpid(), signal.SIGKILL)
    return orig(self, *a, **k)
R.Recorder.run_batch = run_batch
br = load_engine(sys.argv[1], device="cpu", dtype="float32")
R.record_shard(br, sys.argv[2], sys.argv[3], sys.argv[4], [(0, 5), (2, 200), (1, 17)], batch_size=2, top_k=3,
               window_batches=1, progress=False)
"""


def test_killed_run_reruns_byte_identical(tiny_dir, tiny_hf, corpus, tmp_path):
    """SIGKILL mid-shard leaves no output (only a temp file); the rerun writes the same bytes as a clean run."""
    shard = corpus["concat"][0]
    kw = dict(batch_size=2, top_k=3, window_batches=1, progress=False)
    (tmp_path / "ref").mkdir()
    record_shard(tiny_hf, shard, tmp_path / "ref/tok.parquet", tmp_path / "ref/topk.parquet", WATCHED, **kw)
    out = tmp_path / "run"
    out.mkdir()
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    proc = subprocess.run([sys.executable, "-c", KILLER, str(tiny_dir), str(shard), str(out / "tok.parquet"),
                           str(out / "topk.parquet")], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert not (out / "tok.parquet").exists() and not (out / "topk.parquet").exists()
    stale = list(out.glob(".tok.parquet.*"))
    assert stale and stale[0].stat().st_size > 0  # it had written row groups when it died
    record_shard(tiny_hf, shard, out / "tok.parquet", out / "topk.parquet", WATCHED, **kw)
    assert sorted(p.name for p in out.iterdir()) == ["tok.parquet", "topk.parquet"]
    for name in ("tok.parquet", "topk.parquet"):
        assert (out / name).read_bytes() == (tmp_path / "ref" / name).read_bytes()


def test_demo_max_examples_sit_on_triggers(demo_recorded, ground_truth, tmp_path):
    """Each planted token neuron's top examples are positions whose token is one of its triggers."""
    from anneuron.tokenizer import gpt2_tokenizer

    tables = [pq.read_table(p) for p in demo_recorded["topk"]]
    merged = merge_tables(tables, 5)
    tokens = pl.concat([pl.read_parquet(p, columns=["chunk", "pos", "token"]) for p in demo_recorded["tokens"]])
    ex = build_max_examples(demo_recorded["topk"], demo_recorded["shards"], gpt2_tokenizer(), k=5, window=12)
    ex = pl.from_arrow(ex)
    assert ex.drop("text").equals(merged)
    for tn in ground_truth["token_neurons"]:
        top = merged.filter((pl.col("layer") == tn["layer"]) & (pl.col("neuron") == tn["neuron"]))
        assert len(top) == 5 and top["doc"].n_unique() == 5
        on = top.join(tokens, on=["chunk", "pos"])
        assert set(on["token"].to_list()) <= set(tn["trigger_ids"]), tn["name"]
        texts = ex.filter((pl.col("layer") == tn["layer"]) & (pl.col("neuron") == tn["neuron"]))["text"]
        assert all(any(f"«{t}»" in s for t in tn["triggers"]) for s in texts.to_list())


def test_bfloat16_runs_and_agrees(tiny_dir, tiny_hf, corpus, tmp_path):
    """The GPU dtype path (bf16 activations into the float32 top-k state and columns) on the CPU."""
    from anneuron.engines import load_engine

    shard = corpus["concat"][0]
    (tmp_path / "bf16").mkdir()
    (tmp_path / "fp32").mkdir()
    tok16, topk16 = run(load_engine(str(tiny_dir), device="cpu", dtype="bfloat16"), shard, tmp_path / "bf16",
                        batch_size=4, top_k=2)
    tok32, topk32 = run(tiny_hf, shard, tmp_path / "fp32", batch_size=4, top_k=2)
    assert tok16.schema == tok32.schema and len(topk16) == len(topk32)
    for layer, nn in WATCHED:
        col = f"L{layer}N{nn}"
        np.testing.assert_allclose(tok16[col].to_numpy(), tok32[col].to_numpy(), atol=0.1, rtol=0.05)
    assert (tok16["pred"] == tok32["pred"]).mean() > 0.8
