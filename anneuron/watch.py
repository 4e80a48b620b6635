"""Which neurons the dataset pass watches, and which token each one's proportion curve uses (DESIGN §7 `watch`).

Watched = the top `watch.top_pairs` mutually exclusive pairs (by rank) followed by the neurons listed for the model
in `watch.neurons` that are not already among them. The order is fixed (pairs by rank, then the config's order)
so the `L{l}N{n}` columns of every token table come out the same on every run.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import pyarrow.parquet as pq


@dataclass(frozen=True)
class Watched:
    """One watched neuron; `token_id`/`token_str` are the token its curve uses (None until resolved)."""

    layer: int
    neuron: int
    token_id: int | None = None
    token_str: str | None = None
    pair_rank: int | None = None  # rank in pairs.parquet if it is one of the watched pairs
    token_source: str | None = None  # "config", "pair" or "congruence"

    @property
    def name(self) -> str:
        return f"L{self.layer}N{self.neuron}"


def neuron_name(layer: int, neuron: int) -> str:
    return f"L{layer}N{neuron}"


def watch_list(pairs_path: str | Path | None, entries: list[tuple[int, int, str | None]], top_pairs: int,
               tokenizer=None) -> list[Watched]:
    """The watched neurons, in column order.

    `entries` are (layer, neuron, token string or None) from anneuron.config.watch_entries. A token named in
    the config wins over the pair's token; names are turned into ids only when a tokenizer is given.
    """
    out: dict[tuple[int, int], Watched] = {}
    if pairs_path is not None and top_pairs > 0:
        t = pq.read_table(pairs_path, columns=["rank", "layer", "neuron", "token_id", "token_str"])
        rows = sorted(zip(*(t.column(c).to_pylist() for c in ("rank", "layer", "neuron", "token_id", "token_str"))))
        for rank, layer, neuron, tid, tstr in rows[:top_pairs]:
            out.setdefault((int(layer), int(neuron)),
                           Watched(int(layer), int(neuron), int(tid), tstr, int(rank), "pair"))
    for layer, neuron, tok in entries:
        key = (layer, neuron)
        w = out.get(key, Watched(layer, neuron))
        if tok is not None:
            tid = None
            if tokenizer is not None:
                ids = tokenizer.encode(tok, add_special_tokens=False)
                if len(ids) != 1:
                    raise ValueError(f"watch.neurons: {tok!r} (for {w.name}) is {len(ids)} tokens, must be one")
                tid = ids[0]
            w = replace(w, token_id=tid, token_str=tok, token_source="config")
        out[key] = w
    return list(out.values())


def check_in_range(watched: list[Watched], n_layers: int, d_mlp: int) -> None:
    for w in watched:
        if not (0 <= w.layer < n_layers and 0 <= w.neuron < d_mlp):
            raise ValueError(f"watched neuron {w.name} does not exist (model has {n_layers} layers x {d_mlp})")


def resolve_tokens(watched: list[Watched], neurons_path: str | Path | None, tokenizer) -> list[Watched]:
    """Give every watched neuron without a token its top congruent token (neurons.parquet top_token_ids[0])."""
    missing = {(w.layer, w.neuron) for w in watched if w.token_id is None}
    if not missing:
        return watched
    if neurons_path is None:
        raise ValueError(f"watched neurons {sorted(missing)} have no token and no neurons.parquet was given")
    t = pq.read_table(neurons_path, columns=["layer", "neuron", "top_token_ids"])
    top = {}
    for layer, neuron, ids in zip(*(t.column(c).to_pylist() for c in ("layer", "neuron", "top_token_ids"))):
        if (layer, neuron) in missing:
            top[(layer, neuron)] = int(ids[0])
    out = []
    for w in watched:
        if w.token_id is None:
            if (w.layer, w.neuron) not in top:
                raise ValueError(f"watched neuron {w.name} is not in {neurons_path}")
            tid = top[(w.layer, w.neuron)]
            w = replace(w, token_id=tid, token_str=tokenizer.decode([tid]), token_source="congruence")
        out.append(w)
    return out
