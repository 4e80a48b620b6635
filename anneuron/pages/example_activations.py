"""The targeted pass behind the neuron pages: for every max-activating example (max_examples.parquet), the
activation of ITS neuron at every token of its window, so a page can shade the whole window, not only the maximum.

The dataset pass keeps only each neuron's top-k positions (anneuron.dataset.max_examples). This pass runs the model
again,
but only over the rows (token-shard chunks) that hold an example, and only as far into each row as its last window
reaches (attention is causal, so the activations of a prefix do not depend on what follows). Rows are streamed from
the token shards in file order, buffered `window_batches` batches at a time, sorted by length within the buffer (less
padding) and run `batch_size` rows per forward; the forward stops after the last layer that holds an example (no
unembedding). In every layer's hook (`blocks.{l}.mlp.hook_post`, through anneuron.dataset.engines) one gather picks, for
each example of the batch in that layer, its neuron's activations over its window.

Memory: one batch's activations on the device, plus the output itself (examples × window token ids and float32
activations, about 0.7 GB for GPT-2 Large with 20 examples of 24 tokens), never the corpus's activations.


The window is the one of `max_examples.text` (anneuron.dataset.max_examples.window_bounds): `record.window` tokens
around the position, BOS never shown, clipped to the row. The activation at the example's position is the example's
`value` (up to float rounding between batchings); the pass logs the largest difference and returns it.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from tqdm.auto import tqdm

from anneuron.contracts import EXAMPLE_ACTIVATIONS
from anneuron.dataset.engines import as_engine
from anneuron.dataset.record import iter_shard
from anneuron.io import atomic_path, read_parquet

log = logging.getLogger(__name__)

EXAMPLE_COLUMNS = ["layer", "neuron", "rank", "value", "chunk", "pos", "doc"]


class _Stop(Exception):
    """Raised from the last needed layer's hook: the rest of the forward (and the unembedding) is not needed."""


class Examples:
    """The examples to fill, in max_examples order, grouped by row: `rows[chunk]` holds their indices."""

    def __init__(self, table: pa.Table):
        self.table = table.select(EXAMPLE_COLUMNS)
        col = lambda c: self.table.column(c).to_numpy()  # noqa: E731
        self.layer, self.neuron, self.chunk, self.pos = col("layer"), col("neuron"), col("chunk"), col("pos")
        self.n = len(self.layer)
        order = np.argsort(self.chunk, kind="stable")
        chunks, starts = np.unique(self.chunk[order], return_index=True)
        ends = np.append(starts[1:], self.n)
        self.rows = {int(c): order[s:e] for c, s, e in zip(chunks, starts, ends)}

    @classmethod
    def read(cls, path: str | Path) -> "Examples":
        return cls(read_parquet(path, columns=EXAMPLE_COLUMNS))



def bounds(pos: np.ndarray, length: int, window: int) -> tuple[np.ndarray, np.ndarray]:
    """anneuron.dataset.max_examples.window_bounds, vectorised: [lo, hi) of each position's window in a row of
    `length`."""
    after = window // 4
    before = window - 1 - after
    return np.maximum(1, pos - before), np.minimum(length, pos + after + 1)


class _Batch:
    """Where one batch's examples are: per layer, the (row, window positions, neuron) to gather and their indices."""

    def __init__(self, ex: Examples, rows: list[tuple[int, list[int]]], window: int, device):
        self.idx, self.lo, self.hi, self.row_of = [], [], [], []
        for b, (c, tokens) in enumerate(rows):
            e = ex.rows[c]
            lo, hi = bounds(ex.pos[e], len(tokens), window)
            self.idx.append(e)
            self.lo.append(lo)
            self.hi.append(hi)
            self.row_of.append(np.full(len(e), b))
        self.idx, self.lo, self.hi, self.row_of = (np.concatenate(x) for x in (self.idx, self.lo, self.hi,
                                                                               self.row_of))
        # each row is run only up to its last window's end
        self.width = [int(self.hi[self.row_of == b].max()) for b in range(len(rows))]
        layers = ex.layer[self.idx]
        self.by_layer: dict[int, tuple[np.ndarray, torch.Tensor, torch.Tensor, torch.Tensor]] = {}
        steps = np.arange(window)
        for layer in np.unique(layers):
            sel = np.flatnonzero(layers == layer)
            grid = np.minimum(self.lo[sel, None] + steps[None, :], self.hi[sel, None] - 1)  # clipped: masked later
            t = lambda x: torch.as_tensor(x, dtype=torch.long, device=device)  # noqa: E731
            self.by_layer[int(layer)] = (sel, t(self.row_of[sel])[:, None], t(grid),
                                         t(ex.neuron[self.idx[sel]])[:, None])
        self.last_layer = max(self.by_layer)


def _forward(engine, batch: _Batch, toks: torch.Tensor) -> dict[int, torch.Tensor]:
    """One forward of `toks`, gathering each layer's examples; stops after the last layer it needs."""
    got: dict[int, torch.Tensor] = {}

    def on_post(act: torch.Tensor, layer: int) -> None:
        if layer in batch.by_layer:
            _, rows, grid, neurons = batch.by_layer[layer]
            got[layer] = act[rows, grid, neurons].float()  # (E_l, window)
        if layer == batch.last_layer:
            raise _Stop

    with engine.hooks(on_post):
        try:
            engine.final_residual(toks)
        except _Stop:
            pass
    missing = set(batch.by_layer) - set(got)
    if missing:
        raise RuntimeError(f"the MLP hooks of layers {sorted(missing)} did not fire")
    return got


