"""Mutually exclusive pairs against brute force, and the planted demo's token neurons at the top of the table."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from conftest import no_entropy

from anneuron.contracts import PAIRS
from anneuron.weights.congruence import Congruence, neurons_table, tokens_table
from anneuron.weights.pairs import mutual_pairs, pairs_table


def congruence_of(C: np.ndarray, n_layers: int, k: int = 3) -> Congruence:
    """What the pass would keep of a dense (N, V) matrix (moments left at zero: pairs do not use them)."""
    tok = np.argsort(-C, axis=0, kind="stable")[:k].T
    neu = np.argsort(-C, axis=1, kind="stable")[:, :k]
    bot = np.argsort(C, axis=1, kind="stable")[:, :k]
    zeros = np.zeros((C.shape[0], 4))
    return Congruence(basis="we", n_layers=n_layers, d_mlp=C.shape[0] // n_layers,
                      token_top_ids=tok, token_top_values=np.take_along_axis(C.T, tok, 1).astype(np.float32),
                      neuron_top_ids=neu, neuron_top_values=np.take_along_axis(C, neu, 1).astype(np.float32),
                      neuron_bottom_ids=bot, neuron_bottom_values=np.take_along_axis(C, bot, 1).astype(np.float32),
                      wu_moments=zeros, cos_moments=zeros)


def brute_force_pairs(C: np.ndarray) -> list[tuple[int, int, float]]:
    """(neuron, token, score) of every pair whose argmaxes meet, by loops over the dense matrix."""
    out = []
    for n in range(C.shape[0]):
        for t in range(C.shape[1]):
            if C[n].argmax() == t and C[:, t].argmax() == n:
                d_neu = np.diff(np.sort(C[n].astype(np.float32).astype(np.float64))[-2:])[0]
                d_tok = np.diff(np.sort(C[:, t].astype(np.float32).astype(np.float64))[-2:])[0]
                out.append((n, t, d_neu * d_tok))
    return sorted(out, key=lambda x: -x[2])


def test_pairs_match_brute_force():
    rng = np.random.default_rng(0)
    C = rng.standard_normal((60, 40))
    C[[3, 17, 41], [5, 22, 9]] += [4.0, 6.0, 5.0]  # three clear pairs; random ones occur too
    res = congruence_of(C, n_layers=3)
    n, t = mutual_pairs(res.token_top_ids[:, 0], res.neuron_top_ids[:, 0])
    want = brute_force_pairs(C)
    assert sorted(zip(n.tolist(), t.tolist())) == sorted((a, b) for a, b, _ in want)
    neurons = neurons_table(res, no_entropy(res.neuron_top_ids.shape[0]))
    table = pairs_table(tokens_table(res, [f"tok{i}" for i in range(40)]), neurons)
    assert table.schema == PAIRS
    rows = table.to_pylist()
    assert [r["rank"] for r in rows] == list(range(1, len(want) + 1))
    assert [(r["layer"] * 20 + r["neuron"], r["token_id"]) for r in rows] == [(a, b) for a, b, _ in want]
    np.testing.assert_allclose([r["score"] for r in rows], [s for _, _, s in want], rtol=1e-12)
    assert rows[0]["token_str"] == f"tok{rows[0]['token_id']}"
    for r in rows:
        assert r["congruence"] == np.float32(C[r["layer"] * 20 + r["neuron"], r["token_id"]])
        assert r["score"] == r["d_neu"] * r["d_tok"]
    assert {(r["layer"], r["neuron"], r["token_id"]) for r in rows[:3]} == {(0, 3, 5), (0, 17, 22), (2, 1, 9)}


def test_small_case_by_hand_and_empty_table():
    C = np.array([[1.0, 0, 0], [2, 0, 0], [3, 0, 0], [0, 5, 6]])
    # neuron 2's top token is 0 and token 0's top neuron is 2; neuron 3 <-> token 2; token 1's top neuron (3) prefers 2
    res = congruence_of(C, n_layers=2, k=2)
    table = pairs_table(tokens_table(res, ["a", "b", "c"]), neurons_table(res, no_entropy(res.neuron_top_ids.shape[0])))
    assert [(r["layer"], r["neuron"], r["token_id"], r["score"]) for r in table.to_pylist()] == [
        (1, 1, 2, 1.0 * 6.0), (1, 0, 0, 3.0 * 1.0)]
    neurons = neurons_table(res, no_entropy(res.neuron_top_ids.shape[0]))
    empty = pairs_table(tokens_table(res, ["a", "b", "c"]).slice(0, 0), neurons)
    assert empty.num_rows == 0 and empty.schema.field("score").type == pa.float64()


def test_planted_token_neurons_top_the_pairs(demo_congruence, ground_truth):
    """demo-planted: the planted token-neuron pairs are exactly the top of pairs.parquet."""
    pairs = pairs_table(demo_congruence["tokens"], demo_congruence["neurons"]).to_pylist()
    planted = {(n["layer"], n["neuron"], n["token_id"]) for n in ground_truth["token_neurons"]}
    top = pairs[:len(planted)]
    assert {(r["layer"], r["neuron"], r["token_id"]) for r in top} == planted
    assert [r["rank"] for r in top] == list(range(1, len(planted) + 1))
    # and they stand far above the rest
    assert min(r["score"] for r in top) > 10 * pairs[len(planted)]["score"]
    by_id = {n["token_id"]: n["token_str"] for n in ground_truth["token_neurons"]}
    assert all(r["token_str"] == by_id[r["token_id"]] for r in top)
