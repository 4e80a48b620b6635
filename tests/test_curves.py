"""Proportion curves and predicted-vs-occurred counts against brute force, and on the planted demo."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from anneuron.curves import summarize
from anneuron.tokenizer import gpt2_tokenizer
from anneuron.watch import Watched


def small_tables(tmp_path, seed=0):
    """Two hand-made token tables: few tokens, activations spread over many bins, a null next_token."""
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(2):
        n = 500
        pos = np.tile(np.arange(10), n // 10).astype(np.int32)
        nxt = rng.integers(0, 6, n).astype(np.int32)
        t = pa.table({
            "chunk": np.repeat(np.arange(n // 10) + 100 * i, 10).astype(np.int64), "pos": pos,
            "doc": np.zeros(n, np.int32), "token": rng.integers(0, 6, n).astype(np.int32),
            "next_token": pa.array(nxt, mask=rng.random(n) < 0.05),
            "pred": rng.integers(0, 6, n).astype(np.int32), "pred_prob": rng.random(n).astype(np.float32),
            "pred_post": rng.integers(0, 6, n).astype(np.int32),
            "L0N1": (rng.normal(0, 0.6, n)).astype(np.float32),
            "L2N3": (rng.exponential(0.5, n) - 0.1).astype(np.float32),
        })
        paths.append(tmp_path / f"t{i}.parquet")
        pq.write_table(t, paths[-1])
    return paths


def test_curves_and_predictions_equal_brute_force(tmp_path):
    paths = small_tables(tmp_path)
    watched = [Watched(0, 1, 3, "$"), Watched(2, 3, 5, "&")]
    w, min_count = 0.2, 7
    curves, preds = summarize(paths, watched, w, min_count, gpt2_tokenizer(), vocab_size=8, progress=False)
    df = pl.concat([pl.read_parquet(p) for p in paths]).filter(pl.col("pos") >= 1)
    rows = []
    for wt in watched:
        count, hits = {}, {}
        for a, p in zip(df[wt.name].to_list(), df["pred"].to_list()):
            k = math.floor(a / w)
            count[k] = count.get(k, 0) + 1
            hits[k] = hits.get(k, 0) + (p == wt.token_id)
        for k in range(min(count), max(count) + 1):
            c, h = count.get(k, 0), hits.get(k, 0)
            rows.append((wt.layer, wt.neuron, wt.token_id, wt.token_str, k * w, (k + 1) * w, c, h,
                         h / c if c >= min_count else None))
    got = pl.from_arrow(curves)
    assert got.rows() == rows
    assert got["count"].sum() == 2 * len(df)
    assert got["proportion"].null_count() > 0  # the sparse tail bins
    pred = [df["pred"].to_list().count(t) for t in range(8)]
    occ = [df["next_token"].drop_nulls().to_list().count(t) for t in range(8)]
    post = [df["pred_post"].to_list().count(t) for t in range(8)]
    p = pl.from_arrow(preds)
    assert p.columns == ["token_id", "token_str", "predicted", "occurred", "predicted_post"]
    assert p["predicted"].to_list() == pred and p["occurred"].to_list() == occ
    assert p["predicted_post"].to_list() == post
    assert p["token_str"].to_list()[:3] == ["!", '"', "#"]


def test_planted_token_neurons_rise(demo_recorded, ground_truth):
    """Each planted token neuron's curve: >= 0.9 in its top populated bin, <= 0.1 in its lowest."""
    watched = [Watched(t["layer"], t["neuron"], t["token_id"], t["token_str"]) for t in ground_truth["token_neurons"]]
    curves, preds = summarize(demo_recorded["tokens"], watched, 0.2, 5, gpt2_tokenizer(), progress=False)
    c = pl.from_arrow(curves).drop_nulls("proportion")
    for t in ground_truth["token_neurons"]:
        cn = c.filter((pl.col("layer") == t["layer"]) & (pl.col("neuron") == t["neuron"])).sort("bin_lo")
        assert cn["proportion"][-1] >= 0.9 and cn["proportion"][0] <= 0.1, (t["name"], cn)
        assert cn["bin_lo"][-1] >= 2.0  # it fires well above zero on its triggers
    p = pl.from_arrow(preds)
    tok = pl.concat([pl.read_parquet(x, columns=["pos", "pred"]) for x in demo_recorded["tokens"]])
    assert p["predicted"].sum() == tok.filter(pl.col("pos") >= 1).height
    an = ground_truth["token_neurons"][2]["token_id"]
    assert p.filter(pl.col("token_id") == an)["predicted"].item() > 0


def test_figures_are_written(tmp_path):
    """Every watched neuron gets a curve figure, plus top_pairs and the histogram grid (PNG + SVG)."""
    from anneuron.plots.dataset import dataset_figures

    paths = small_tables(tmp_path)
    watched = [Watched(0, 1, 3, "$"), Watched(2, 3, 5, "&")]
    curves, preds = summarize(paths, watched, 0.2, 7, gpt2_tokenizer(), vocab_size=8, progress=False)
    pairs = pl.DataFrame({"rank": [1], "layer": [2], "neuron": [3]})
    dataset_figures(pl.from_arrow(curves), pl.from_arrow(preds), pairs, tmp_path / "curves", tmp_path / "hist", 7)
    assert sorted(p.name for p in (tmp_path / "curves").iterdir()) == [
        "L0N1.png", "L0N1.svg", "L2N3.png", "L2N3.svg", "top_pairs.png", "top_pairs.svg"]
    assert (tmp_path / "hist.png").stat().st_size > 0 and (tmp_path / "hist.svg").exists()
