"""Neuroscope-style max-activating examples for EVERY neuron: a running top-k per neuron, at most one example per
document, ties broken by (chunk, pos); shards merged exactly; text windows rendered at the end.

Order of examples: value descending, then (chunk, pos) ascending. A document's example is its best position under
that order. BOS (pos 0) and padding are never examples (BOS activations are a position artefact, not text).

Why the merge of shards is exact: if document d is in the global top-k, its best position lies in some shard, and
fewer than k documents beat it there, so d is in that shard's top-k with that position. The same argument makes
the batch-by-batch update exact, and lets a batch skip every neuron whose batch maximum is below its k-th value.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch

from anneuron.contracts import MAX_EXAMPLES, SHARD, TOPK
from anneuron.io import open_parquet, read_parquet, reading

POS_BITS = 20  # gkey = chunk << POS_BITS | pos: one int64 that orders positions by (chunk, pos)
EMPTY_GKEY = (1 << 62)
NEG_INF = float("-inf")

TOPK_SCHEMA, EXAMPLES_SCHEMA = TOPK, MAX_EXAMPLES


@dataclass
class BatchIndex:
    """Where things are in one right-padded batch, flattened to N = B * T positions.

    valid (N,) bool: a real, non-BOS position. gkey (N,) int64. run_of (N,) int64: each position's run, R for
    BOS and padding. runs: (start, end) flat ranges of the real
    positions of one document inside one row (documents are contiguous within a row), sorted by (chunk, pos);
    run_doc (R,) int64;
    same_doc: pairs of runs of one document (a document spread over several rows of the batch); lengths: real
    length per row; gkey_min/gkey_max over real positions.
    """

    valid: torch.Tensor
    gkey: torch.Tensor
    run_of: torch.Tensor
    runs: list[tuple[int, int]]
    run_doc: torch.Tensor
    same_doc: list[tuple[int, int]]
    lengths: list[int]
    gkey_min: int
    gkey_max: int

    @classmethod
    def build(cls, chunks: list[int], docs: list[list[int]], width: int, device) -> "BatchIndex":
        B = len(chunks)
        valid = np.zeros((B, width), bool)
        gkey = np.full((B, width), EMPTY_GKEY, np.int64)
        runs = []  # (start gkey, flat start, flat end, doc): real positions only (no BOS, no padding)
        for b, (c, d) in enumerate(zip(chunks, docs)):
            n = len(d)
            valid[b, 1:n] = True
            gkey[b, :n] = (np.int64(c) << POS_BITS) | np.arange(n, dtype=np.int64)
            d = np.asarray(d)
            cuts = np.flatnonzero(d[1:] != d[:-1]) + 1  # BOS shares its row's first document, so cuts >= 2
            starts = np.concatenate([[1], cuts])
            ends = np.concatenate([cuts, [n]])
            for s, e in zip(starts, ends):
                if e > s:
                    runs.append((int(gkey[b, s]), b * width + int(s), b * width + int(e), int(d[s])))
        runs.sort()
        by_doc: dict[int, list[int]] = {}
        for r, run in enumerate(runs):
            by_doc.setdefault(run[3], []).append(r)
        same = [(i, j) for rs in by_doc.values() for a, i in enumerate(rs) for j in rs[a + 1:]]
        run_of = np.full(B * width, len(runs), np.int64)
        for r, (_, s, e, _) in enumerate(runs):
            run_of[s:e] = r
        real = gkey[valid]
        t = lambda x: torch.as_tensor(x, device=device)  # noqa: E731
        return cls(t(valid.reshape(-1)), t(gkey.reshape(-1)), t(run_of), [(r[1], r[2]) for r in runs],
                   t(np.array([r[3] for r in runs], np.int64)), same, [len(d) for d in docs],
                   int(real.min()) if real.size else EMPTY_GKEY, int(real.max()) if real.size else -1)


def _better(v1, g1, v2, g2) -> torch.Tensor:
    """Entry 1 comes before entry 2: larger value, or equal value and earlier position."""
    return (v1 > v2) | ((v1 == v2) & (g1 < g2))


def merge_rows(sv, sg, sd, cv, cg, cd, same_doc: list[tuple[int, int]], k: int, ordered: bool,
               dense: bool = False):
    """Fold candidates into each row's (neuron's) top k: one entry per document, by (value desc, gkey asc).

    sv, sg, sd (M, k): the state, sorted and one per document (value -inf = empty slot, doc -1).
    cv, cg, cd (M, R): candidates (-inf = none), sorted by gkey along R; `same_doc` lists candidate columns
    that belong to one document. `ordered`: every candidate comes after every state entry in (chunk, pos), so
    on equal values the state goes first and one stable sort by value is exact; otherwise the rows with such ties
    are first put in gkey order. `dense`: work on every row instead of selecting the rows concerned (no
    data-dependent shapes, so no GPU synchronisation). Returns the new state, three (M, k) tensors.
    """
    # one entry per document: a candidate against the state's entry for its document, and candidates of one doc
    same = cd[:, :, None] == sd[:, None, :]  # (M, R, k)
    rows = slice(None) if dense else torch.nonzero(same.any(2).any(1)).squeeze(1)
    if dense or rows.numel():
        s = same[rows]
        a_v, a_g, b_v, b_g = cv[rows, :, None], cg[rows, :, None], sv[rows, None, :], sg[rows, None, :]
        cand_wins = _better(a_v, a_g, b_v, b_g)
        sv[rows] = sv[rows].masked_fill((s & cand_wins).any(1), NEG_INF)
        cv[rows] = cv[rows].masked_fill((s & ~cand_wins).any(2), NEG_INF)
    if same_doc:
        i, j = (torch.tensor(x, device=cv.device) for x in zip(*same_doc))
        i_wins = _better(cv[:, i], cg[:, i], cv[:, j], cg[:, j])
        lost = torch.zeros(cv.shape, dtype=torch.int32, device=cv.device)  # index_add_: a run may repeat
        lost.index_add_(1, j, i_wins.to(torch.int32))
        lost.index_add_(1, i, (~i_wins).to(torch.int32))
        cv = cv.masked_fill(lost > 0, NEG_INF)
    vals, gkey, doc = torch.cat([sv, cv], 1), torch.cat([sg, cg], 1), torch.cat([sd, cd], 1)
    if not ordered:
        tie = ((cv[:, :, None] == sv[:, None, :]) & (cg[:, :, None] < sg[:, None, :])
               & (cv[:, :, None] > NEG_INF)).any(2).any(1)
        if dense:  # rows with such ties go in gkey order first (a stable sort keeps the others as they are)
            o = torch.where(tie[:, None], torch.argsort(gkey, dim=1, stable=True),
                            torch.arange(gkey.shape[1], device=gkey.device)[None, :])
            vals, gkey, doc = _gather(o, vals, gkey, doc)
        else:
            bad = torch.nonzero(tie).squeeze(1)
            if bad.numel():
                o = torch.argsort(gkey[bad], dim=1, stable=True)
                vals[bad], gkey[bad], doc[bad] = _gather(o, vals[bad], gkey[bad], doc[bad])
    o = torch.argsort(vals, dim=1, descending=True, stable=True)[:, :k]
    vals, gkey, doc = _gather(o, vals, gkey, doc)
    empty = vals == NEG_INF
    return vals, gkey.masked_fill(empty, EMPTY_GKEY), doc.masked_fill(empty, -1)


def _gather(o: torch.Tensor, *xs: torch.Tensor) -> list[torch.Tensor]:
    return [x.gather(1, o) for x in xs]


class TopKTracker:
    """The running top-k examples of all n_layers x d_mlp neurons, on the model's device.

    vals (L, d_mlp, k) sorted descending per neuron; `vals[..., -1]` is the threshold a batch must reach.
    Two exact ways to update, chosen by device (`dense` None): on CPU, select the neurons whose batch maximum
    reaches their threshold and loop over document runs (cheap); on GPU, update every neuron with a few
    vectorised kernels and no data-dependent shapes (a selection would synchronise the GPU at every layer);
    untouched neurons come out of the merge unchanged.
    """

    def __init__(self, n_layers: int, d_mlp: int, k: int, device="cpu", dense: bool | None = None):
        self.k = k
        self.dense = torch.device(device).type == "cuda" if dense is None else dense
        self.vals = torch.full((n_layers, d_mlp, k), NEG_INF, device=device)
        self.gkey = torch.full((n_layers, d_mlp, k), EMPTY_GKEY, dtype=torch.int64, device=device)
        self.doc = torch.full((n_layers, d_mlp, k), -1, dtype=torch.int64, device=device)
        self.updated = 0  # neuron updates done (for the benchmark: how selective the threshold is)
        self.gkey_seen = -1  # the largest position folded in so far
        self._batch_ordered = True
        self._last_idx = None
        self._ramp_cache = None

    @torch.no_grad()
    def update(self, layer: int, act: torch.Tensor, idx: BatchIndex) -> None:
        """Fold one layer's activations act (B, T, d_mlp) of a batch into the running top-k."""
        if idx is not self._last_idx:  # a new batch: is it after everything seen (the usual case)?
            self._last_idx = idx
            self._batch_ordered = idx.gkey_min > self.gkey_seen
            self.gkey_seen = max(self.gkey_seen, idx.gkey_max)
        B, T, d = act.shape
        if not idx.runs:
            return
        if self.dense:
            return self._update_dense(layer, act, idx)
        flat = act.reshape(B * T, d)
        # the maximum of every document run, all neurons: one pass over the activations (no copy, no masking:
        # runs hold real positions only); the batch maximum follows, and with it the neurons that may change
        run_max = torch.stack([flat[s:e].amax(0) for s, e in idx.runs])  # (R, d), model dtype
        thr = self.vals[layer, :, -1]
        active = torch.nonzero(run_max.amax(0).float() >= thr).squeeze(1)
        m = active.numel()
        if m == 0:
            return
        self.updated += m
        R = len(idx.runs)
        cv = run_max if m == d else run_max[:, active]
        ci = torch.empty((R, m), dtype=torch.float32, device=act.device)
        for r, (s, e) in enumerate(idx.runs):
            # max with indices along dim 0 is ~15x slower than amax on CPU; the first index of the max
            # (the earliest position) is found by weighting the matches with a descending ramp
            sub = flat[s:e] if m == d else flat[s:e, active]
            ci[r] = torch.where(sub == cv[r], self._ramp(e - s, act.device), 0.0).amax(0)
        ci = torch.as_tensor([e for _, e in idx.runs], device=act.device)[:, None] - ci.clamp(min=1).long()
        cv = cv.float()
        cg = idx.gkey[ci].T.contiguous()
        cv = cv.masked_fill(cv < thr[active][None, :], NEG_INF).T.contiguous()
        cd = idx.run_doc[None, :].expand(m, R)
        self.vals[layer, active], self.gkey[layer, active], self.doc[layer, active] = merge_rows(
            self.vals[layer, active], self.gkey[layer, active], self.doc[layer, active], cv, cg, cd,
            idx.same_doc, self.k, self._batch_ordered)

    def _update_dense(self, layer: int, act: torch.Tensor, idx: BatchIndex) -> None:
        """Every neuron at once: run maxima and their first positions by scatter-reduce over run ids."""
        B, T, d = act.shape
        N, R = B * T, len(idx.runs)
        flat = act.reshape(N, d)
        where = idx.run_of[:, None].expand(N, d)
        run_max = torch.full((R + 1, d), NEG_INF, dtype=flat.dtype, device=flat.device)
        run_max.scatter_reduce_(0, where, flat, "amax")
        ramp = self._ramp(N, act.device)  # N .. 1: the largest weight marks the first position
        first = torch.zeros((R + 1, d), dtype=torch.float32, device=flat.device)
        first.scatter_reduce_(0, where, torch.where(flat == run_max[idx.run_of], ramp, 0.0), "amax")
        ci = (N - first[:R].clamp(min=1)).long()
        thr = self.vals[layer, :, -1]
        self.updated += (run_max[:R].amax(0).float() >= thr).sum()  # a tensor: no synchronisation
        cv = run_max[:R].float()
        cv = cv.masked_fill(cv < thr[None, :], NEG_INF).T.contiguous()
        cg = idx.gkey[ci].T.contiguous()
        cd = idx.run_doc[None, :].expand(d, R)
        self.vals[layer], self.gkey[layer], self.doc[layer] = merge_rows(
            self.vals[layer], self.gkey[layer], self.doc[layer], cv, cg, cd, idx.same_doc, self.k,
            self._batch_ordered, dense=True)

    def _ramp(self, n: int, device) -> torch.Tensor:
        """(n, 1) float32 n, n-1, ..., 1: the largest weight marks the first position."""
        if self._ramp_cache is None or self._ramp_cache.shape[0] < n or self._ramp_cache.device != torch.device(device):
            self._ramp_cache = torch.arange(max(n, 1024), 0, -1, dtype=torch.float32, device=device)[:, None]
        return self._ramp_cache[-n:]

    def table(self) -> pa.Table:
        """The state as rows (layer, neuron, rank, value, chunk, pos, doc), sorted by (layer, neuron, rank)."""
        vals = self.vals.cpu().numpy()
        L, d, k = vals.shape
        keep = vals > NEG_INF
        layer, neuron, rank = np.nonzero(keep)
        gkey = self.gkey.cpu().numpy()[keep]
        return pa.table({
            "layer": layer.astype(np.int32), "neuron": neuron.astype(np.int32), "rank": (rank + 1).astype(np.int32),
            "value": vals[keep].astype(np.float32), "chunk": gkey >> POS_BITS,
            "pos": (gkey & ((1 << POS_BITS) - 1)).astype(np.int32),
            "doc": self.doc.cpu().numpy()[keep].astype(np.int32),
        }, schema=TOPK_SCHEMA)


