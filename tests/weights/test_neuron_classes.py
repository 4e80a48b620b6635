"""Gurnee's classes: the rule itself, rows of known shape, and the planted demo's prediction/suppression neurons."""

from __future__ import annotations

import numpy as np

from anneuron.weights.congruence import moments_dense
from anneuron.weights.neuron_classes import classify, with_classes


def test_rule():
    var = np.array([0.001, 0.001, 0.02, 0.02, 0.001, 0.02, 0.001, np.nan])
    skew = np.array([1.0, -1.0, 0.0, 2.0, 0.0, 0.5, 1.0, np.nan])
    kurt = np.array([12, 12, 3, 10, 10.5, 9.9, 10, np.nan])
    got = classify(var, skew, kurt, kurtosis=10, partition_var=0.005).tolist()
    # skew exactly 0 with high kurtosis is neither prediction nor suppression; kurtosis == K is not "> K"
    assert got == ["prediction", "suppression", "partition", "partition", "other", "partition", "other", "other"]


def test_rows_of_known_shape():
    """Cosine-like rows over 50,257 tokens: heavy right tail -> prediction, left -> suppression, bimodal ->
    partition, Gaussian -> other (default K = 10, V = 0.005)."""
    rng = np.random.default_rng(0)
    v = 50257
    base = rng.normal(0, 0.03, v)
    tail = np.zeros(v)
    tail[rng.choice(v, 30, replace=False)] = 0.5
    rows = np.stack([base + tail, base - tail, rng.choice([-0.1, 0.1], v) + rng.normal(0, 0.01, v), base])
    m = moments_dense(rows)
    got = classify(m[:, 1], m[:, 2], m[:, 3], kurtosis=10, partition_var=0.005).tolist()
    assert got == ["prediction", "suppression", "partition", "other"]


def test_with_classes_adds_one_column(demo_congruence):
    t = with_classes(demo_congruence["neurons"], 3.15, 0.01)
    assert t.column_names[-1] == "neuron_class" and t.num_rows == demo_congruence["neurons"].num_rows
    again = with_classes(t, 100.0, 1.0)  # reclassifying replaces the column
    assert again.column_names.count("neuron_class") == 1
    assert set(again.column("neuron_class").to_pylist()) == {"other"}


def test_planted_classes_under_demo_thresholds(demo_congruence, ground_truth):
    """workflow/configs/demo-planted.yaml (K = 3.15, V = 0.01): the planted prediction and suppression neurons get
    their classes; the token neurons (single-token prediction neurons) are prediction too; nothing else is."""
    t = with_classes(demo_congruence["neurons"], 3.15, 0.01)
    d_mlp = demo_congruence["weights"].d_mlp
    cls = t.column("neuron_class").to_pylist()
    by_class = {c: {i for i, x in enumerate(cls) if x == c} for c in set(cls)}
    flat = lambda entries: {e["layer"] * d_mlp + e["neuron"] for e in entries}  # noqa: E731
    assert by_class["prediction"] == flat(ground_truth["prediction_neurons"]) | flat(ground_truth["token_neurons"])
    assert by_class["suppression"] == flat(ground_truth["suppression_neurons"])
    assert "partition" not in by_class
    # the thresholds sit in a clear gap: random neurons' kurtosis stays well below K
    kurt = t.column("cos_kurt").to_numpy()
    others = np.array([i not in by_class["prediction"] | by_class["suppression"] for i in range(len(cls))])
    assert kurt[others].max() < 3.1 < 3.2 < kurt[~others].min()