def vocabulary(tokenizer) -> pa.Array:
    """Every token id decoded on its own (as the weights tables' `token_str`), as an Arrow string array."""
    n = len(tokenizer)
    return pa.array(tokenizer.batch_decode([[i] for i in range(n)], skip_special_tokens=False,
                                           clean_up_tokenization_spaces=False), pa.string())


@torch.no_grad()
def example_activations(model, examples: Examples, token_paths: list[str | Path], tokenizer, *, window: int,
                        batch_size: int, window_batches: int = 16, progress: bool = True) -> tuple[pa.Table, dict]:
    """The pass: returns the EXAMPLE_ACTIVATIONS table (max_examples order) and stats (rows run, tokens run,
    seconds, `max_value_diff`: the largest |activation at pos − value|)."""
    engine = as_engine(model)
    E = examples.n
    acts = np.zeros((E, window), np.float32)
    ids = np.zeros((E, window), np.int32)
    lo_all = np.zeros(E, np.int32)
    n_all = np.zeros(E, np.int32)
    filled = np.zeros(E, bool)
    stats = dict(rows=0, tokens=0, rows_total=0, tokens_total=0)
    t0 = time.perf_counter()
    bar = tqdm(total=len(examples.rows), desc="example windows", unit="row", mininterval=2, disable=not progress)

    def run(buf: list[tuple[int, list[int]]]) -> None:
        buf.sort(key=lambda r: -int(bounds(examples.pos[examples.rows[r[0]]], len(r[1]), window)[1].max()))
        for s in range(0, len(buf), batch_size):
            rows = buf[s:s + batch_size]
            batch = _Batch(examples, rows, window, engine.device)
            T = max(batch.width)
            toks = torch.full((len(rows), T), rows[0][1][0], dtype=torch.long)
            for b, (_, tokens) in enumerate(rows):
                toks[b, :batch.width[b]] = torch.as_tensor(tokens[:batch.width[b]])
            got = _forward(engine, batch, toks.to(engine.device))
            for layer, (sel, *_) in batch.by_layer.items():
                acts[batch.idx[sel]] = got[layer].cpu().numpy()
            for b, (_, tokens) in enumerate(rows):
                row = np.asarray(tokens, np.int32)
                for j in np.flatnonzero(batch.row_of == b):
                    e, lo, hi = batch.idx[j], batch.lo[j], batch.hi[j]
                    ids[e, :hi - lo] = row[lo:hi]
                    lo_all[e], n_all[e] = lo, hi - lo
            filled[batch.idx] = True
            stats["rows"] += len(rows)
            stats["tokens"] += int(sum(batch.width))
            bar.update(len(rows))

    for path in token_paths:
        buf: list[tuple[int, list[int]]] = []
        for c, row in iter_shard(path):
            stats["rows_total"] += 1
            stats["tokens_total"] += len(row.tokens)
            if c in examples.rows:
                buf.append((c, row.tokens))
                if len(buf) == batch_size * window_batches:
                    run(buf)
                    buf = []
        if buf:
            run(buf)
    bar.close()
    if not filled.all():
        missing = sorted(set(examples.chunk[~filled].tolist()))[:5]
        raise ValueError(f"examples in rows {missing} ... are in none of the token shards")
    stats["seconds"] = round(time.perf_counter() - t0, 3)

    value = examples.table.column("value").to_numpy()
    focus = examples.pos - lo_all
    at_pos = acts[np.arange(E), focus] if E else np.zeros(0, np.float32)
    stats["max_value_diff"] = float(np.abs(at_pos - value).max()) if E else 0.0
    stats["examples"] = E
    return _table(examples, lo_all, n_all, ids, acts, vocabulary(tokenizer)), stats


def _table(examples: Examples, lo: np.ndarray, n: np.ndarray, ids: np.ndarray, acts: np.ndarray,
           vocab: pa.Array) -> pa.Table:
    keep = np.arange(ids.shape[1])[None, :] < n[:, None]  # row-major: each example's window in order
    offsets = pa.array(np.concatenate([[0], np.cumsum(n)]).astype(np.int32))
    tokens = pa.ListArray.from_arrays(offsets, vocab.take(pa.array(ids[keep])))
    values = pa.ListArray.from_arrays(offsets, pa.array(acts[keep], pa.float32()))
    t = examples.table
    return pa.Table.from_arrays(
        [t.column(c) for c in EXAMPLE_COLUMNS] + [pa.array(lo, pa.int32()), tokens, values],
        schema=EXAMPLE_ACTIVATIONS)


def write_example_activations(table: pa.Table, path: str | Path) -> None:
    """Atomically, one row group per layer (the page builder reads a layer at a time)."""
    layer = table.column("layer").to_numpy()
    cuts = np.flatnonzero(np.diff(layer)) + 1
    starts = np.concatenate([[0], cuts]) if len(layer) else np.zeros(0, np.int64)
    ends = np.append(cuts, len(layer))
    with atomic_path(path) as tmp, pq.ParquetWriter(tmp, EXAMPLE_ACTIVATIONS) as w:
        for s, e in zip(starts, ends):
            w.write_table(table.slice(int(s), int(e - s)), row_group_size=max(1, int(e - s)))
        if not len(layer):
            w.write_table(EXAMPLE_ACTIVATIONS.empty_table())


def run_pass(model, examples_path: str | Path, token_paths: list[str | Path], out: str | Path, tokenizer, *,
             window: int, batch_size: int, progress: bool = True) -> dict:
    """The `example_activations` job: max_examples.parquet + token shards -> example_activations.parquet."""
    table, stats = example_activations(model, Examples.read(examples_path), token_paths, tokenizer, window=window,
                                       batch_size=batch_size, progress=progress)
    write_example_activations(table, out)
    log.info("example activations %s: %s", out, stats)
    return stats
