"""One universality tile end to end: the same token rows through models A and B, each block's activations (and their
rotated twins) into a TileCorrelation, the per-neuron reductions written as one table (docs/contracts.md).

Which positions count: every position of the dataset's token rows except position 0 (BOS; the paper drops the BOS /
padding token too) and the batch's right padding, over the first `max_tokens` such positions in chunk order (the
token shards merged by chunk id, so the tokens do not depend on `data.shards`). The last row is cut short to hit
`max_tokens` exactly: attention is causal, so cutting a row never changes the positions before the cut.

Each forward stops after the last layer the block needs (an exception from that layer's hook), so a tile of
early layers costs only those layers. A batch's counted positions go to the TileCorrelation in chunks of at most
plan.CHUNK_TOKENS, each chunk's block activations (and their rotations, only the block's columns, written in place)
in four preallocated (chunk, block) matrices: the tile's memory is what plan.tile_bytes counts, on top of the
forward's (the models, one batch's hooked layers and one layer's gathered rows at a time).
"""

from __future__ import annotations

import heapq
import logging
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pyarrow as pa
import torch
from tqdm.auto import tqdm

from anneuron.contracts import UNIVERSALITY_TILE, UNIVERSALITY_TILE_PAIRS
from anneuron.dataset.engines import Engine, load_engine
from anneuron.dataset.record import iter_shard
from anneuron.io import write_parquet
from anneuron.stage_config import UniversalityTileConfig
from anneuron.universality.baseline import Rotations
from anneuron.universality.correlation import SideResult, TileCorrelation
from anneuron.universality.plan import CHUNK_TOKENS

log = logging.getLogger(__name__)


def token_rows(shards: Sequence[str | Path], max_tokens: int) -> Iterator[list[int]]:
    """Token rows in chunk order over all shards, until `max_tokens` counted positions (all but BOS); the last row
    is cut to fit."""
    merged = heapq.merge(*(iter_shard(p) for p in shards), key=lambda cr: cr[0])
    left = max_tokens
    for _, row in merged:
        if left <= 0:
            return
        toks = list(row.tokens[: left + 1])
        if len(toks) < 2:
            continue
        left -= len(toks) - 1
        yield toks


