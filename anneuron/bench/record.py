"""`python -m anneuron.bench record`: the cost of the dataset pass over a bare forward, on a GPT-2-small-shaped
random model (12 layers, d_model 768, d_mlp 3072, the real 50,257-token vocabulary) on this CPU, or with
`--arch llama` a SmolLM2-135M-shaped random Llama (30 layers, d_model 576, d_mlp 1536 gated, 9 heads over 3
key/value heads, RoPE, RMSNorm; GPT-2's vocabulary).

The bare forward and the recording pass use the same engine (anneuron.dataset.engines; default: the Hugging Face model
with SDPA attention, GPT-2's gelu_new fused); --compare-bridge also times the TransformerBridge's bare forward.
The recording pass = forward with hooks on every layer's hook_post, the top-1 prediction and its probability,
a default-sized watch set, the running top-k examples of all 36,864 neurons, and the Parquet write.
Bare and recording runs are interleaved batch by batch on the same batches, so drift of a shared machine cancels.
With `--dtype bfloat16` / `float16` the body runs in that precision and both passes read their logits through the
float32 final norm and unembedding (anneuron.dataset.engines), as `record` does.

The top-k update touches only neurons whose batch maximum reaches their k-th value, so its cost falls as the
pass goes on. Each timed round measures, on the same batch and in rotating order, the bare forward, the recording
pass with no neuron updated (`overhead_floor`: thresholds above every value) and with every neuron updated
(`overhead_cold`: an empty top-k, the first batches of a run). The cost is linear in the share of neurons
updated, so `overhead` = floor + f_run·(cold − floor) with f_run the mean share over a run of `--run-tokens`
tokens in batches of this size (run_fraction: an upper bound). Reaching that regime by recording would take
thousands of forwards: ~k/t of the neurons are still updated at batch t.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from anneuron.bench.common import add_arch_shape, build_model, emit, parse_arch_shape, peak_rss_gb, timed
from anneuron.data import Row


def corpus_rows(n_rows: int, seq_len: int, mean_doc: int, seed: int = 0) -> list[tuple[int, Row]]:
    """Concat-like rows of random tokens: documents of random length (mean `mean_doc` tokens) cut into rows."""
    rng = np.random.default_rng(seed)
    rows, doc, left = [], 0, int(rng.exponential(mean_doc)) + 1
    for c in range(n_rows):
        docs = []
        for _ in range(seq_len - 1):
            if left == 0:
                doc, left = doc + 1, int(rng.exponential(mean_doc)) + 1
            docs.append(doc)
            left -= 1
        toks = [50256] + rng.integers(0, 50256, seq_len - 1).tolist()
        rows.append((c, Row(toks, [docs[0]] + docs, int(rng.integers(0, 50256)))))
    return rows


def run_fraction(k: int, batches: int) -> float:
    """Mean share of neurons whose top-k is touched over a run of `batches` batches, if documents were i.i.d.:
    a batch can only change a neuron's top-k if one of its documents beats the k-th best of all documents so far,
    probability ~k/t at batch t (1 for t <= k). Real neurons fire on rarer, clustered contexts: an upper bound
    (the planted demo measured 0.64 where this gives ~1)."""
    return sum(min(1.0, k / t) for t in range(1, batches + 1)) / batches


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(prog="python -m anneuron.bench record", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=8, help="timed rounds of (bare, frozen, cold) batches")
    ap.add_argument("--watch", type=int, default=23, help="watched neurons (20 pairs + 3 listed by default)")
    ap.add_argument("--top-k", type=int, default=20)
    ap.add_argument("--mean-doc", type=int, default=1000, help="mean document length in tokens (pile-10k: ~1000)")
    ap.add_argument("--run-tokens", type=int, default=10_000_000, help="tokens of the run projected (pile-10k)")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"],
                    help="the body's precision (the head is float32 whatever it is)")
    add_arch_shape(ap, arch="gpt2", threads=1)  # 1 thread: least disturbed on a shared CPU
    ap.add_argument("--engine", default="auto", choices=["auto", "hf", "bridge"])
    ap.add_argument("--compare-bridge", action="store_true",
                    help="also time the TransformerBridge's bare forward (the engine's speed-up)")
    args = parse_arch_shape(ap, argv)

    from anneuron.contracts import record_schema
    from anneuron.dataset.engines import BridgeEngine, load_engine
    from anneuron.dataset.max_examples import TopKTracker
    from anneuron.dataset.record import Recorder, _to_table, token_writer
    from anneuron.models import load_model

    d_mlp = args.d_mlp
    neurons = args.layers * d_mlp
    n_tok = args.batch * args.seq_len
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        build_model(args.arch, tmp / "model", args.layers, args.d_model, d_mlp, max(1024, args.seq_len))
        dtype = getattr(torch, args.dtype)
        engine = load_engine(str(tmp / "model"), device="cpu", dtype=dtype, engine=args.engine)
        bridge = (BridgeEngine(load_model(str(tmp / "model"), device="cpu", dtype=dtype))
                  if args.compare_bridge and not isinstance(engine, BridgeEngine) else None)
        rng = np.random.default_rng(1)
        flat = rng.choice(neurons, args.watch, replace=False)
        watched = sorted((int(f) // d_mlp, int(f) % d_mlp) for f in flat)
        rows = corpus_rows((1 + args.rounds) * args.batch, args.seq_len, args.mean_doc)
        batches = [rows[i * args.batch:(i + 1) * args.batch] for i in range(1 + args.rounds)]
        schema = record_schema(watched, pred_post=False, pred_topk=0)  # the plain token table, no extra columns
        rec = Recorder(engine, watched, top_k=args.top_k, pred_post=False, pred_topk=0)

        def bare(b, eng=engine) -> float:
            toks = torch.tensor([r.tokens for _, r in b])
            with torch.no_grad():
                return timed(lambda: eng.logits(toks))

        def record(b, state: str) -> float:
            """state cold: an empty top-k (every neuron updated); frozen: thresholds at +inf (none updated, the
            floor: hooks, run maxima, predictions, watched columns, the table)."""
            rec.tracker = TopKTracker(args.layers, d_mlp, args.top_k, rec.device)
            if state == "frozen":
                rec.tracker.vals.fill_(float("inf"))
            with token_writer(tmp / "tokens.parquet", schema) as w:
                t = time.perf_counter()
                with rec:  # hooks on for this batch only, so that the bare forwards run unhooked
                    cols = rec.run_batch([c for c, _ in b], [r for _, r in b])
                w.write_table(_to_table(cols, schema))
                dt = time.perf_counter() - t
            assert int(rec.tracker.updated) == (neurons if state == "cold" else 0)
            return dt

        bare(batches[0])  # warm the allocator and kernels
        record(batches[0], "cold")
        times: dict[str, list[float]] = {"bare": [], "frozen": [], "cold": [], "bridge": []}
        for i, b in enumerate(batches[1:]):
            steps = [("bare", lambda: bare(b)), ("frozen", lambda: record(b, "frozen")),
                     ("cold", lambda: record(b, "cold"))]
            if bridge is not None:
                steps.append(("bridge", lambda: bare(b, bridge)))
            for name, fn in steps[i % len(steps):] + steps[:i % len(steps)]:  # rotate: drift cancels
                times[name].append(fn())
        # per round, each pass over its neighbour bare forward; the median round (bursts of load on a shared
        # machine hit single measurements)
        ratio = {k: statistics.median(x / y for x, y in zip(v, times["bare"])) for k, v in times.items() if v}
        floor, cold = ratio["frozen"], ratio["cold"]
        frac = run_fraction(args.top_k, max(1, args.run_tokens // n_tok))
        overhead = floor + frac * (cold - floor)
        extra = {}
        if bridge is not None:
            extra = dict(bridge_bare_tok_s=round(n_tok / statistics.median(times["bridge"]), 1),
                         engine_speedup=round(ratio["bridge"], 3))
        emit(dict(
            bench="record", arch=args.arch, engine=type(engine).__name__, dtype=args.dtype, threads=args.threads,
            shape=f"{args.layers}x{args.d_model}x{d_mlp}", neurons=neurons, watched=len(watched), top_k=args.top_k,
            batch=args.batch, seq_len=args.seq_len, rounds=args.rounds,
            bare_tok_s=round(n_tok / statistics.median(times["bare"]), 1),
            record_tok_s=round(n_tok / (statistics.median(times["bare"]) * overhead), 1),
            overhead=round(overhead, 4),
            overhead_method="floor + f_run * (cold - floor), f_run = mean share of neurons updated over the run",
            overhead_floor=round(floor, 4), overhead_cold=round(cold, 4), f_run=round(frac, 4),
            overhead_floor_rounds=[round(x / y, 3) for x, y in zip(times["frozen"], times["bare"])],
            overhead_cold_rounds=[round(x / y, 3) for x, y in zip(times["cold"], times["bare"])],
            run_tokens=args.run_tokens,
            record_cold_tok_s=round(n_tok / statistics.median(times["cold"]), 1),
            record_floor_tok_s=round(n_tok / statistics.median(times["frozen"]), 1),
            peak_rss_gb=round(peak_rss_gb(), 2), **extra,
        ))
