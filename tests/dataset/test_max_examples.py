"""Running top-k max-activating examples against a brute-force sort: one example per document, ties by (chunk,
pos), BOS and padding excluded, any batch order, shards merged exactly; text windows."""

from __future__ import annotations

import random

import numpy as np
import polars as pl
import pytest
import torch

from anneuron.dataset.max_examples import (
    BatchIndex,
    RowTokens,
    TopKTracker,
    build_max_examples,
    merge_tables,
    window_bounds,
)


def brute_topk(rows: list[dict], k: int) -> pl.DataFrame:
    """Every (neuron, real position): sort by (value desc, chunk, pos), keep each document's first, then k."""
    recs = []
    for r in rows:
        acts = r["acts"]  # (L, n, d)
        L, n, d = acts.shape
        for layer in range(L):
            for p in range(1, n):
                for j in range(d):
                    recs.append((layer, j, float(acts[layer, p, j]), r["chunk"], p, r["docs"][p]))
    out = []
    by_neuron: dict = {}
    for rec in recs:
        by_neuron.setdefault(rec[:2], []).append(rec)
    for (layer, j), lst in sorted(by_neuron.items()):
        lst.sort(key=lambda x: (-x[2], x[3], x[4]))
        seen, rank = set(), 0
        for rec in lst:
            if rec[5] in seen:
                continue
            seen.add(rec[5])
            rank += 1
            out.append(dict(layer=layer, neuron=j, rank=rank, value=rec[2], chunk=rec[3], pos=rec[4], doc=rec[5]))
            if rank == k:
                break
    return pl.DataFrame(out).with_columns(pl.col("layer", "neuron", "rank", "pos", "doc").cast(pl.Int32),
                                          pl.col("value").cast(pl.Float32), pl.col("chunk").cast(pl.Int64))


def synthetic_rows(n_rows=14, L=2, d=5, seed=0, ties=True) -> list[dict]:
    """A concat-like stream: rows of 3..9 tokens, documents spanning rows; integer activations (many ties)."""
    r = random.Random(seed)
    g = torch.Generator().manual_seed(seed)
    rows, doc = [], 0
    for c in range(n_rows):
        n = r.randint(3, 9)
        docs = []
        for _ in range(n - 1):
            if r.random() < 0.15:
                doc += 1
            docs.append(doc)
        docs = [docs[0]] + docs  # BOS takes the row's first document
        acts = (torch.randint(0, 4, (L, n, d), generator=g).float() if ties
                else torch.randn((L, n, d), generator=g))
        acts[:, 0] = 100.0  # BOS: huge, must never be an example
        rows.append(dict(chunk=c, docs=docs, acts=acts))
    return rows


def track(rows: list[dict], k: int, batch: int, order: list[int] | None = None, dense: bool = False) -> TopKTracker:
    L, _, d = rows[0]["acts"].shape
    tr = TopKTracker(L, d, k, dense=dense)
    order = order if order is not None else list(range(len(rows)))
    for s in range(0, len(order), batch):
        sel = [rows[i] for i in order[s:s + batch]]
        width = max(len(x["docs"]) for x in sel)
        idx = BatchIndex.build([x["chunk"] for x in sel], [x["docs"] for x in sel], width, "cpu")
        for layer in range(L):
            act = torch.full((len(sel), width, d), 50.0)  # padding: large, must never be an example
            for b, x in enumerate(sel):
                act[b, :len(x["docs"])] = x["acts"][layer]
            tr.update(layer, act, idx)
    return tr


@pytest.mark.parametrize("dense", [False, True])
@pytest.mark.parametrize("ties", [True, False])
@pytest.mark.parametrize("batch", [1, 3, 14])
def test_tracker_equals_brute_force(ties, batch, dense):
    """Both update paths (selective for CPU, dense for GPU) against the brute-force sort."""
    rows = synthetic_rows(ties=ties)
    got = pl.from_arrow(track(rows, k=4, batch=batch, dense=dense).table())
    assert got.equals(brute_topk(rows, 4))


@pytest.mark.parametrize("dense", [False, True])
def test_tracker_any_batch_order(dense):
    """Rows grouped by length (out of chunk order) give the same examples, ties included."""
    rows = synthetic_rows(seed=1)
    order = list(range(len(rows)))
    random.Random(5).shuffle(order)
    got = pl.from_arrow(track(rows, k=3, batch=4, order=order, dense=dense).table())
    assert got.equals(brute_topk(rows, 3))


def test_merging_shards_equals_one_pass():
    rows = synthetic_rows(n_rows=20, seed=2)
    shards = [[x for x in rows if x["chunk"] % 3 == i] for i in range(3)]
    merged = merge_tables([track(s, k=4, batch=2).table() for s in shards], 4)
    assert merged.equals(pl.from_arrow(track(rows, k=4, batch=5).table()))
    assert merged.equals(brute_topk(rows, 4))


def test_threshold_skips_most_neurons_once_warm():
    """After many batches only neurons whose batch max reaches their k-th value are touched."""
    rows = synthetic_rows(n_rows=60, d=40, seed=3, ties=False)
    tr = track(rows[:50], k=2, batch=5)
    before = tr.updated
    tr2 = track(rows, k=2, batch=5)
    assert tr2.updated - before < 0.5 * 2 * 40 * 2  # last 2 batches: well under half of the 80 neurons each


def test_window_bounds():
    assert window_bounds(10, 30, 8) == (5, 13)  # 5 before, the token, 2 after
    assert window_bounds(2, 30, 8) == (1, 5)  # never BOS
    assert window_bounds(28, 30, 8) == (23, 30)


def test_text_windows(tmp_path):
    from anneuron.data import Row, write_shards
    from anneuron.tokenizer import gpt2_tokenizer

    tok = gpt2_tokenizer()
    ids = tok.encode(" the quick brown fox jumps over the lazy dog", add_special_tokens=False)
    rows = [Row([50256] + ids, [0] * (len(ids) + 1), None), Row([50256] + ids[:4], [1] * 5, None)]
    paths = [tmp_path / "s0.parquet", tmp_path / "s1.parquet"]
    write_shards(rows, paths)
    topk = pl.DataFrame(dict(layer=[0, 0], neuron=[0, 1], rank=[1, 1], value=[1.0, 2.0], chunk=[0, 1],
                             pos=[4, 2], doc=[0, 1])).to_arrow()
    p = tmp_path / "topk.parquet"
    import pyarrow.parquet as pq

    pq.write_table(topk, p)
    ex = pl.from_arrow(build_max_examples([p], paths, tok, k=5, window=4))
    assert ex["text"].to_list() == [" quick brown« fox» jumps", " the« quick» brown"]
    rt = RowTokens(paths)
    assert rt.row(1).tolist() == [50256] + ids[:4]
    assert np.array_equal(rt.row(0)[1:], ids)
