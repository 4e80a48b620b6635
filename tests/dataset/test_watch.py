"""The watch list: top pairs by rank, then the config's neurons, then experiment standouts; each curve's token."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from anneuron.dataset.watch import read_watched, resolve_tokens, watch_list, watched_table
from anneuron.experiments.standouts import standout_entries
from anneuron.tokenizer import gpt2_tokenizer


@pytest.fixture
def weights(tmp_path):
    pairs = pa.table({"rank": [2, 1, 3], "layer": [1, 2, 0], "neuron": [421, 892, 137],
                      "token_id": [996, 281, 14], "token_str": [" though", " an", "/"],
                      "congruence": [1.0, 2.0, 0.5], "d_neu": [1.0] * 3, "d_tok": [1.0] * 3,
                      "score": [2.0, 3.0, 1.0]})
    neurons = pa.table({"layer": [3, 3], "neuron": [500, 77], "top_token_ids": [[3797, 1], [572, 2]]})
    pq.write_table(pairs, tmp_path / "pairs.parquet")
    pq.write_table(neurons, tmp_path / "neurons.parquet")
    return tmp_path


def test_order_and_tokens(weights):
    tok = gpt2_tokenizer()
    entries = [(2, 892, " a"), (3, 500, None), (1, 421, None)]
    w = watch_list(weights / "pairs.parquet", entries, top_pairs=2, tokenizer=tok, n_standouts=0)
    assert [x.name for x in w] == ["L2N892", "L1N421", "L3N500"]
    assert (w[0].token_id, w[0].token_str, w[0].token_source) == (257, " a", "config")  # config wins
    assert (w[1].token_id, w[1].token_source, w[1].pair_rank) == (996, "pair", 2)
    assert w[2].token_id is None
    w = resolve_tokens(w, weights / "neurons.parquet", tok)
    assert (w[2].token_id, w[2].token_str, w[2].token_source) == (3797, " cat", "congruence")


def test_no_pairs_and_errors(weights):
    assert [x.name for x in watch_list(weights / "pairs.parquet", [], top_pairs=0, n_standouts=0)] == []
    assert len(watch_list(weights / "pairs.parquet", [], top_pairs=10, n_standouts=0)) == 3
    with pytest.raises(ValueError, match="is 3 tokens, must be one"):
        watch_list(None, [(0, 1, " anneuron")], 0, tokenizer=gpt2_tokenizer(), n_standouts=0)
    with pytest.raises(ValueError, match="L0N9 is not in"):
        resolve_tokens(watch_list(None, [(0, 9, None)], 0, n_standouts=0), weights / "neurons.parquet",
                       gpt2_tokenizer())


def _neurons(path, rows):
    """An experiment's neurons.parquet with the given (layer, neuron, exact, standout) rows."""
    layer, neuron, exact, standout = zip(*rows)
    pq.write_table(pa.table({"layer": layer, "neuron": neuron, "attribution": [x or 0.5 for x in exact],
                             "exact": pa.array(exact, pa.float64()), "standout_z": [10.0] * len(rows),
                             "standout": standout}), path)
    return path


def test_standouts_rank_by_experiments_then_effect(tmp_path):
    experiments = {"an_a": {"answer": " an", "wrong": " a"}, "though": {"answer": " though", "wrong": " even"}}
    files = {
        "an_a": _neurons(tmp_path / "a.parquet", [(1, 37, 0.39, True), (1, 21, 0.6, True), (0, 5, 0.9, False),
                                                 (1, 8, 0.05, True)]),
        "though": _neurons(tmp_path / "t.parquet", [(1, 37, 0.10, True), (1, 8, 0.3, True), (1, 21, 0.01, False),
                                                    (0, 9, None, True)]),
    }
    # L1N37 and L1N8 stand out twice (L1N37's best is in an_a, L1N8's in though: their tokens); L1N21 once (the
    # largest |exact| of all, but one experiment); L0N9 once, on its attribution (0.5, no exact); L0N5 never.
    answers = {e: x["answer"] for e, x in experiments.items()}
    assert standout_entries(files, answers) == [(1, 37, " an"), (1, 8, " though"), (1, 21, " an"),
                                                    (0, 9, " though")]
    assert standout_entries({}, answers) == []


