"""Proportion curves and predicted-vs-occurred counts against brute force, and on the planted demo."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from anneuron.dataset.curves import bin_bounds, summarize
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
                              binning="floor", counts="next", vocab_size=8, progress=False)
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
                              binning="floor", counts="next", progress=False)
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
                              binning="floor", counts="next", vocab_size=8, progress=False)
    pairs = pl.DataFrame({"rank": [1], "layer": [2], "neuron": [3]})
    dataset_figures(pl.from_arrow(curves), pl.from_arrow(preds), pairs, tmp_path / "curves", tmp_path / "hist", 7,
                    readout="logits", binning="floor", counts="next")
    assert sorted(p.name for p in (tmp_path / "curves").iterdir()) == [
        "L0N1.png", "L0N1.svg", "L2N3.png", "L2N3.svg", "top_pairs.png", "top_pairs.svg"]
    assert (tmp_path / "hist.png").stat().st_size > 0 and (tmp_path / "hist.svg").exists()


@pytest.mark.parametrize("readout, binning, words", [
    ("logits", "floor", ("argmax of the logits", "floor bins of 0.2; BOS excluded", "bins of ≥ 7 positions")),
    ("post", "post", ("normalised residual · W_E", "int(5·fp32 round(a, 1)); BOS included", "no minimum count"))])
def test_a_curve_figure_says_which_readout_and_binning_drew_it(tmp_path, readout, binning, words):
    import matplotlib.pyplot as plt

    from anneuron.dataset.figures import curve_figure

    paths = small_tables(tmp_path)
    curves, _ = summarize(paths, [Watched(0, 1, 3, "$")], 0.2, 7, gpt2_tokenizer(), readout="logits",
                          binning=binning, counts="next", vocab_size=8, progress=False)
    fig = curve_figure(pl.from_arrow(curves), 3, 9, 7, readout=readout, binning=binning)
    top, bottom = fig.axes[:2]
    text = " | ".join([top.get_title(), bottom.get_xlabel(), *(t.get_text() for t in top.get_legend().get_texts())])
    plt.close(fig)
    for w in words:
        assert w in text, text


def test_post_readout_and_binning_equal_the_posts_formulas(tiny_dir, tiny_bridge, tmp_path):
    """`curves.readout: post` + `curves.binning: post` against the post's own formulas, written out per position:
    top prediction = argmax of ln_final.hook_normalized · W_E (no final-LN gain, no b_U), bin =
    int(torch.round(a, decimals=1).item() * 5) as the notebook's cell 29 computes it, BOS included, no minimum count.
    On a model with random final-LN gains and a folded b_U, so
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
                acts = torch.round(cache[f"blocks.{layer}.mlp.hook_post"][0, :, n], decimals=1)
                for pos in range(toks.shape[1]):  # BOS (pos 0) included
                    k = int(acts[pos].item() * 5)
                    c = brute[(layer, n)].setdefault(k, [0, 0])
                    c[0] += 1
                    c[1] += int(pred_post[pos]) == target
    tok = gpt2_tokenizer()
    ws = [Watched(layer, n, target, tok.decode([target])) for layer, n in watched]
    curves, _ = summarize([tokens], ws, 0.2, 20, tok, progress=False, readout="post", binning="post",
                          counts="post")
    got = pl.from_arrow(curves)
    for (layer, n), bins in brute.items():
        g = got.filter((pl.col("layer") == layer) & (pl.col("neuron") == n) & (pl.col("count") > 0))
        assert g.height == len(bins)
        by_k = {}
        for r in g.iter_rows(named=True):
            k = next(k for k in bins if r["bin_lo"] == bin_bounds(k, 0.2, binning="post")[0])
            by_k[k] = [r["count"], r["hits"]]
            assert r["proportion"] == pytest.approx(r["hits"] / r["count"])  # no minimum count
        assert by_k == bins, (layer, n)
    assert got["count"].sum() == len(watched) * table.height  # every position, BOS included


def notebook_bins(acts: np.ndarray, hits: np.ndarray) -> dict[int, dict[str, int]]:
    """The notebook's loop (an_neuron_investigation.ipynb cell 29), line for line: torch.round(..., decimals=1) on
    the float32 activations, then int(value.item() * bin_granularity) per position."""
    import torch

    bin_granularity = 5
    neuron_activation_cache = [torch.round(torch.from_numpy(acts), decimals=1).flatten()]
    logit_diff_bins: dict[int, dict[str, int]] = {}
    for i in range(len(hits)):
        neuron_act, is_top_pred = int(neuron_activation_cache[0][i].item() * bin_granularity), bool(hits[i])
        if neuron_act not in logit_diff_bins:
            logit_diff_bins[neuron_act] = {"count": 0, "top_pred": 0}
        logit_diff_bins[neuron_act]["count"] += 1
        logit_diff_bins[neuron_act]["top_pred"] += is_top_pred
    return logit_diff_bins


