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
        pw.top2_diff_per_neuron(tables["neurons"], strs, "we"),
        pw.top_pairs(tables["pairs"], 20, "we"),  # scores over 4 decades: log scale
        pw.classes_by_layer(tables["neurons"], kurtosis=3.5, partition_var=0.0105),
        pw.entropy_by_layer(tables["neurons"]),
    ]
    assert figs[4].axes[0].get_xscale() == "log"
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