def merge_tables(tables: list, k: int):
    """Merge top-k tables (of shards, or of anything) into one: one example per (neuron, document), best k, ranked.

    Returns a polars DataFrame sorted by (layer, neuron, rank) with the TOPK_SCHEMA columns.
    """
    import polars as pl

    df = pl.concat([pl.from_arrow(t) if isinstance(t, pa.Table) else t for t in tables])
    df = (df.sort(["layer", "neuron", "value", "chunk", "pos"], descending=[False, False, True, False, False])
          .unique(subset=["layer", "neuron", "doc"], keep="first", maintain_order=True)
          .with_columns(rank=(pl.int_range(pl.len()).over(["layer", "neuron"]) + 1).cast(pl.Int32))
          .filter(pl.col("rank") <= k))
    return df.select(TOPK_SCHEMA.names)


class RowTokens:
    """The token ids of every row of a corpus, by chunk id, from its token shards (flat int32 + offsets). A shard
    that is truncated, corrupted or not a token shard is one `anneuron.io.UnreadableFileError` naming it."""

    def __init__(self, token_paths: list[str | Path]):
        chunks, offsets, lengths, flats, base = [], [], [], [], 0
        for p in token_paths:
            t = read_parquet(p, columns=["chunk", "tokens"], schema=SHARD)
            col = t.column("tokens").combine_chunks()
            off = col.offsets.to_numpy()
            chunks.append(t.column("chunk").to_numpy())
            offsets.append(off[:-1] - off[0] + base)
            lengths.append(np.diff(off))
            flat = col.values.to_numpy()[off[0]:off[-1]]
            flats.append(flat)
            base += len(flat)
        chunk = np.concatenate(chunks) if chunks else np.zeros(0, np.int64)
        n = int(chunk.max()) + 1 if len(chunk) else 0
        self.offset = np.full(n, -1, np.int64)
        self.length = np.zeros(n, np.int64)
        self.offset[chunk] = np.concatenate(offsets)
        self.length[chunk] = np.concatenate(lengths)
        self.flat = np.concatenate(flats) if flats else np.zeros(0, np.int32)

    def row(self, chunk: int) -> np.ndarray:
        o = self.offset[chunk]
        if o < 0:
            raise KeyError(f"chunk {chunk} is in none of the token shards")
        return self.flat[o:o + self.length[chunk]]


