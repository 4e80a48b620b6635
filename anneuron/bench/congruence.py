"""`python -m anneuron.bench congruence [--layers N]`: the weights pass at GPT-2 Large's shapes (36 x 5120 neurons,
d_model 1280, vocab 50,257; `--d-mlp`, `--d-model`, `--vocab` for others) on random weights, against this machine's
raw matmul rate for the chunk shape.

The raw product (chunk x d_model) @ (d_model x vocab), same dtype, is timed INTERLEAVED with the pass (after every
`--gemm-every`-th chunk, outside the pass's clock), so that both see the same load on a shared machine.
gflops counts every product the pass performs (two for basis `we`: W_U for the moments, W_E for the pairs);
ratio = gflops / gemm_gflops (1.0 = the reductions cost nothing).
"""

from __future__ import annotations

import argparse
import time

import torch

from anneuron.bench.common import emit, peak_rss_gb
from anneuron.weights.congruence import BASES, Weights, congruence_pass, flops, resolve_chunk

LARGE = dict(n_layers=36, d_mlp=5120, d_model=1280, d_vocab=50257)


def random_weights(n_layers: int, d_mlp: int, d_model: int, d_vocab: int, seed: int = 0) -> Weights:
    """Random weights laid out as the bridge's: per-layer W_out, W_E (V, d), W_U a transposed view of (V, d);
    writing weights and unembedding centred as TransformerLens' processing leaves them."""
    g = torch.Generator().manual_seed(seed)
    w_out = []
    for _ in range(n_layers):
        w = torch.randn(d_mlp, d_model, generator=g) / d_model**0.5
        w_out.append(w.sub_(w.mean(1, keepdim=True)))
    W_E = torch.randn(d_vocab, d_model, generator=g)
    W_E.sub_(W_E.mean(1, keepdim=True))
    lm_head = torch.randn(d_vocab, d_model, generator=g)
    lm_head.sub_(lm_head.mean(0, keepdim=True))
    return Weights(w_out=w_out, W_E=W_E, W_U=lm_head.t())


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(prog="python -m anneuron.bench congruence")
    ap.add_argument("--layers", type=int, default=LARGE["n_layers"], help="run this many layers of GPT-2 Large")
    ap.add_argument("--d-mlp", type=int, default=LARGE["d_mlp"])
    ap.add_argument("--d-model", type=int, default=LARGE["d_model"])
    ap.add_argument("--vocab", type=int, default=LARGE["d_vocab"])
    ap.add_argument("--basis", choices=BASES, default="we")
    ap.add_argument("--top-k", type=int, default=16)
    ap.add_argument("--chunk", default="auto", help="congruence.chunk_neurons (int or auto)")
    ap.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--gemm-every", type=int, default=2, help="time a raw product after every Nth chunk")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    shape = dict(n_layers=args.layers, d_mlp=args.d_mlp, d_model=args.d_model, d_vocab=args.vocab)
    weights = random_weights(**shape)
    chunk = resolve_chunk(args.chunk if args.chunk == "auto" else int(args.chunk), weights, args.basis, "cpu", dtype)
    U = weights.W_U.to(dtype)
    raw_out = torch.zeros(chunk, shape["d_vocab"], dtype=dtype)  # touched now: no page faults in the timed products
    raw = {"seconds": 0.0, "flops": 0.0, "n": 0, "chunks": 0}

    def time_raw(rows: torch.Tensor, start: int) -> None:
        raw["chunks"] += 1
        if (raw["chunks"] - 1) % args.gemm_every:
            return
        t = time.perf_counter()
        torch.mm(rows, U, out=raw_out[: rows.shape[0]])
        raw["seconds"] += time.perf_counter() - t
        raw["flops"] += 2.0 * rows.shape[0] * shape["d_model"] * shape["d_vocab"]
        raw["n"] += 1

    t0 = time.perf_counter()
    congruence_pass(weights, basis=args.basis, top_k=args.top_k, chunk_neurons=chunk, device="cpu", dtype=dtype,
                    progress=False, on_chunk=time_raw)
    seconds = time.perf_counter() - t0 - raw["seconds"]
    gflops = flops(weights, args.basis) / seconds / 1e9
    gemm_gflops = raw["flops"] / raw["seconds"] / 1e9
    emit({
        "gflops": round(gflops, 2), "gemm_gflops": round(gemm_gflops, 2), "ratio": round(gflops / gemm_gflops, 4),
        "peak_rss_gb": round(peak_rss_gb(), 3), "seconds": round(seconds, 2), "neurons": weights.n_neurons,
        "dtype": args.dtype, "basis": args.basis, "chunk_neurons": chunk, "top_k": args.top_k,
        "threads": torch.get_num_threads(), "raw_products_timed": raw["n"], "d_vocab": shape["d_vocab"],
        "d_model": shape["d_model"],
    })
