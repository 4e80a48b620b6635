"""The watch list: top pairs by rank, then the config's neurons; the token each curve uses."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from anneuron.tokenizer import gpt2_tokenizer
from anneuron.watch import resolve_tokens, watch_list


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
    w = watch_list(weights / "pairs.parquet", entries, top_pairs=2, tokenizer=tok)
    assert [x.name for x in w] == ["L2N892", "L1N421", "L3N500"]
    assert (w[0].token_id, w[0].token_str, w[0].token_source) == (257, " a", "config")  # config wins
    assert (w[1].token_id, w[1].token_source, w[1].pair_rank) == (996, "pair", 2)
    assert w[2].token_id is None
    w = resolve_tokens(w, weights / "neurons.parquet", tok)
    assert (w[2].token_id, w[2].token_str, w[2].token_source) == (3797, " cat", "congruence")


def test_no_pairs_and_errors(weights):
    assert [x.name for x in watch_list(weights / "pairs.parquet", [], top_pairs=0)] == []
    assert len(watch_list(weights / "pairs.parquet", [], top_pairs=10)) == 3
    with pytest.raises(ValueError, match="is 3 tokens, must be one"):
        watch_list(None, [(0, 1, " anneuron")], 0, tokenizer=gpt2_tokenizer())
    with pytest.raises(ValueError, match="L0N9 is not in"):
        resolve_tokens(watch_list(None, [(0, 9, None)], 0), weights / "neurons.parquet", gpt2_tokenizer())
