"""Proportion curves and predicted-vs-occurred counts from the dataset pass's token tables (docs/science.md,
docs/contracts.md).

Proportion curve of a watched neuron n and its token t: positions binned by n's activation; per bin `count`,
`hits` (positions whose top-1 prediction is t) and proportion = hits / count. Two binnings:
- `floor` (default): BOS excluded, fixed-width bins anchored at 0, [k·w, (k+1)·w); proportion null where
  count < min_count;
- `post` (the post's notebook, an_neuron_investigation.ipynb cell 29): BOS included, the float32 activation rounded
  to one decimal *in float32* (`torch.round(a, decimals=1)` = rint(a·10) / 10, each step a float32 operation), then
  k = int(5 · that float32 value) in Python (float64 product, truncated toward zero). float32(1.4) is 1.39999998, so
  1.4 lands in bin 6, not 7: a bin k holds the rounded values m/10 with m in {2k, 2k+1, 2k+2} whose float32 times 5
  truncates to k, so bins are 0.1, 0.2 or 0.3 wide; bin_lo/bin_hi are (m_min ∓ 0.5)/10; no minimum count.
Two readouts of "top-1 prediction": `logits` (argmax of the real logits, `pred`) or `post` (the post's argmax of
ln_final.hook_normalized · W_E, `pred_post`, recorded with `record.pred_post`).
The bins run from the lowest populated one to the highest (empty bins between them included, with count 0).
Predicted vs occurred for every token t, two definitions (`curves.counts`, docs/science.md):
- `next` (default, the next-token counts): predicted = positions (BOS excluded) whose top prediction is t,
  occurred = positions (BOS excluded) whose next token is t (the row's last position: the token after the row,
  when the corpus has one);
- `post` (the notebook's counts, cell 29–30): predicted = every position, BOS included, whose top prediction is t
  (its "Top predictions", the sum of the hits over all bins); occurred = the positions whose *input* token is t
  (its "Actual occurances", `data_tokens.eq(t).sum()` over each row). They differ at the row edges: the row's first
  token counts, the token after the row does not.
`predicted_post` likewise with `pred_post`.

Streams the token tables by record batch: memory is one batch plus the counters.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from tqdm.auto import tqdm

from anneuron.contracts import CURVES, RECORD_BASE
from anneuron.dataset.watch import Watched
from anneuron.io import iter_parquet, open_parquet

CURVES_SCHEMA = CURVES


READOUTS = {"logits": "pred", "post": "pred_post"}  # curves.readout -> the token-table column it counts
COUNTS = ("next", "post")  # curves.counts: the definitions of predicted and occurred (module docstring)


def post_round(values: np.ndarray) -> np.ndarray:
    """The notebook's `torch.round(a, decimals=1)` on float32 activations: rint(a·10) / 10 (half to even), both
    steps float32 operations, as torch performs them (tests check the two agree on every value tried)."""
    a = np.asarray(values, dtype=np.float32)
    return np.rint(a * np.float32(10)) / np.float32(10)


def _post_bin_of_rounded(r: np.ndarray) -> np.ndarray:
    """int(value * 5) of the notebook's loop: the float32 value widened to a Python float, times 5, truncated."""
    return np.trunc(np.asarray(r, dtype=np.float32).astype(np.float64) * 5).astype(np.int64)


def bin_index(values: np.ndarray, bin_width: float, *, binning: str) -> np.ndarray:
    """The bin of each activation: `floor`: k with value in [k·w, (k+1)·w); `post`: the notebook's
    int(torch.round(a, decimals=1).item() * 5) for every float32 activation (module docstring)."""
    if binning == "post":
        return _post_bin_of_rounded(post_round(values))
    return np.floor(np.asarray(values, dtype=np.float64) / bin_width).astype(np.int64)


