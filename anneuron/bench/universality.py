"""`python -m anneuron.bench universality [--tile-mb MB] [--tokens N] [--batch T]`: one tile's correlation sums
(TileCorrelation.update: the in-place shift, column sums, three float32 in-place GEMMs A·B, A·rot(B), rot(A)·B and
their fold into float64) on random activations, against this machine's raw float32 GEMM of the same shapes
((na x T) @ (T x nb) into a preallocated output, three per chunk), timed INTERLEAVED (a raw chunk after every tile
chunk, outside the tile's clock) so both see the same load. Each chunk is refreshed from a pristine copy outside
both clocks (the tile centres its chunk in place, as it does the tile job's fresh activations).

ratio = the tile's product rate / the raw rate (1.0 = shifting, summing and folding cost nothing beyond the GEMMs).
tile_rss_gb = the peak RSS the tile added (its chunk of 4 x T x side float32 activations, its accumulators and its
result()) on top of torch, the pristine inputs and the raw product (measured before the tile exists), against the
budget it is sized by (tile_mb: plan.tile_bytes); within_budget says whether it fits. peak_rss_gb is the whole
process. `paper` estimates, from the FLOPs alone, five GPT-2-medium seeds (24 x 4096 neurons each, all 10 pairs)
over 100 M tokens on one H100 (assumed sustained rates stated in the output).
"""

from __future__ import annotations

import argparse
import time

import torch

from anneuron.bench.common import emit, peak_rss_gb
from anneuron.universality.correlation import TileCorrelation
from anneuron.universality.plan import CHUNK_TOKENS, block_size

# On paper: GPT-2 medium, the paper's 5 seeds over 100 M tokens; an H100 SXM's dense float32 and TF32 tensor rates
# (vendor figures: 67 and 495 TFLOP/s; sustained GEMMs reach ~80 % of them), 80 GB.
MEDIUM = dict(n_neurons=24 * 4096, params=355e6)
H100 = dict(fp32_tflops=67 * 0.8, tf32_tflops=495 * 0.8, memory_gb=80)


def paper_estimate(models: int = 5, tokens: float = 100e6, budget_gb: float = 60.0) -> dict:
    """Hours on one H100 for every pair: 3 GEMM products per token per neuron pair, plus each tile re-running
    both models' forwards (2 FLOPs per parameter per token) over the tokens."""
    n = MEDIUM["n_neurons"]
    pairs = models * (models - 1) // 2
    side = block_size(budget_gb * 1024, n, n)
    tiles = (-(-n // side)) ** 2
    corr = pairs * 3 * 2.0 * n * n * tokens
    forward = pairs * tiles * 2 * 2.0 * MEDIUM["params"] * tokens
    hours = lambda tflops: (corr + forward) / (tflops * 1e12) / 3600  # noqa: E731
    return dict(models=models, pairs=pairs, tokens=tokens, tile_side=side, tiles_per_pair=tiles,
                correlation_pflop=round(corr / 1e15), forward_pflop=round(forward / 1e15),
                hours_fp32=round(hours(H100["fp32_tflops"]), 1), hours_tf32=round(hours(H100["tf32_tflops"]), 1),
                assumed=dict(H100))


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(prog="python -m anneuron.bench universality")
    ap.add_argument("--tile-mb", type=float, default=512.0, help="universality.tile_mb (sets the tile side)")
    ap.add_argument("--tokens", type=int, default=65536, help="tokens summed")
    ap.add_argument("--batch", type=int, default=CHUNK_TOKENS, help="tokens per update (the tile job's chunk)")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    side = block_size(args.tile_mb, 10**9, 10**9, chunk_tokens=args.batch)
    g = torch.Generator().manual_seed(0)
    pristine = [torch.rand(args.batch, side, generator=g) for _ in range(4)]  # xa, xb, ra, rb
    raw_out = torch.zeros(side, side)
    torch.mm(pristine[0].T, pristine[1], out=raw_out)  # the GEMM's own workspace, before the baseline below
    before = peak_rss_gb()  # torch, the pristine inputs and the raw product's output
    chunk = [x.clone() for x in pristine]  # the tile's chunk (the tile job's block_activations)
    tile = TileCorrelation(side, side)
    tile_s = raw_s = 0.0
    done = 0
    while done < args.tokens:
        for c, x in zip(chunk, pristine):
            c.copy_(x)
        t = time.perf_counter()
        tile.update(*chunk)
        tile_s += time.perf_counter() - t
        t = time.perf_counter()
        for x, y in ((pristine[0], pristine[1]), (pristine[0], pristine[3]), (pristine[2], pristine[1])):
            torch.mm(x.T, y, out=raw_out)
        raw_s += time.perf_counter() - t
        done += args.batch
    t = time.perf_counter()
    tile.result(top_k=100)
    result_s = time.perf_counter() - t
    flops = 3 * 2.0 * side * side * done
    tile_rss = peak_rss_gb() - before
    budget = args.tile_mb / 1024
    emit({
        "tile_side": side, "tile_mb": args.tile_mb, "tokens": done, "batch": args.batch,
        "gflops": round(flops / tile_s / 1e9, 2), "gemm_gflops": round(flops / raw_s / 1e9, 2),
        "ratio": round(raw_s / tile_s, 4), "result_seconds": round(result_s, 3),
        "peak_rss_gb": round(peak_rss_gb(), 3), "tile_rss_gb": round(tile_rss, 3), "budget_gb": round(budget, 3),
        "within_budget": tile_rss <= budget,
        "paper": paper_estimate(),
    })
