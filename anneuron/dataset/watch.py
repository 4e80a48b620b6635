"""Which neurons the dataset pass watches, and which token each one's proportion curve uses (docs/config.md `watch`).

Watched = the top `watch.top_pairs` mutually exclusive pairs (by rank), then the neurons listed for the model in
`watch.neurons`, then (with `watch.standouts` > 0) the neurons that stand out in the prompt experiments, each only
once. The order is fixed (pairs by rank, the config's order, standouts by rank) so the `L{l}N{n}` columns of every
token table come out the same on every run.

Standouts exist because congruence alone can miss a neuron that matters: where two tokens share one direction
(" a" and " an" in demo-emergent) the weights pass credits a generic neuron, while patching finds the specific one.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from pathlib import Path

import pyarrow as pa

from anneuron.contracts import WATCHED, neuron_name
from anneuron.io import read_parquet


@dataclass(frozen=True)
class Watched:
    """One watched neuron; `token_id`/`token_str` are the token its curve uses (None until resolved)."""

    layer: int
    neuron: int
    token_id: int | None = None
    token_str: str | None = None
    pair_rank: int | None = None  # rank in pairs.parquet if it is one of the watched pairs
    token_source: str | None = None  # "config", "pair", "experiment" or "congruence"
    source: str = "config"  # why it is watched: "pair", "config" or "standout" (contracts.WATCH_SOURCES)

    @property
    def name(self) -> str:
        return neuron_name(self.layer, self.neuron)


def watch_list(pairs_path: str | Path | None, entries: list[tuple[int, int, str | None]], top_pairs: int, *,
               n_standouts: int, standouts: list[tuple[int, int, str]] = (), tokenizer=None) -> list[Watched]:
    """The watched neurons, in column order.

    `entries` are (layer, neuron, token string or None) from anneuron.config.watch_entries; `standouts` come from
    anneuron.experiments.standouts.standout_entries. A token named in
    the config wins over the pair's token; names are turned into ids only when a tokenizer is given. From
    `standouts` (standout_entries, best first) the first `n_standouts` neurons not watched already are added; a
    standout the config lists without a token takes the standout's token.
    """
    out: dict[tuple[int, int], Watched] = {}
    if pairs_path is not None and top_pairs > 0:
        t = read_parquet(pairs_path, columns=["rank", "layer", "neuron", "token_id", "token_str"])
        rows = sorted(zip(*(t.column(c).to_pylist() for c in ("rank", "layer", "neuron", "token_id", "token_str"))))
        for rank, layer, neuron, tid, tstr in rows[:top_pairs]:
            out.setdefault((int(layer), int(neuron)),
                           Watched(int(layer), int(neuron), int(tid), tstr, int(rank), "pair", "pair"))
    for layer, neuron, tok in entries:
        out[(layer, neuron)] = _with_token(out.get((layer, neuron), Watched(layer, neuron)), tok, "config", tokenizer)
    added = 0
    for layer, neuron, tok in standouts:
        if added == n_standouts:
            break
        w = out.get((layer, neuron))
        if w is None:
            added += 1
            w = Watched(layer, neuron, source="standout")
        if w.token_str is None:
            out[(layer, neuron)] = _with_token(w, tok, "experiment", tokenizer)
    return list(out.values())


def _with_token(w: Watched, tok: str | None, source: str, tokenizer) -> Watched:
    """`w` with the token `tok` (from `source`), unless tok is None; its id only when a tokenizer is given."""
    if tok is None:
        return w
    return replace(w, token_id=_token_id(tokenizer, tok, w.name), token_str=tok, token_source=source)


def _token_id(tokenizer, tok: str, name: str) -> int | None:
    if tokenizer is None:
        return None
    ids = tokenizer.encode(tok, add_special_tokens=False)
    if len(ids) != 1:
        raise ValueError(f"watch.neurons: {tok!r} (for {name}) is {len(ids)} tokens, must be one")
    return ids[0]


def resolve_tokens(watched: list[Watched], neurons_path: str | Path | None, tokenizer) -> list[Watched]:
    """Give every watched neuron without a token its top congruent token (top_token_ids[0] of a neuron table:
    neuron_stats.parquet or neurons.parquet)."""
    missing = {(w.layer, w.neuron) for w in watched if w.token_id is None}
    if not missing:
        return watched
    if neurons_path is None:
        raise ValueError(f"watched neurons {sorted(missing)} have no token and no neuron table was given")
    t = read_parquet(neurons_path, columns=["layer", "neuron", "top_token_ids"])
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


def watched_table(watched: list[Watched]) -> pa.Table:
    """The `watched` table (docs/contracts.md): one row per watched neuron, `rank` = its place in the list (the
    column order of the dataset pass's token tables), every token resolved."""
    rows = [dict(rank=i, layer=w.layer, neuron=w.neuron, token_id=w.token_id, token_str=w.token_str, source=w.source,
                 token_source=w.token_source, pair_rank=w.pair_rank) for i, w in enumerate(watched, start=1)]
    return pa.Table.from_pylist(rows, schema=WATCHED)


def read_watched(path: str | Path) -> list[Watched]:
    """The watch list written by the `watch` rule, in its order."""
    names = {f.name for f in fields(Watched)}
    rows = sorted(read_parquet(path).to_pylist(), key=lambda r: r["rank"])
    return [Watched(**{k: v for k, v in r.items() if k in names}) for r in rows]