def window_bounds(pos: int, length: int, window: int) -> tuple[int, int]:
    """[lo, hi) of the `window` tokens shown around position `pos` of a row (about 3/4 before, 1/4 after, BOS
    never shown, clipped to the row)."""
    after = window // 4
    before = window - 1 - after
    return max(1, pos - before), min(length, pos + after + 1)


def render_windows(df, rows: RowTokens, tokenizer, window: int) -> list[str]:
    """`text` per example: the window around (chunk, pos) with the example's token marked «like this»."""
    before, mark, after = [], [], []
    for c, p in zip(df["chunk"].to_list(), df["pos"].to_list()):
        r = rows.row(c)
        lo, hi = window_bounds(p, len(r), window)
        before.append(r[lo:p].tolist())
        mark.append([int(r[p])])
        after.append(r[p + 1:hi].tolist())
    kw = dict(skip_special_tokens=False, clean_up_tokenization_spaces=False)
    b, m, a = (tokenizer.batch_decode(x, **kw) if x else [] for x in (before, mark, after))
    return [f"{x}«{y}»{z}" for x, y, z in zip(b, m, a)]


def _layer_groups(topk_paths: list[str | Path]) -> dict[int, list[tuple[int, int]]]:
    """layer -> the (shard, row group) pairs holding its rows, from each row group's own `layer` column (the footer's
    statistics are not trusted for this: a wrong one would silently drop rows)."""
    import pyarrow.compute as pc

    groups: dict[int, list[tuple[int, int]]] = {}
    for s, p in enumerate(topk_paths):
        pf = open_parquet(p, TOPK_SCHEMA)
        with reading(p):
            for g in range(pf.num_row_groups):
                for layer in pc.unique(pf.read_row_group(g, columns=["layer"]).column(0)).to_pylist():
                    groups.setdefault(layer, []).append((s, g))
    return groups


