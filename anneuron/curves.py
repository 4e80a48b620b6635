"""Proportion curves and predicted-vs-occurred counts from the dataset pass's token tables (docs/science.md, docs/contracts.md).

Proportion curve of a watched neuron n and its token t: positions (BOS excluded) binned by n's activation in
fixed-width bins anchored at 0, [k·w, (k+1)·w); per bin `count`, `hits` (positions whose top-1 prediction is t)
and proportion = hits / count, null where count < min_count. The bins run from the lowest populated one to the
highest (empty bins between them included, with count 0).
Predicted vs occurred for every token t: predicted = positions (BOS excluded) whose top prediction is t,
occurred = positions (BOS excluded) whose next token is t; `predicted_post` likewise with `pred_post`.

Streams the token tables by record batch: memory is one batch plus the counters.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from anneuron.watch import Watched

CURVES_SCHEMA = pa.schema([
    ("layer", pa.int32()), ("neuron", pa.int32()), ("token_id", pa.int32()), ("token_str", pa.string()),
    ("bin_lo", pa.float64()), ("bin_hi", pa.float64()), ("count", pa.int64()), ("hits", pa.int64()),
    ("proportion", pa.float64()),
])


def bin_index(values: np.ndarray, bin_width: float) -> np.ndarray:
    """k such that value lies in [k·w, (k+1)·w) (computed in float64)."""
    return np.floor(values.astype(np.float64) / bin_width).astype(np.int64)


class _Bins:
    """count and hits per bin index k, for one neuron, accumulated over batches."""

    def __init__(self):
        self.count: dict[int, int] = {}
        self.hits: dict[int, int] = {}

    def add(self, k: np.ndarray, hit: np.ndarray) -> None:
        for store, ks in ((self.count, k), (self.hits, k[hit])):
            u, c = np.unique(ks, return_counts=True)
            for a, b in zip(u.tolist(), c.tolist()):
                store[a] = store.get(a, 0) + b


def summarize(token_paths: list[str | Path], watched: list[Watched], bin_width: float, min_count: int,
              tokenizer, vocab_size: int | None = None, progress: bool = True) -> tuple[pa.Table, pa.Table]:
    """One streaming pass over the token tables -> (curves table, predictions table).

    `watched` must have their tokens resolved (anneuron.watch.resolve_tokens). predictions has one row per
    token id 0..vocab_size-1 (default: the tokenizer's size), sorted by token_id.
    """
    names = [w.name for w in watched]
    schema = pq.ParquetFile(token_paths[0]).schema_arrow if token_paths else pa.schema([])
    missing = [n for n in names if n not in schema.names]
    if missing:
        raise ValueError(f"token tables have no column for watched neuron(s) {', '.join(missing)}: "
                         "rerun `record` with the same watch list")
    has_post = "pred_post" in schema.names
    V = vocab_size or len(tokenizer)
    predicted = np.zeros(V, np.int64)
    occurred = np.zeros(V, np.int64)
    predicted_post = np.zeros(V, np.int64)
    bins = {n: _Bins() for n in names}
    cols = ["pos", "pred", "next_token"] + (["pred_post"] if has_post else []) + names
    total = sum(pq.ParquetFile(p).metadata.num_rows for p in token_paths)
    bar = tqdm(total=total, desc="curves", unit="pos", unit_scale=True, mininterval=2, disable=not progress)
    for path in token_paths:
        for batch in pq.ParquetFile(path).iter_batches(batch_size=65536, columns=cols):
            keep = batch.column("pos").to_numpy() >= 1
            pred = batch.column("pred").to_numpy()[keep]
            nxt = pc.fill_null(batch.column("next_token"), -1).to_numpy()[keep]
            predicted += np.bincount(pred, minlength=V)[:V]
            occurred += np.bincount(nxt[nxt >= 0], minlength=V)[:V]
            if has_post:
                predicted_post += np.bincount(batch.column("pred_post").to_numpy()[keep], minlength=V)[:V]
            for w in watched:
                a = batch.column(w.name).to_numpy(zero_copy_only=False)[keep]
                ok = np.isfinite(a)
                bins[w.name].add(bin_index(a[ok], bin_width), (pred == w.token_id)[ok])
            bar.update(batch.num_rows)
    bar.close()
    return curves_table(watched, bins, bin_width, min_count), predictions_table(
        predicted, occurred, predicted_post if has_post else None, tokenizer)


def curves_table(watched: list[Watched], bins: dict[str, _Bins], bin_width: float, min_count: int) -> pa.Table:
    cols: dict[str, list] = {f.name: [] for f in CURVES_SCHEMA}
    for w in watched:
        b = bins[w.name]
        if not b.count:
            continue
        for k in range(min(b.count), max(b.count) + 1):
            count, hits = b.count.get(k, 0), b.hits.get(k, 0)
            for name, v in (("layer", w.layer), ("neuron", w.neuron), ("token_id", w.token_id),
                            ("token_str", w.token_str), ("bin_lo", k * bin_width), ("bin_hi", (k + 1) * bin_width),
                            ("count", count), ("hits", hits),
                            ("proportion", hits / count if count >= min_count else None)):
                cols[name].append(v)
    return pa.table(cols, schema=CURVES_SCHEMA)


def token_strings(tokenizer, n: int) -> list[str]:
    """Each token id decoded on its own (as a column of a table, not as running text)."""
    return tokenizer.batch_decode([[i] for i in range(n)], skip_special_tokens=False,
                                  clean_up_tokenization_spaces=False)


def predictions_table(predicted: np.ndarray, occurred: np.ndarray, predicted_post: np.ndarray | None,
                      tokenizer) -> pa.Table:
    V = len(predicted)
    cols = {"token_id": pa.array(np.arange(V, dtype=np.int32)), "token_str": pa.array(token_strings(tokenizer, V)),
            "predicted": pa.array(predicted), "occurred": pa.array(occurred)}
    if predicted_post is not None:
        cols["predicted_post"] = pa.array(predicted_post)
    return pa.table(cols)