def batches(rows: Iterator[list[int]], batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(tokens (B, W) right-padded, counted (B, W) bool: not BOS, not padding)."""
    buf: list[list[int]] = []

    def make() -> tuple[torch.Tensor, torch.Tensor]:
        width = max(map(len, buf))
        toks = torch.full((len(buf), width), buf[0][0], dtype=torch.long)
        mask = torch.zeros((len(buf), width), dtype=torch.bool)
        for b, r in enumerate(buf):
            toks[b, : len(r)] = torch.as_tensor(r)
            mask[b, 1: len(r)] = True
        return toks, mask

    for r in rows:
        buf.append(r)
        if len(buf) == batch_size:
            yield make()
            buf = []
    if buf:
        yield make()


class _Stop(Exception):
    """Raised by the last needed layer's hook: the rest of the forward is not needed."""


def layer_activations(engine: Engine, tokens: torch.Tensor, layers: range) -> dict[int, torch.Tensor]:
    """hook_post of `layers` (each (B, W, d_mlp), float32) for one batch, running the model only that far."""
    out: dict[int, torch.Tensor] = {}

    def on_post(act: torch.Tensor, layer: int) -> None:
        if layer in layers:
            out[layer] = act.float()
        if layer == layers[-1]:
            raise _Stop

    with torch.no_grad(), engine.hooks(on_post):
        try:
            engine.final_residual(tokens.to(engine.device))
        except _Stop:
            pass
    return out


def block_activations(acts: dict[int, torch.Tensor], rows: torch.Tensor, lo: int, hi: int, d_mlp: int,
                      rot: Rotations | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The flat neurons [lo, hi) at `rows` (indices into the batch's flattened positions), (T, hi − lo), and the
    same columns of the rotated layers (each layer's rows times the rotation's block columns, into place)."""
    device = next(iter(acts.values())).device
    rows = rows.to(device)
    x = torch.empty(len(rows), hi - lo, device=device)
    r = torch.empty_like(x) if rot is not None else None
    for layer in layer_range(lo, hi, d_mlp):
        a = acts[layer].reshape(-1, d_mlp).index_select(0, rows)  # (T, d_mlp)
        s, e = max(lo - layer * d_mlp, 0), min(hi - layer * d_mlp, d_mlp)
        c = layer * d_mlp + s - lo
        x[:, c: c + e - s] = a[:, s:e]
        if r is not None:
            rot.rotate(a, layer, s, e, out=r[:, c: c + e - s])
    return x, r


def layer_range(lo: int, hi: int, d_mlp: int) -> range:
    return range(lo // d_mlp, (hi - 1) // d_mlp + 1)


def correlate_tile(engine_a: Engine, engine_b: Engine, ids: tuple[str, str], shards: Sequence[str | Path],
                   a_block: tuple[int, int], b_block: tuple[int, int], *, max_tokens: int, batch_size: int,
                   seed: int, top_k: int, progress: bool = True,
                   chunk_tokens: int = CHUNK_TOKENS) -> tuple[SideResult, SideResult, tuple, int]:
    """Stream the rows through both models and correlate A's block with B's block (and with the rotated twins).
    Returns (A side, B side, top pairs, tokens counted)."""
    (alo, ahi), (blo, bhi) = a_block, b_block
    dev = engine_a.device
    rot_a = Rotations(engine_a.d_mlp, seed, ids[0], dev)
    rot_b = Rotations(engine_b.d_mlp, seed, ids[1], dev)
    tile = TileCorrelation(ahi - alo, bhi - blo, alo, blo, device=dev)
    la, lb = layer_range(alo, ahi, engine_a.d_mlp), layer_range(blo, bhi, engine_b.d_mlp)
    bar = tqdm(total=max_tokens, desc=f"tile {ids[0]}[{alo}:{ahi}] x {ids[1]}[{blo}:{bhi}]", unit="tok",
               unit_scale=True, mininterval=2, disable=not progress)
    for toks, mask in batches(token_rows(shards, max_tokens), batch_size):
        acts_a, acts_b = layer_activations(engine_a, toks, la), layer_activations(engine_b, toks, lb)
        counted = mask.flatten().nonzero().squeeze(1)  # the batch's counted positions, row-major
        for rows in counted.split(chunk_tokens):
            xa, ra = block_activations(acts_a, rows, alo, ahi, engine_a.d_mlp, rot_a)
            xb, rb = block_activations(acts_b, rows, blo, bhi, engine_b.d_mlp, rot_b)
            tile.update(xa, xb.to(dev), ra, rb.to(dev))
        bar.update(len(counted))
    bar.close()
    a, b, pairs = tile.result(top_k)
    return a, b, pairs, tile.n


def tile_tables(a: SideResult, b: SideResult, a_block: tuple[int, int], b_block: tuple[int, int],
                pairs: tuple[np.ndarray, np.ndarray, np.ndarray]) -> tuple[pa.Table, pa.Table]:
    """The tile's per-neuron table (side `a` rows, then side `b`, by flat neuron) and its top-pairs table."""
    def side(name: str, r: SideResult, lo: int, hi: int) -> dict:
        return dict(side=[name] * (hi - lo), flat=np.arange(lo, hi, dtype=np.int64), max_corr=r.max_corr,
                    argmax=r.argmax.astype(np.int64), min_corr=r.min_corr, baseline_max_corr=r.baseline_max)

    sa, sb = side("a", a, *a_block), side("b", b, *b_block)
    neurons = pa.Table.from_pydict({k: np.concatenate([np.asarray(sa[k]), np.asarray(sb[k])]) for k in sa},
                                   schema=UNIVERSALITY_TILE)
    top = pa.Table.from_pydict(dict(a_flat=pairs[0].astype(np.int64), b_flat=pairs[1].astype(np.int64),
                                    corr=pairs[2].astype(np.float64)), schema=UNIVERSALITY_TILE_PAIRS)
    return neurons, top


def write_tile(out: str | Path, out_pairs: str | Path, a: SideResult, b: SideResult, a_block: tuple[int, int],
               b_block: tuple[int, int], pairs: tuple, n_tokens: int) -> None:
    """Both tables, atomically; the token count goes into the schema metadata (the merge checks every tile agrees)."""
    neurons, top = tile_tables(a, b, a_block, b_block, pairs)
    meta = {b"n_tokens": str(n_tokens).encode()}
    write_parquet(out, neurons.replace_schema_metadata(meta))
    write_parquet(out_pairs, top.replace_schema_metadata(meta))


def tile_job(models: tuple[str, str], ids: tuple[str, str], shards: Sequence[str | Path], a_block: tuple[int, int],
             b_block: tuple[int, int], cfg: UniversalityTileConfig, out: str | Path, out_pairs: str | Path,
             progress: bool = True) -> dict:
    """The `universality_tile` job: load both models (anneuron.dataset.engines.load_engine), correlate, write."""
    ea, eb = (load_engine(m, device=cfg.device, dtype=cfg.dtype, engine=cfg.engine) for m in models)
    a, b, pairs, n = correlate_tile(ea, eb, ids, shards, a_block, b_block, max_tokens=cfg.max_tokens,
                                    batch_size=cfg.batch_size, seed=cfg.seed, top_k=cfg.top_pairs, progress=progress)
    write_tile(out, out_pairs, a, b, a_block, b_block, pairs, n)
    stats = dict(tokens=n, a_block=list(a_block), b_block=list(b_block))
    log.info("tile %s x %s: %s", *ids, stats)
    return stats