def test_standouts_add_n_new_neurons(weights):
    tok = gpt2_tokenizer()
    standouts = [(2, 892, " a"), (3, 500, " the"), (4, 4, " the"), (0, 1, " an"), (0, 2, " an")]
    w = watch_list(weights / "pairs.parquet", [(3, 500, " cat"), (4, 4, None)], top_pairs=1, tokenizer=tok,
                   standouts=standouts, n_standouts=1)
    assert [x.name for x in w] == ["L2N892", "L3N500", "L4N4", "L0N1"]  # L0N2 would be a second new one
    assert (w[0].token_str, w[0].token_source) == (" an", "pair")  # a pair keeps its token
    assert (w[1].token_str, w[1].token_source) == (" cat", "config")  # and a config entry its own
    assert (w[2].token_str, w[2].token_source) == (" the", "experiment")  # listed without one: the standout's
    assert (w[3].token_id, w[3].token_str, w[3].token_source) == (281, " an", "experiment")
    assert [x.name for x in watch_list(None, [], 0, standouts=standouts, n_standouts=0)] == []


def test_watch_rule_script_writes_who_is_watched_and_why(weights, tmp_path):
    """scripts/watch.py (the `watch` rule): standouts of stable experiments only (an experiment whose LD gap is
    < 0.5 nominates no one), every token resolved, and the table says why each neuron is watched."""
    import json
    import runpy
    from types import SimpleNamespace

    answers = {"an_a": " an", "noise": " big"}  # each experiment's summary.json says what it ran with
    inputs = SimpleNamespace(pairs=str(weights / "pairs.parquet"), stats=str(weights / "neurons.parquet"),
                             standouts=[], standout_checks=[])
    for name, rows, gap in (("an_a", [(1, 37, 0.4, True)], 9.0), ("noise", [(1, 124, 3.2, True)], 0.0003)):
        inputs.standouts.append(_neurons(tmp_path / f"{name}.parquet", rows))
        inputs.standout_checks.append(tmp_path / f"{name}.json")
        inputs.standout_checks[-1].write_text(json.dumps({"ld_clean": gap, "ld_corrupted": 0.0,
                                                          "answer": answers[name]}))
    cfg = dict(top_pairs=1, standouts=5, neurons=[[3, 500, None]])
    out = SimpleNamespace(table=str(tmp_path / "watched.parquet"), config=str(tmp_path / "watch.config.json"))
    fake = SimpleNamespace(input=inputs, output=out, log=[], params=SimpleNamespace(
        model="gpt2", cfg=cfg, experiments=list(answers)))
    scripts = Path(__file__).resolve().parents[2] / "scripts"
    runpy.run_path(str(scripts / "watch.py"), init_globals={"snakemake": fake})
    rows = pq.read_table(out.table).to_pylist()
    assert [(r["rank"], r["layer"], r["neuron"], r["source"], r["token_str"], r["token_source"]) for r in rows] == [
        (1, 2, 892, "pair", " an", "pair"), (2, 3, 500, "config", " cat", "congruence"),
        (3, 1, 37, "standout", " an", "experiment")]
    assert [w.name for w in read_watched(out.table)] == ["L2N892", "L3N500", "L1N37"]
    written = json.loads(Path(out.config).read_text())
    assert written["config"]["top_pairs"] == 1 and written["experiments"] == answers


def test_watched_table_round_trips(weights):
    w = watch_list(weights / "pairs.parquet", [(0, 1, " an")], top_pairs=2, tokenizer=gpt2_tokenizer(),
                   n_standouts=0)
    assert read_watched_table(watched_table(w)) == w


def read_watched_table(table):
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        pq.write_table(table, Path(d) / "w.parquet")
        return read_watched(Path(d) / "w.parquet")
