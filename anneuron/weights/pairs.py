"""Mutually exclusive neuron-token pairs (docs/science.md): neuron n and token t such that t is n's most congruent token
AND n is t's most congruent neuron. Ranked by score = d_neu[n] * d_tok[t] (how far each stands above its runner-up),
rank 1 = best. The post's top pair on GPT-2 Large: "i" - L33N4142, 7.467."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from anneuron.contracts import PAIRS


def mutual_pairs(token_top1: np.ndarray, neuron_top1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(neurons, tokens) of the mutually exclusive pairs, unranked.

    token_top1: (V,) flat id of each token's most congruent neuron; neuron_top1: (N,) each neuron's top token."""
    tokens = np.arange(len(token_top1))
    mutual = neuron_top1[token_top1] == tokens
    return token_top1[mutual], tokens[mutual]


def pairs_table(tokens: pa.Table, neurons: pa.Table) -> pa.Table:
    """The ranked pairs (docs/contracts.md columns) from the weights pass tables: tokens.parquet and the neuron table
    (rows in flat-id order, layer * d_mlp + neuron)."""
    d_mlp = neurons.num_rows // (int(pc.max(neurons.column("layer")).as_py()) + 1)
    token_top1 = _first(tokens.column("top_neurons"))
    neuron_top1 = _first(neurons.column("top_token_ids"))
    n, t = mutual_pairs(token_top1, neuron_top1)
    d_neu = neurons.column("d_neu").to_numpy()[n].astype(np.float64)
    d_tok = tokens.column("d_tok").to_numpy()[t].astype(np.float64)
    score = d_neu * d_tok
    order = np.lexsort((t, -score))  # score descending, ties by token id
    n, t, d_neu, d_tok, score = n[order], t[order], d_neu[order], d_tok[order], score[order]
    congruence = _first(tokens.column("top_values"))[t]
    token_str = np.asarray(tokens.column("token_str").to_pylist(), dtype=object)[t]
    return pa.table({"rank": np.arange(1, len(n) + 1), "layer": n // d_mlp, "neuron": n % d_mlp, "token_id": t,
                     "token_str": list(token_str), "congruence": congruence, "d_neu": d_neu, "d_tok": d_tok,
                     "score": score}, schema=PAIRS)


def _first(col: pa.ChunkedArray) -> np.ndarray:
    """First element of every list in a list column, as numpy."""
    return pc.list_element(col, 0).to_numpy()
