"""The dataset pass over ONE token shard: every row through the model once, recording per position the next token,
the model's top-1 prediction and its probability, optionally the post's `pred_post` and the top-k predictions,
the activations of the watched neurons, and the running top-k max-activating examples of every neuron
(anneuron.dataset.max_examples). docs/science.md, docs/contracts.md "Top prediction".

The model runs through an engine (anneuron.dataset.engines): by default, for every family anneuron.architecture knows,
the Hugging Face model with SDPA attention (GPT-2's gelu_new fused; Gemma 2 eager); otherwise the bridge. A neuron's
activation is the input of its MLP's output projection (for a gated MLP the product act(gate)·up). Memory is bounded
by the batch (and a window of `window_batches` batches whose rows are sorted by length to cut padding, then written
back in chunk order). Rows are right-padded without an attention mask: attention is causal and every row has positions
0, 1, … (absolute or rotary), so the real positions never see the padding.

Precision (docs/science.md "Precision"): float32 by default. With `dtype: bfloat16` / `float16` the blocks run in
that precision, but `pred`, `pred_prob`, `topk` and `pred_post` are always computed in float32: the engine reads the
logits from the float32 residual before the final norm through a float32 final norm and unembedding, and `pred_post`
from a float32 W_E (anneuron.dataset.engines). The watched activations and the top-k example values are the body's own:
bf16-rounded (~3 significant digits) when the body is bf16, then stored as float32.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from tqdm.auto import tqdm

from anneuron.contracts import SHARD, record_schema
from anneuron.data import Row
from anneuron.dataset.engines import as_engine
from anneuron.dataset.max_examples import BatchIndex, TopKTracker
from anneuron.dataset.watch import neuron_name
from anneuron.io import PAGE_CHECKSUMS, atomic_path, iter_parquet, open_parquet, reading

log = logging.getLogger(__name__)

def token_writer(path: str | Path, schema: pa.Schema) -> pq.ParquetWriter:
    """A writer of token tables without dictionary encoding: the activation and probability columns are
    continuous, so a dictionary never pays (writing 8 x 1,024 positions with 23 watched neurons: 22 ms with the
    default encoding, 4.5 ms without, and a smaller file)."""
    return pq.ParquetWriter(path, schema, use_dictionary=False, **PAGE_CHECKSUMS)


def iter_shard(path: str | Path) -> Iterator[tuple[int, Row]]:
    """(chunk, row) of a token shard in file order (anneuron.data.read_shard_rows, with the chunk id)."""
    for batch in iter_parquet(path, schema=SHARD, batch_size=256):  # a truncated or corrupt shard: one line
        d = batch.to_pydict()
        for c, t, ds, x in zip(d["chunk"], d["tokens"], d["docs"], d["next_after"]):
            yield c, Row(t, ds, x)


def shard_size(path: str | Path) -> tuple[int, int]:
    """(rows, tokens) of a token shard, reading only the list offsets."""
    pf = open_parquet(path, SHARD)
    tokens = 0
    with reading(path):
        for batch in pf.iter_batches(batch_size=4096, columns=["tokens"]):
            off = batch.column(0).offsets.to_numpy()
            tokens += int(off[-1] - off[0])
    return pf.metadata.num_rows, tokens


def clean_stale_temps(path: str | Path) -> None:
    """Remove temporary files a killed run left beside `path` (anneuron.io.atomic_path names them
    `.{name}.*.tmp{suffix}`); the rerun writes everything again from scratch."""
    path = Path(path)
    if path.parent.is_dir():
        for p in path.parent.glob(f".{path.name}.*.tmp{path.suffix}"):
            p.unlink(missing_ok=True)


class Recorder:
    """Hooks a model for the dataset pass: every layer's MLP activation (top-k of all neurons, watched columns)
    and, for `pred_post`, the final norm's normalized residual. `model`: a TransformerBridge, a Hugging Face
    GPT-2 or Llama, or an engine (anneuron.dataset.engines). Use as a context manager around the batches."""

    def __init__(self, model, watched: list[tuple[int, int]], *, top_k: int, pred_post: bool, pred_topk: int):
        self.engine = as_engine(model)
        self.n_layers, self.d_mlp = self.engine.n_layers, self.engine.d_mlp
        for layer, n in watched:
            if not (0 <= layer < self.n_layers and 0 <= n < self.d_mlp):
                raise ValueError(f"watched neuron {neuron_name(layer, n)} does not exist "
                                 f"(the model has {self.n_layers} layers x {self.d_mlp} neurons)")
        self.watched = list(watched)
        self.device = self.engine.device
        self.tracker = TopKTracker(self.n_layers, self.d_mlp, top_k, self.device)
        self.pred_post, self.pred_topk = pred_post, pred_topk
        self.cols: dict[int, list[int]] = {}
        for layer, n in self.watched:
            self.cols.setdefault(layer, []).append(n)
        self.col_index = {layer: torch.tensor(ns, device=self.device) for layer, ns in self.cols.items()}
        self.W_E = self.engine.W_E if pred_post else None
        self._idx: BatchIndex | None = None
        self._acts: dict[int, torch.Tensor] = {}
        self._ctx = None
        self.calls = 0  # hook calls (each layer exactly once per batch)

    def _on_post(self, act: torch.Tensor, layer: int) -> None:
        self.calls += 1
        self.tracker.update(layer, act, self._idx)
        if layer in self.col_index:
            self._acts[layer] = act[:, :, self.col_index[layer]].float()  # stays on the device until the end

    def __enter__(self) -> "Recorder":
        self._ctx = self.engine.hooks(self._on_post)
        self._ctx.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._ctx.__exit__(*exc)

    @torch.no_grad()
    def run_batch(self, chunks: list[int], rows: list[Row]) -> list[dict[str, np.ndarray]]:
        """One forward over right-padded rows; returns one dict of column arrays per row (in the given order)."""
        width = max(len(r.tokens) for r in rows)
        toks = torch.full((len(rows), width), rows[0].tokens[0], dtype=torch.long)
        for b, r in enumerate(rows):
            toks[b, :len(r.tokens)] = torch.as_tensor(r.tokens)
        self._idx = BatchIndex.build(chunks, [r.docs for r in rows], width, self.device)
        self._acts = {}
        before = self.calls
        final = self.engine.final_residual(toks.to(self.device))
        if self.calls - before != self.n_layers:
            raise RuntimeError(f"MLP hooks fired {self.calls - before} times for {self.n_layers} layers")
        # per-position predictions on the device, row by row (one row's float32 logits at a time: memory T x d_vocab,
        # not B x T x d_vocab), then one transfer: no synchronisation inside the loop
        pred, prob, post, topk = [], [], [], []
        for b, r in enumerate(rows):
            lg = self.engine.head.logits(final[b, :len(r.tokens)])  # float32 whatever the body's dtype
            arg = lg.argmax(-1)
            pred.append(arg)
            prob.append(torch.exp(-torch.nn.functional.cross_entropy(lg, arg, reduction="none")))  # softmax[arg]
            if self.pred_post:
                post.append((self.engine.head.normalized(final[b, :len(r.tokens)]) @ self.W_E.T).argmax(-1))
            if self.pred_topk:
                topk.append(lg.topk(self.pred_topk, -1).indices)
        host = lambda xs: torch.cat(xs).cpu().numpy() if xs else None  # noqa: E731
        pred, prob, post, topk = host(pred), host(prob), host(post), host(topk)
        acts = {layer: a.cpu().numpy() for layer, a in self._acts.items()}  # (B, T, c) each
        out, off = [], 0
        for b, (c, r) in enumerate(zip(chunks, rows)):
            n = len(r.tokens)
            nxt = np.empty(n, np.int32)
            nxt[:-1] = r.tokens[1:]
            nxt[-1] = -1 if r.next_after is None else r.next_after
            cols = {
                "chunk": np.full(n, c, np.int64), "pos": np.arange(n, dtype=np.int32),
                "doc": np.asarray(r.docs, np.int32), "token": np.asarray(r.tokens, np.int32), "next_token": nxt,
                "pred": pred[off:off + n].astype(np.int32), "pred_prob": prob[off:off + n].astype(np.float32),
            }
            if self.pred_post:
                cols["pred_post"] = post[off:off + n].astype(np.int32)
            if self.pred_topk:
                cols["topk"] = topk[off:off + n].astype(np.int32)
            for layer, ns in self.cols.items():
                for j, nn in enumerate(ns):
                    cols[neuron_name(layer, nn)] = acts[layer][b, :n, j]
            out.append(cols)
            off += n
        return out


def _to_table(rows: list[dict[str, np.ndarray]], schema: pa.Schema) -> pa.Table:
    """Concatenate per-row column arrays into one table (next_token -1 -> null)."""
    arrays = []
    for f in schema:
        if f.name == "topk":
            vals = np.concatenate([r["topk"] for r in rows])
            k = vals.shape[1]
            offsets = np.arange(0, vals.size + 1, k, dtype=np.int32)
            arrays.append(pa.ListArray.from_arrays(pa.array(offsets), pa.array(vals.reshape(-1))))
            continue
        v = np.concatenate([r[f.name] for r in rows])
        if f.name == "next_token":
            arrays.append(pa.array(v, type=pa.int32(), mask=v < 0))
        else:
            arrays.append(pa.array(v, type=f.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def record_shard(model, shard_path: str | Path, tokens_out: str | Path, topk_out: str | Path,
                 watched: list[tuple[int, int]], *, batch_size: int, top_k: int, pred_post: bool, pred_topk: int,
                 window_batches: int = 16, progress: bool = True) -> dict:
    """The `record` job: one token shard -> its token table and its top-k table (both written atomically, so a
    killed run leaves nothing half-written and a rerun gives byte-identical files).

    watched: (layer, neuron) in column order. Returns counts and speed.
    """
    schema = record_schema(watched, pred_post=pred_post, pred_topk=pred_topk)
    for p in (tokens_out, topk_out):
        clean_stale_temps(p)
    n_rows, n_tokens = shard_size(shard_path)
    window = batch_size * window_batches
    t0 = time.perf_counter()
    bar = tqdm(total=n_tokens, desc=f"record {Path(shard_path).name}", unit="tok", unit_scale=True,
               mininterval=2, disable=not progress)
    last_chunk = -1
    with atomic_path(tokens_out) as tmp, token_writer(tmp, schema) as writer, \
            Recorder(model, watched, top_k=top_k, pred_post=pred_post, pred_topk=pred_topk) as rec:
        buf: list[tuple[int, Row]] = []

        def flush() -> None:
            order = sorted(range(len(buf)), key=lambda j: -len(buf[j][1].tokens))  # stable: chunk order on ties
            done: dict[int, dict] = {}
            for s in range(0, len(order), batch_size):
                sel = [buf[j] for j in order[s:s + batch_size]]
                for (c, _), cols in zip(sel, rec.run_batch([c for c, _ in sel], [r for _, r in sel])):
                    done[c] = cols
                bar.update(sum(len(r.tokens) for _, r in sel))
            writer.write_table(_to_table([done[c] for c, _ in buf], schema))
            buf.clear()

        for c, row in iter_shard(shard_path):
            if c <= last_chunk:
                raise ValueError(f"{shard_path}: chunks out of order ({c} after {last_chunk})")
            last_chunk = c
            buf.append((c, row))
            if len(buf) == window:
                flush()
        if buf:
            flush()
    bar.close()
    with atomic_path(topk_out) as tmp:
        pq.write_table(rec.tracker.table(), tmp, row_group_size=rec.d_mlp * top_k, **PAGE_CHECKSUMS)
    seconds = time.perf_counter() - t0
    stats = dict(rows=n_rows, tokens=n_tokens, seconds=round(seconds, 3),
                 tok_s=round(n_tokens / max(seconds, 1e-9), 1),
                 topk_update_fraction=round(float(rec.tracker.updated) / max(1, rec.n_layers * rec.d_mlp *
                                                                      -(-n_rows // batch_size)), 4))
    log.info("record %s: %s", shard_path, stats)
    return stats
