"""Merging one model's tiles (against every other model of its group) into its universality tables: per (neuron,
other model) the max correlation and its twin, the min, the baseline max; per neuron ϱ, the baseline's ϱ, the
excess and the universal flag; the top cross-model pairs (docs/contracts.md, docs/science.md "Universality").

Ties: the twin is the other model's lowest flat neuron that attains the max (tiles are merged in flat order and a
later tile wins only with a strictly larger ρ), so the result does not depend on how the neurons were tiled.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pyarrow as pa

from anneuron import contracts as K
from anneuron.io import InputError, open_parquet, read_parquet, write_parquet


@dataclass(frozen=True)
class TileFile:
    """One tile's two files and which side of it the merged model is (`a` or `b`)."""

    neurons: str | Path
    pairs: str | Path
    side: str


@dataclass(frozen=True)
class Other:
    """Another model of the group: its id, d_mlp and this model's tiles against it (in flat block order)."""

    model_id: str
    d_mlp: int
    tiles: Sequence[TileFile]


def _tokens(path: str | Path) -> int:
    meta = open_parquet(path, K.UNIVERSALITY_TILE).schema_arrow.metadata or {}
    return int(meta.get(b"n_tokens", b"-1"))


def merge_other(n_neurons: int, other: Other) -> dict[str, np.ndarray]:
    """Per flat neuron of this model against `other`: max_corr, argmax (other's flat), min_corr, baseline_max."""
    out = dict(max_corr=np.full(n_neurons, -np.inf), argmax=np.full(n_neurons, -1, np.int64),
               min_corr=np.full(n_neurons, np.inf), baseline_max=np.full(n_neurons, -np.inf))
    for t in other.tiles:
        d = read_parquet(t.neurons, schema=K.UNIVERSALITY_TILE,
                         filters=[("side", "=", t.side)]).to_pydict()
        f = np.asarray(d["flat"])
        mx = np.asarray(d["max_corr"])
        better = mx > out["max_corr"][f]
        out["max_corr"][f[better]] = mx[better]
        out["argmax"][f[better]] = np.asarray(d["argmax"])[better]
        out["min_corr"][f] = np.minimum(out["min_corr"][f], d["min_corr"])
        out["baseline_max"][f] = np.fmax(out["baseline_max"][f], d["baseline_max_corr"])
    missing = np.flatnonzero(out["argmax"] < 0)
    if missing.size:
        raise InputError(f"universality: the tiles against {other.model_id} do not cover neuron flat {missing[0]}")
    return out


def merge(model_d_mlp: int, n_neurons: int, others: Sequence[Other], threshold: float,
          top_k: int) -> tuple[pa.Table, pa.Table, pa.Table]:
    """(neurons, summary, pairs) tables of one model."""
    counts = {_tokens(t.neurons) for o in others for t in o.tiles}
    if len(counts) != 1:
        raise InputError(f"universality: tiles were computed over different token counts {sorted(counts)}; "
                         "rerun them with one universality.max_tokens")
    flat = np.arange(n_neurons)
    layer, neuron = (flat // model_d_mlp).astype(np.int32), (flat % model_d_mlp).astype(np.int32)
    rows, maxes, bases = [], [], []
    for o in sorted(others, key=lambda o: o.model_id):
        m = merge_other(n_neurons, o)
        maxes.append(m["max_corr"])
        bases.append(m["baseline_max"])
        rows.append(dict(layer=layer, neuron=neuron, other_model=[o.model_id] * n_neurons, max_corr=m["max_corr"],
                         max_layer=(m["argmax"] // o.d_mlp).astype(np.int32),
                         max_neuron=(m["argmax"] % o.d_mlp).astype(np.int32), min_corr=m["min_corr"],
                         baseline_max_corr=m["baseline_max"]))
    # one row per (neuron, other model): neuron-major, others in id order
    order = np.lexsort((np.repeat(np.arange(len(rows)), n_neurons), np.tile(flat, len(rows))))
    cols = {k: np.concatenate([np.asarray(r[k]) for r in rows])[order] for k in rows[0]}
    neurons = pa.Table.from_pydict(cols, schema=K.UNIVERSALITY_NEURONS)
    varrho, base = np.mean(maxes, 0), np.mean(bases, 0)
    summary = pa.Table.from_pydict(dict(layer=layer, neuron=neuron, varrho=varrho, baseline_varrho=base,
                                        excess=varrho - base, universal=varrho > threshold),
                                   schema=K.UNIVERSALITY_SUMMARY)
    return neurons, summary, top_pairs(model_d_mlp, others, top_k)


def top_pairs(model_d_mlp: int, others: Sequence[Other], top_k: int) -> pa.Table:
    """The top_k pairs (this model's neuron, another model's neuron) by ρ over every other model; ties by (other
    model, this neuron, its neuron)."""
    mine, theirs, corr, who, d_other = [], [], [], [], []
    for rank_o, o in enumerate(sorted(others, key=lambda o: o.model_id)):
        for t in o.tiles:
            d = read_parquet(t.pairs, schema=K.UNIVERSALITY_TILE_PAIRS).to_pydict()
            a, b = np.asarray(d["a_flat"]), np.asarray(d["b_flat"])
            mine.append(a if t.side == "a" else b)
            theirs.append(b if t.side == "a" else a)
            corr.append(np.asarray(d["corr"]))
            who.append(np.full(a.size, rank_o))
            d_other.append(np.full(a.size, o.d_mlp))
    mine, theirs, corr, who, d_other = map(np.concatenate, (mine, theirs, corr, who, d_other))
    order = np.lexsort((theirs, mine, who, -corr))[:top_k]
    ids = [o.model_id for o in sorted(others, key=lambda o: o.model_id)]
    return pa.Table.from_pydict(dict(
        rank=np.arange(1, order.size + 1, dtype=np.int32), layer=(mine[order] // model_d_mlp).astype(np.int32),
        neuron=(mine[order] % model_d_mlp).astype(np.int32), other_model=[ids[w] for w in who[order]],
        other_layer=(theirs[order] // d_other[order]).astype(np.int32),
        other_neuron=(theirs[order] % d_other[order]).astype(np.int32), corr=corr[order]), schema=K.UNIVERSALITY_PAIRS)


def merge_model(d_mlp: int, n_neurons: int, others: dict[str, int], tiles: dict[str, list], threshold: float,
                top_k: int, out_neurons: str | Path, out_summary: str | Path, out_pairs: str | Path) -> dict:
    """The `universality` job: `others` = other id -> its d_mlp, `tiles` = other id -> [side, [[a, b, i, j], ...]]
    (anneuron.universality.plan.tiles_of, in merge order); writes the three tables, returns counts."""
    from anneuron.contracts import path

    objs = [Other(o, others[o], [TileFile(path("universality_tile", model=a, other=b, i=i, j=j),
                                          path("universality_tile_pairs", model=a, other=b, i=i, j=j), side)
                                 for a, b, i, j in tiles[o][1]])
            for o, (side, _) in tiles.items()]
    neurons, summary, pairs = merge(d_mlp, n_neurons, objs, threshold, top_k)
    for out, table in ((out_neurons, neurons), (out_summary, summary), (out_pairs, pairs)):
        write_parquet(out, table)
    universal = summary.column("universal").to_numpy(zero_copy_only=False)
    return dict(neurons=n_neurons, others=sorted(others), universal=int(universal.sum()))
