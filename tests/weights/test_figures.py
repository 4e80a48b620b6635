"""The weights figures on small synthetic tables: every figure draws, and point labels never overlap."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import polars as pl
import pytest
from matplotlib.text import Annotation, Text

from anneuron.weights import figures as pw

N_LAYERS, D_MLP, V = 3, 40, 500


def _overlaps(ax) -> list[tuple[str, str]]:
    """Pairs of point labels (annotations) of ax whose drawn texts intersect (their leader lines may cross)."""
    ax.figure.canvas.draw()
    boxes = [(a.get_text(), Text.get_window_extent(a)) for a in ax.texts if isinstance(a, Annotation)]
    return [(s, t) for i, (s, b) in enumerate(boxes) for t, c in boxes[i + 1:] if b.overlaps(c)]


def test_labels_of_clustered_points_do_not_overlap():
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.scatter(np.arange(100), np.zeros(100), s=1)
    xs = np.array([50, 51, 52, 53, 10])  # four points almost on top of each other
    ys = np.array([1.0, 0.99, 0.98, 0.97, 0.5])
    ax.set_ylim(-0.2, 1.2)
    pw._label_points(ax, xs, ys, ["' alpha'", "' beta'", "' gamma'", "' delta'", "' far'"])
    assert _overlaps(ax) == []
    plt.close(fig)


@pytest.fixture(scope="module")
def tables() -> dict:
    rng = np.random.default_rng(0)
    n = N_LAYERS * D_MLP
    top_neurons = rng.integers(0, n, (V, 4))
    top_vals = np.sort(rng.random((V, 4)), axis=1)[:, ::-1].astype(np.float32)
    tokens = pl.DataFrame({
        "token_id": np.arange(V), "token_str": [f" t{i}" for i in range(V)],
        "top_neurons": top_neurons.tolist(), "top_values": top_vals.tolist(),
        "d_tok": (top_vals[:, 0] - top_vals[:, 1]).astype(np.float64),
    })
    cls = np.array(["other"] * n, dtype=object)
    cls[[3, 50]], cls[70], cls[100] = "prediction", "suppression", "partition"
    neurons = pl.DataFrame({
        "layer": np.arange(n) // D_MLP, "neuron": np.arange(n) % D_MLP,
        "top_token_ids": rng.integers(0, V, (n, 4)).tolist(), "d_neu": rng.random(n),
        "top_values": np.sort(rng.random((n, 4)), axis=1)[:, ::-1].astype(np.float32).tolist(),
        "cos_kurt": 3 + rng.random(n), "cos_skew": rng.normal(size=n), "cos_var": 0.01 + 0.001 * rng.random(n),
        "neuron_class": cls.tolist(), "w_out_norm": rng.gamma(2.0, size=n), "null_share": rng.beta(1, 20, n),
    })
    pairs = pl.DataFrame({
        "rank": [1, 2, 3], "layer": [0, 1, 2], "neuron": [3, 10, 30], "token_id": [5, 6, 7],
        "token_str": [" a", " b", " c"], "congruence": [0.5, 0.4, 0.1], "d_neu": [0.5, 0.3, 0.001],
        "d_tok": [0.6, 0.5, 0.01], "score": [0.3, 0.15, 1e-5],
    })
    return dict(tokens=tokens, neurons=neurons, pairs=pairs)


def test_every_figure_draws(tables):
    rng = np.random.default_rng(1)
    strs = tables["tokens"]["token_str"].to_list()
    figs = [
        pw.neuron_vs_tokens(rng.normal(size=V), 1, 3, strs, "we", {"d_neu": 0.5, "class": "prediction"}),
        pw.token_vs_neurons(rng.normal(size=N_LAYERS * D_MLP), 5, " t5", N_LAYERS, D_MLP, "cosine"),
        pw.top2_diff_per_token(tables["tokens"], D_MLP, "we"),
        pw.top_neuron_per_token(tables["tokens"], D_MLP, "we"),
        pw.neuron_vs_tokens(rng.normal(size=V), 2, 7, strs, "we", side="in"),
        pw.top2_diff_per_neuron(tables["neurons"], strs, "we"),
        pw.top_token_per_neuron(tables["neurons"], strs, "we"),
        pw.top_pairs(tables["pairs"], 20, "we"),  # scores over 4 decades: log scale
        pw.classes_by_layer(tables["neurons"], kurtosis=3.5, partition_var=0.0105),
        pw.entropy_by_layer(tables["neurons"]),
    ]
    assert figs[7].axes[0].get_xscale() == "log"
    for fig in figs:
        for ax in fig.axes:
            assert _overlaps(ax) == []
        plt.close(fig)


def test_the_listed_neurons_are_drawn_first_then_the_best_pairs_each_once():
    pairs = pl.DataFrame({"rank": list(range(1, 9)), "layer": [0, 1, 2, 0, 1, 2, 0, 1],
                      "neuron": [3, 10, 30, 4, 5, 6, 7, 8]})
    assert pw.TOP_PAIR_FIGURES == 5
    assert pw.neurons_to_draw(pairs, ((2, 30), (1, 1))) == [(2, 30), (1, 1), (0, 3), (1, 10), (0, 4), (1, 5)]
    assert pw.neurons_to_draw(pairs.head(0), ()) == []


def test_top_neuron_per_token_names_the_neuron_that_holds_the_most_of_the_highest(tables):
    """The post's footnote 4: among the 100 tokens with the highest top-1 neuron congruence, the neuron that is the
    top one of most of them is named (planted: 40 of them, each other neuron at most a few)."""
    tokens = tables["tokens"]
    top1 = np.array(tokens["top_values"].list.first().to_list())
    planted = 2 * D_MLP + 17  # L2N17
    highest = np.argsort(-top1)[:100]
    neurons = [list(x) for x in tokens["top_neurons"].to_list()]
    for t in highest[::5].tolist() + highest[1::5].tolist():
        neurons[t][0] = planted
    fig = pw.top_neuron_per_token(tokens.with_columns(pl.Series("top_neurons", neurons)), D_MLP, "we")
    texts = [t.get_text() for t in fig.axes[0].texts]
    plt.close(fig)
    assert "L2N17 is the top neuron of 40 of the 100 highest" in texts


def test_top_token_per_neuron_lists_the_neurons_with_the_highest_top_token(tables):
    """The notebook's cell 39 (top_token_for_each_neuron_fig): every neuron's top-1 token congruence; the list beside
    the axes names, best first, the N_TOP neurons of highest top-1 value with their top token. Planted: L1N5 and
    L2N0 far above the rest, the first with a second token close behind (a small d_neu: not what top2_diff_per_neuron
    would list first)."""
    neurons = tables["neurons"]
    values = [list(v) for v in neurons["top_values"].to_list()]
    ids = [list(t) for t in neurons["top_token_ids"].to_list()]
    for flat, (top1, top2), token in ((1 * D_MLP + 5, (9.0, 8.9), 42), (2 * D_MLP + 0, (7.0, 1.0), 7)):
        values[flat][:2], ids[flat][0] = [top1, top2], token
    neurons = neurons.with_columns(pl.Series("top_values", values, dtype=pl.List(pl.Float32)),
                                   pl.Series("top_token_ids", ids))
    strs = tables["tokens"]["token_str"].to_list()
    fig = pw.top_token_per_neuron(neurons, strs, "we")
    listing = [t.get_text() for t in fig.axes[0].texts if not isinstance(t, Annotation)][0].splitlines()
    plt.close(fig)
    top1 = np.array([v[0] for v in values])
    want = np.argsort(-top1, kind="stable")[: pw.N_TOP]
    assert listing[:2] == [" 1. L1N5 ' t42' 9", " 2. L2N0 ' t7' 7"]
    assert [line.split()[1] for line in listing] == [f"L{f // D_MLP}N{f % D_MLP}" for f in want]
    assert len(listing) == pw.N_TOP


def test_input_row_is_the_embedding_dot_the_neurons_input_weights():
    """input_row against a float64 dot product per token, and the weights pass draws it for each listed neuron."""
    import torch

    from anneuron.weights.congruence import Weights

    g = torch.Generator().manual_seed(0)
    d_model = 16
    w = Weights(w_out=[torch.randn(D_MLP, d_model, generator=g) for _ in range(N_LAYERS)],
                W_E=torch.randn(V, d_model, generator=g), W_U=torch.randn(d_model, V, generator=g),
                w_in=[torch.randn(d_model, D_MLP, generator=g) for _ in range(N_LAYERS)])
    want = np.array([float(w.W_E[t].double() @ w.w_in[1][:, 7].double()) for t in range(V)])
    assert np.allclose(pw.input_row(w, 1, 7), want, rtol=1e-5, atol=1e-5)
    assert not np.allclose(pw.input_row(w, 1, 8), want)  # another neuron's column differs


def test_planted_token_neurons_read_their_triggers(demo_bridge, ground_truth):
    """On demo-planted each token neuron was planted to fire on its trigger tokens: its input-weights figure puts
    exactly those first (and the output side puts the token it writes first, as the post's congruence)."""
    from anneuron.weights.congruence import congruence_row, weights_of

    w = weights_of(demo_bridge)
    for t in ground_truth["token_neurons"]:
        row = pw.input_row(w, t["layer"], t["neuron"])
        k = len(t["trigger_ids"])
        assert sorted(np.argsort(-row)[:k].tolist()) == sorted(t["trigger_ids"]), t["name"]
        out = congruence_row(w, t["layer"] * w.d_mlp + t["neuron"], "we")
        assert int(np.argmax(out)) == t["token_id"], t["name"]