def _read_layer(topk_paths: list[str | Path], groups: list[tuple[int, int]], layer: int) -> list[pa.Table]:
    """The rows of `layer` in the given (shard, row group) pairs, with the TOPK_SCHEMA columns."""
    import pyarrow.compute as pc

    out = []
    for s, g in groups:
        p = topk_paths[s]
        pf = open_parquet(p, TOPK_SCHEMA)  # reopened per layer: no file stays open across the merge
        with reading(p):
            t = pf.read_row_group(g, columns=TOPK_SCHEMA.names).cast(TOPK_SCHEMA)
        out.append(t.filter(pc.equal(t.column("layer"), layer)))
    return out


def build_max_examples(topk_paths: list[str | Path], token_paths: list[str | Path], tokenizer, k: int,
                       window: int) -> pa.Table:
    """The gather step: merge the shards' top-k tables layer by layer (memory ~ one layer) and add text windows.

    Returns max_examples rows (EXAMPLES_SCHEMA) sorted by (layer, neuron, rank). Every input is read through
    anneuron.io (footer, schema and page checksums checked): a truncated or corrupted shard is one
    `UnreadableFileError` naming it.
    """
    import polars as pl
    from tqdm.auto import tqdm

    rows = RowTokens(token_paths)
    groups = _layer_groups(topk_paths)
    parts = []
    for layer in tqdm(sorted(groups), desc="max examples", unit="layer", mininterval=2):
        df = merge_tables(_read_layer(topk_paths, groups[layer], layer), k)
        parts.append(df.with_columns(text=pl.Series(render_windows(df, rows, tokenizer, window), dtype=pl.String))
                     .to_arrow().cast(EXAMPLES_SCHEMA))
    return pa.concat_tables(parts) if parts else EXAMPLES_SCHEMA.empty_table()
