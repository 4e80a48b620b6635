"""`python -m anneuron.bench stages`: the cost of the stages of inference against the dataset pass, on the same
random rows, on a SmolLM2-135M-shaped random Llama by default (30 layers, d_model 576, d_mlp 1536 gated, 9 heads
over 3 key/value heads; GPT-2's 50,257-token vocabulary) or with `--arch gpt2` a GPT-2-small-shaped one.

Timed, each on the same token shard (`--rows` rows of `--seq-len` tokens) and one after another, `--rounds` times
(the median is reported; a shared machine drifts):
- `record`: the dataset pass's job itself (anneuron.dataset.record.record_shard, default engine: the Hugging Face
  model with SDPA attention; 23 watched neurons, top-20 examples of every neuron);
- `layers`: the stages_layers job (anneuron.stages.layer_stats: eager attention, every hook, the logit lens at
  `--lens-fraction` of the positions), and again with no lens position, to split the lens's share off;
- `interventions`: the stages_interventions job over the first `--intervention-rows` rows, and one bare SDPA
  forward over the same rows: `interventions_forwards` = its time in bare forwards, against 2L−1 interventions.
`layers_overhead` = layers time / record time on the same tokens (1.0: as costly as the dataset pass).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import numpy as np
import torch

from anneuron.bench.common import add_arch_shape, build_model, emit, parse_arch_shape, peak_rss_gb, timed
from anneuron.bench.record import corpus_rows


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(prog="python -m anneuron.bench stages", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arch_shape(ap, arch="llama", threads=2)
    ap.add_argument("--seq-len", type=int, default=512)
    ap.add_argument("--rows", type=int, default=4)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--lens-fraction", type=float, default=0.125,
                    help="share of positions with the logit lens (smollm2-wiki: 2,048 of 16,384 = 0.125)")
    ap.add_argument("--intervention-rows", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=1)
    args = parse_arch_shape(ap, argv)

    from anneuron.data import write_shards
    from anneuron.dataset.engines import load_engine
    from anneuron.dataset.record import record_shard
    from anneuron.models import load_hf
    from anneuron.stages.interventions import interventions
    from anneuron.stages.layer_stats import layer_stats

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        folder = build_model(args.arch, tmp / "model", args.layers, args.d_model, args.d_mlp,
                             max(1024, args.seq_len))
        rows = corpus_rows(args.rows, args.seq_len, 1000)
        shard = tmp / "shard-0.parquet"
        write_shards([r for _, r in rows], [shard])
        n_tok = sum(len(r.tokens) for _, r in rows)
        n_int = sum(len(r.tokens) for _, r in rows[:args.intervention_rows])
        rng = np.random.default_rng(1)
        flat = rng.choice(args.layers * args.d_mlp, 23, replace=False)
        watched = sorted((int(f) // args.d_mlp, int(f) % args.d_mlp) for f in flat)
        engine = load_engine(str(folder), device="cpu", dtype="float32", engine="auto")
        eager = load_hf(str(folder), "cpu", "float32", "eager")
        sdpa = load_hf(str(folder), "cpu", "float32", "sdpa")
        bare_toks = torch.tensor([r.tokens for _, r in rows[:args.intervention_rows]])

        steps = {
            "record": lambda: record_shard(engine, shard, tmp / "tokens.parquet", tmp / "topk.parquet", watched,
                                           batch_size=args.batch, top_k=20, pred_post=False, pred_topk=0,
                                           progress=False),
            "layers": lambda: layer_stats(eager, [shard], max_tokens=n_tok, lens_tokens=round(args.lens_fraction *
                                          n_tok), batch_size=args.batch, seed=0, progress=False),
            "layers_no_lens": lambda: layer_stats(eager, [shard], max_tokens=n_tok, lens_tokens=1,
                                                  batch_size=args.batch, seed=0, progress=False),
            "bare": lambda: sdpa.base_model(input_ids=bare_toks, use_cache=False),
            "interventions": lambda: interventions(sdpa, [shard], intervention_tokens=n_int, batch_size=args.batch,
                                                   progress=False),
        }
        with torch.no_grad():
            sdpa.base_model(input_ids=bare_toks[:, :8], use_cache=False)  # warm up
            times = {k: [] for k in steps}
            for _ in range(args.rounds):
                for k, fn in steps.items():
                    times[k].append(timed(fn))
        t = {k: statistics.median(v) for k, v in times.items()}
        n_interventions = 2 * args.layers - 1
        emit(dict(
            bench="stages", arch=args.arch, shape=f"{args.layers}x{args.d_model}x{args.d_mlp}", threads=args.threads,
            tokens=n_tok, seq_len=args.seq_len, batch=args.batch, lens_fraction=args.lens_fraction,
            intervention_tokens=n_int, rounds=args.rounds,
            record_tok_s=round(n_tok / t["record"], 1), layers_tok_s=round(n_tok / t["layers"], 1),
            layers_overhead=round(t["layers"] / t["record"], 3),
            layers_no_lens_overhead=round(t["layers_no_lens"] / t["record"], 3),
            lens_share=round(max(0.0, t["layers"] - t["layers_no_lens"]) / t["layers"], 3),
            interventions_tok_s=round(n_int / t["interventions"], 2), interventions=n_interventions,
            interventions_forwards=round(t["interventions"] / t["bare"], 2),
            forwards_per_intervention=round(t["interventions"] / t["bare"] / n_interventions, 3),
            seconds={k: round(v, 2) for k, v in t.items()}, peak_rss_gb=round(peak_rss_gb(), 2),
        ))
