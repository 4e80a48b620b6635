"""Proportion curves and predicted-vs-occurred counts against brute force, and on the planted demo."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from anneuron.dataset.curves import summarize
from anneuron.dataset.watch import Watched
from anneuron.tokenizer import gpt2_tokenizer


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
    curves, preds = summarize(paths, watched, w, min_count, gpt2_tokenizer(), readout="logits",
                              binning="floor", vocab_size=8, progress=False)
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
    curves, preds = summarize(demo_recorded["tokens"], watched, 0.2, 5, gpt2_tokenizer(), readout="logits",
                              binning="floor", progress=False)
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
    from anneuron.dataset.figures import dataset_figures

    paths = small_tables(tmp_path)
    watched = [Watched(0, 1, 3, "$"), Watched(2, 3, 5, "&")]
    curves, preds = summarize(paths, watched, 0.2, 7, gpt2_tokenizer(), readout="logits",
                              binning="floor", vocab_size=8, progress=False)
    pairs = pl.DataFrame({"rank": [1], "layer": [2], "neuron": [3]})
    dataset_figures(pl.from_arrow(curves), pl.from_arrow(preds), pairs, tmp_path / "curves", tmp_path / "hist", 7,
                    readout="logits", binning="floor")
    assert sorted(p.name for p in (tmp_path / "curves").iterdir()) == [
        "L0N1.png", "L0N1.svg", "L2N3.png", "L2N3.svg", "top_pairs.png", "top_pairs.svg"]
    assert (tmp_path / "hist.png").stat().st_size > 0 and (tmp_path / "hist.svg").exists()


@pytest.mark.parametrize("readout, binning, words", [
    ("logits", "floor", ("argmax of the logits", "floor bins of 0.2; BOS excluded", "bins of ≥ 7 positions")),
    ("post", "post", ("normalised residual · W_E", "int(5·round(a, 1)); BOS included", "no minimum count"))])
def test_a_curve_figure_says_which_readout_and_binning_drew_it(tmp_path, readout, binning, words):
    import matplotlib.pyplot as plt

    from anneuron.dataset.figures import curve_figure

    paths = small_tables(tmp_path)
    curves, _ = summarize(paths, [Watched(0, 1, 3, "$")], 0.2, 7, gpt2_tokenizer(), readout="logits",
                          binning=binning, vocab_size=8, progress=False)
    fig = curve_figure(pl.from_arrow(curves), 3, 9, 7, readout=readout, binning=binning)
    top, bottom = fig.axes[:2]
    text = " | ".join([top.get_title(), bottom.get_xlabel(), *(t.get_text() for t in top.get_legend().get_texts())])
    plt.close(fig)
    for w in words:
        assert w in text, text


def test_post_readout_and_binning_equal_the_posts_formulas(tiny_dir, tiny_bridge, tmp_path):
    """`curves.readout: post` + `curves.binning: post` against the post's own formulas, written out per position:
    top prediction = argmax of ln_final.hook_normalized · W_E (no final-LN gain, no b_U), bin = int(5 * round(a, 1))
    with Python's round, BOS included, no minimum count. On a model with random final-LN gains and a folded b_U, so
    that the post's readout and the real logits disagree at some positions (else the test could not tell them
    apart)."""
    import torch
    from conftest import write_token_shards

    from anneuron.dataset.engines import load_engine
    from anneuron.dataset.record import record_shard

    texts = ["The quick brown fox jumps over the lazy dog. " * 3, "An apple a day keeps the doctor away, they say.",
             "I climbed up the apple tree and picked an apple. Then I walked home through the rain."] * 2
    shards = write_token_shards(texts, tmp_path, 1, seq_len=48)
    watched = [(1, 7), (2, 100)]
    engine = load_engine(str(tiny_dir), device="cpu", dtype="float32", engine="auto")
    tokens = tmp_path / "tokens.parquet"
    record_shard(engine, shards[0], tokens, tmp_path / "topk.parquet", watched, batch_size=4, top_k=3,
                 pred_post=True, pred_topk=0, progress=False)
    table = pl.read_parquet(tokens)
    assert (table["pred"] != table["pred_post"]).sum() > 0  # the two readouts differ on this model
    target = int(table["pred_post"].mode()[0])
    brute: dict[tuple[int, int], dict[int, list[int]]] = {w: {} for w in watched}
    rows = pq.read_table(shards[0]).to_pylist()
    with torch.no_grad():
        for row in rows:
            toks = torch.tensor([row["tokens"]])
            _, cache = tiny_bridge.run_with_cache(toks)
            normalized = cache["ln_final.hook_normalized"][0]
            pred_post = (normalized @ tiny_bridge.W_E.T).argmax(-1)
            for layer, n in watched:
                acts = cache[f"blocks.{layer}.mlp.hook_post"][0, :, n]
                for pos in range(toks.shape[1]):  # BOS (pos 0) included
                    k = int(5 * round(float(acts[pos]), 1))
                    c = brute[(layer, n)].setdefault(k, [0, 0])
                    c[0] += 1
                    c[1] += int(pred_post[pos]) == target
    tok = gpt2_tokenizer()
    ws = [Watched(layer, n, target, tok.decode([target])) for layer, n in watched]
    curves, _ = summarize([tokens], ws, 0.2, 20, tok, progress=False, readout="post", binning="post")
    got = pl.from_arrow(curves)
    for (layer, n), bins in brute.items():
        g = got.filter((pl.col("layer") == layer) & (pl.col("neuron") == n) & (pl.col("count") > 0))
        assert g.height == len(bins)
        by_k = {}
        for r in g.iter_rows(named=True):
            k = next(k for k in bins if abs(r["bin_lo"] - _post_lo(k)) < 1e-12)
            by_k[k] = [r["count"], r["hits"]]
            assert r["proportion"] == pytest.approx(r["hits"] / r["count"])  # no minimum count
        assert by_k == bins, (layer, n)
    assert got["count"].sum() == len(watched) * table.height  # every position, BOS included


def _post_lo(k: int) -> float:
    return -0.15 if k == 0 else (0.2 * k - 0.05 if k > 0 else 0.2 * k - 0.15)


def test_post_binning_matches_python_round_on_ties():
    """int(5 * round(a, 1)) per value, Python semantics, against the vectorised bin_index (float32 inputs)."""
    from anneuron.dataset.curves import bin_bounds, bin_index

    rng = np.random.default_rng(3)
    a = np.concatenate([rng.normal(0, 2, 20000), np.arange(-40, 41) / 20, np.arange(-40, 41) / 20 + 1e-7])
    a = a.astype(np.float32)
    want = np.array([int(5 * round(float(x), 1)) for x in a])
    got = bin_index(a, 0.2, binning="post")
    assert (got == want).all()
    for x, k in zip(a.tolist(), got.tolist()):
        lo, hi = bin_bounds(k, 0.2, binning="post")
        assert lo - 1e-6 <= x <= hi + 1e-6
