"""Which neurons the dataset pass watches, and which token each one's proportion curve uses (docs/config.md `watch`).

Watched = the top `watch.top_pairs` mutually exclusive pairs (by rank), then the neurons listed for the model in
`watch.neurons`, then (with `watch.standouts` > 0) the neurons that stand out in the prompt experiments, each only
once. The order is fixed (pairs by rank, the config's order, standouts by rank) so the `L{l}N{n}` columns of every
token table come out the same on every run.

Standouts exist because congruence alone can miss a neuron that matters: where two tokens share one direction
(" a" and " an" in demo-emergent) the weights pass credits a generic neuron, while patching finds the specific one.
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
    token_source: str | None = None  # "config", "pair", "experiment" or "congruence"

    @property
    def name(self) -> str:
        return f"L{self.layer}N{self.neuron}"


def neuron_name(layer: int, neuron: int) -> str:
    return f"L{layer}N{neuron}"


def standout_entries(neuron_files: dict[str, str | Path], experiments: dict[str, dict]) -> list[tuple[int, int, str]]:
    """(layer, neuron, token) of every neuron standing out in an experiment: most experiments first, ties by the
    largest |exact| (attribution where none), then by (layer, neuron).

    `neuron_files` maps experiment name → its neurons.parquet; `experiments` is the config's `experiments:`. The
    token is the answer of the experiment where the neuron's |exact| is largest (standouts are one-sided: patching
    them moves LD towards the answer), so the curve asks "does this neuron track the token the experiment is about?"
    and a neuron that helps by switching off gets a falling curve.
    """
    found: dict[tuple[int, int], list] = {}  # (layer, neuron) -> [n experiments, best |exact|, its token]
    for exp, path in neuron_files.items():
        t = pq.read_table(path, columns=["layer", "neuron", "attribution", "exact", "standout"],
                          filters=[("standout", "=", True)])
        cols = (t.column(c).to_pylist() for c in ("layer", "neuron", "attribution", "exact"))
        for layer, neuron, attribution, exact in zip(*cols):
            score = abs(attribution if exact is None else exact)  # what its standout flag was judged on
            entry = found.setdefault((int(layer), int(neuron)), [0, -1.0, None])
            entry[0] += 1
            if score > entry[1]:
                entry[1], entry[2] = score, experiments[exp]["answer"]
    ranked = sorted(found.items(), key=lambda kv: (-kv[1][0], -kv[1][1], kv[0]))
    return [(layer, neuron, tok) for (layer, neuron), (_, _, tok) in ranked]


def watch_list(pairs_path: str | Path | None, entries: list[tuple[int, int, str | None]], top_pairs: int,
               tokenizer=None, standouts: list[tuple[int, int, str]] = (), n_standouts: int = 0) -> list[Watched]:
    """The watched neurons, in column order.

    `entries` are (layer, neuron, token string or None) from anneuron.config.watch_entries. A token named in
    the config wins over the pair's token; names are turned into ids only when a tokenizer is given. From
    `standouts` (standout_entries, best first) the first `n_standouts` neurons not watched already are added; a
    standout the config lists without a token takes the standout's token.
    """
    out: dict[tuple[int, int], Watched] = {}
    if pairs_path is not None and top_pairs > 0:
        t = pq.read_table(pairs_path, columns=["rank", "layer", "neuron", "token_id", "token_str"])
        rows = sorted(zip(*(t.column(c).to_pylist() for c in ("rank", "layer", "neuron", "token_id", "token_str"))))
        for rank, layer, neuron, tid, tstr in rows[:top_pairs]:
            out.setdefault((int(layer), int(neuron)),
                           Watched(int(layer), int(neuron), int(tid), tstr, int(rank), "pair"))
    for layer, neuron, tok in entries:
        out[(layer, neuron)] = _with_token(out.get((layer, neuron), Watched(layer, neuron)), tok, "config", tokenizer)
    added = 0
    for layer, neuron, tok in standouts:
        if added == n_standouts:
            break
        w = out.get((layer, neuron))
        if w is None:
            added += 1
            w = Watched(layer, neuron)
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