def test_post_binning_is_the_notebooks_float32_arithmetic():
    """Values where float64 arithmetic, trunc(5 · round(a·10)/10), gives another bin than the notebook's float32
    round: 1.4 is 1.39999998 in float32, so 5× it truncates to 6; 0.35 is 0.34999999 but 10× it rounds to 3.5 in
    float32, a tie that goes to 4 (bin 2; −0.35 to −4, bin −2). The float64 formula is computed here only to show
    that it differs on every one of them."""
    import torch

    from anneuron.dataset.curves import bin_index

    a = np.array([1.4, 1.8, 2.6, 2.8, 3.6, 3.8, 0.35, -1.4, -0.35, 6.6], np.float32)
    want = [6, 8, 12, 13, 17, 18, 2, -6, -2, 32]
    notebook = [int(v * 5) for v in torch.round(torch.from_numpy(a), decimals=1).tolist()]
    float64 = np.trunc(5 * (np.round(a.astype(np.float64) * 10) / 10)).astype(int).tolist()
    assert notebook == want
    assert bin_index(a, 0.2, binning="post").tolist() == want
    assert all(f != w for f, w in zip(float64, want))  # every value above is one where the two disagree


def test_post_binning_equals_the_notebooks_loop_on_random_activations():
    """summarize's `post` bins against the notebook's own loop, on random float32 activations: negatives, the
    exact .x5 ties (k/20) and their float32 neighbours, and a long tail; also every bin's bounds hold its values."""
    from anneuron.dataset.curves import bin_index

    rng = np.random.default_rng(3)
    ties = (np.arange(-200, 201) / 20).astype(np.float32)
    a = np.concatenate([rng.normal(0, 2, 30000).astype(np.float32), rng.exponential(3, 5000).astype(np.float32),
                        ties, np.nextafter(ties, np.float32(np.inf)), np.nextafter(ties, np.float32(-np.inf))])
    a = a.astype(np.float32)
    hits = rng.random(len(a)) < 0.3
    want = notebook_bins(a, hits)
    k = bin_index(a, 0.2, binning="post")
    got = {int(b): {"count": int((k == b).sum()), "top_pred": int(hits[k == b].sum())} for b in np.unique(k)}
    assert got == want
    float64 = np.trunc(5 * (np.round(a.astype(np.float64) * 10) / 10)).astype(np.int64)
    assert (float64 != k).mean() > 0.05  # the test tells the two formulas apart
    for x, b in zip(a.tolist(), k.tolist()):
        lo, hi = bin_bounds(b, 0.2, binning="post")
        assert lo - 1e-6 <= x <= hi + 1e-6, (x, b, lo, hi)


def test_count_definitions_differ_at_row_edges(tmp_path):
    """`counts: next` (BOS excluded, next tokens) and `counts: post` (the notebook's: every position, input tokens),
    each against a count written out by hand, on rows that start with the token, end before it, and predict it at
    BOS."""
    T = 7  # the token counted
    rows = [  # (tokens, next_after, pred_post per position)
        ([0, T, 3, T], 5, [T, 1, T, 2]),  # starts with T (input: 2; next tokens of pos >= 1: 3, T, 5 -> 1)
        ([0, 4, 4], T, [T, T, 1]),  # T only after the row (input: 0; next: 1)
        ([0, 2, T, T], None, [1, T, 1, 1]),  # no token after the row (input: 2; next of pos >= 1: T, T -> 2)
    ]
    cols: dict[str, list] = {k: [] for k in ("chunk", "pos", "doc", "token", "next_token", "pred", "pred_prob",
                                             "pred_post", "L0N0")}
    for c, (toks, after, post) in enumerate(rows):
        for i, t in enumerate(toks):
            cols["chunk"].append(c), cols["pos"].append(i), cols["doc"].append(c), cols["token"].append(t)
            cols["next_token"].append(toks[i + 1] if i + 1 < len(toks) else after)
            cols["pred"].append(post[i]), cols["pred_prob"].append(0.5), cols["pred_post"].append(post[i])
            cols["L0N0"].append(0.1 * i)
    path = tmp_path / "t.parquet"
    types = {k: pa.int64() if k == "chunk" else pa.float32() if k in ("pred_prob", "L0N0") else pa.int32()
             for k in cols}
    pq.write_table(pa.table({k: pa.array(v, type=types[k]) for k, v in cols.items()}), path)
    out = {}
    for counts in ("next", "post"):
        _, preds = summarize([path], [Watched(0, 0, T, "x")], 0.2, 1, gpt2_tokenizer(), readout="post",
                             binning="post", counts=counts, vocab_size=8, progress=False)
        out[counts] = pl.from_arrow(preds).row(T, named=True)
    # next: pred_post == T at pos >= 1: row 0 pos 2, row 1 pos 1, row 2 pos 1 -> 3; occurred: next tokens of pos >= 1
    assert (out["next"]["predicted_post"], out["next"]["occurred"]) == (3, 1 + 1 + 2)
    # post: pred_post == T at every position (BOS included): 2 + 2 + 1 = 5; occurred: T among the input tokens
    assert (out["post"]["predicted_post"], out["post"]["occurred"]) == (5, 2 + 0 + 2)
    with pytest.raises(ValueError, match="curves.counts must be one of next, post"):
        summarize([path], [], 0.2, 1, gpt2_tokenizer(), readout="logits", binning="floor", counts="input",
                  vocab_size=8, progress=False)