def bin_bounds(k: int, bin_width: float, *, binning: str) -> tuple[float, float]:
    """The activation interval of bin k. `post`: the tenths m/10 that land in bin k are found by the same
    arithmetic (an activation rounds to m when it lies in [(m − 0.5)/10, (m + 0.5)/10], ties to even m)."""
    if binning == "post":
        m = np.arange(2 * k - 3, 2 * k + 4)
        m = m[_post_bin_of_rounded(m.astype(np.float32) / np.float32(10)) == k]
        return (float(m.min()) - 0.5) / 10, (float(m.max()) + 0.5) / 10
    return k * bin_width, (k + 1) * bin_width


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
              tokenizer, *, readout: str, binning: str, counts: str, vocab_size: int | None = None,
              progress: bool = True) -> tuple[pa.Table, pa.Table]:
    """One streaming pass over the token tables -> (curves table, predictions table).

    `watched` must have their tokens resolved (anneuron.dataset.watch.resolve_tokens). predictions has one row per
    token id 0..vocab_size-1 (default: the tokenizer's size), sorted by token_id. `readout` and `binning` choose the
    curves' variant, `counts` the definition of predicted and occurred (module docstring).
    """
    names = [w.name for w in watched]
    schema = open_parquet(token_paths[0], RECORD_BASE).schema_arrow if token_paths else pa.schema([])
    missing = [n for n in names if n not in schema.names]
    if missing:
        raise ValueError(f"token tables have no column for watched neuron(s) {', '.join(missing)}: "
                         "rerun `record` with the same watch list")
    has_post = "pred_post" in schema.names
    if counts not in COUNTS:
        raise ValueError(f"curves.counts must be one of {', '.join(COUNTS)}, got {counts!r}")
    if readout == "post" and not has_post:
        raise ValueError("curves.readout: post counts pred_post, which the token tables lack: "
                         "rerun `record` with record.pred_post: true")
    hit_col = READOUTS[readout]
    V = vocab_size or len(tokenizer)
    predicted = np.zeros(V, np.int64)
    occurred = np.zeros(V, np.int64)
    predicted_post = np.zeros(V, np.int64)
    bins = {n: _Bins() for n in names}
    cols = ["pos", "token", "pred", "next_token"] + (["pred_post"] if has_post else []) + names
    total = sum(open_parquet(p, RECORD_BASE).metadata.num_rows for p in token_paths)
    bar = tqdm(total=total, desc="curves", unit="pos", unit_scale=True, mininterval=2, disable=not progress)
    for path in token_paths:
        for batch in iter_parquet(path, columns=cols, schema=RECORD_BASE, batch_size=65536):
            keep = batch.column("pos").to_numpy() >= 1
            curve_rows = np.ones_like(keep) if binning == "post" else keep  # the post kept BOS in its curves
            hit_pred = batch.column(hit_col).to_numpy()[curve_rows]
            if counts == "post":  # every position; occurred = the input tokens
                count_rows = np.ones_like(keep)
                seen = batch.column("token").to_numpy()
            else:  # BOS excluded; occurred = the next tokens (null where the corpus has none)
                count_rows = keep
                seen = pc.fill_null(batch.column("next_token"), -1).to_numpy()[keep]
                seen = seen[seen >= 0]
            predicted += np.bincount(batch.column("pred").to_numpy()[count_rows], minlength=V)[:V]
            occurred += np.bincount(seen, minlength=V)[:V]
            if has_post:
                predicted_post += np.bincount(batch.column("pred_post").to_numpy()[count_rows], minlength=V)[:V]
            for w in watched:
                a = batch.column(w.name).to_numpy(zero_copy_only=False)[curve_rows]
                ok = np.isfinite(a)
                bins[w.name].add(bin_index(a[ok], bin_width, binning=binning), (hit_pred == w.token_id)[ok])
            bar.update(batch.num_rows)
    bar.close()
    min_count = 0 if binning == "post" else min_count  # the post drew every bin
    return curves_table(watched, bins, bin_width, min_count, binning=binning), predictions_table(
        predicted, occurred, predicted_post if has_post else None, tokenizer)


def curves_table(watched: list[Watched], bins: dict[str, _Bins], bin_width: float, min_count: int, *,
                 binning: str) -> pa.Table:
    cols: dict[str, list] = {f.name: [] for f in CURVES_SCHEMA}
    for w in watched:
        b = bins[w.name]
        if not b.count:
            continue
        for k in range(min(b.count), max(b.count) + 1):
            count, hits = b.count.get(k, 0), b.hits.get(k, 0)
            lo, hi = bin_bounds(k, bin_width, binning=binning)
            proportion = hits / count if count >= max(min_count, 1) else None
            for name, v in (("layer", w.layer), ("neuron", w.neuron), ("token_id", w.token_id),
                            ("token_str", w.token_str), ("bin_lo", lo), ("bin_hi", hi),
                            ("count", count), ("hits", hits), ("proportion", proportion)):
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
