"""`python -m anneuron.bench tasks`: exact patching of every neuron of one layer for a task of P pairs, batched
across the pairs (anneuron.experiments.tasks.PairsModel: one engine, P rows per patched copy) against a loop over
the pairs (one patching.SuffixModel per pair, the single-pair engine), on a random GPT-2 (8 layers, d_model 256,
d_mlp 1024, the real vocabulary; CPU; `--layers`, `--d-model`, `--d-mlp`, `--pairs` for another shape) and the IOI
template of workflow/configs/tasks.yaml with P name pairs. Both give the same LDs (`max_abs_diff_ld`); the
ratio of their times is `speedup`."""

from __future__ import annotations

import argparse
import time

import torch

from anneuron.bench.common import add_gpt2_shape, emit, peak_rss_gb, random_gpt2_bridge
from anneuron.experiments import patching as P
from anneuron.experiments import tasks as T

NAMES = [("John", "Mary"), ("Tom", "Lisa"), ("Paul", "Anna"), ("Mark", "Kate"), ("Jack", "Emma"), ("Sam", "Sara"),
         ("Ben", "Lucy"), ("Mike", "Jane"), ("Dan", "Amy"), ("Tim", "Rose"), ("Bob", "Ann"), ("Joe", "Nina")]
TEMPLATE = "When {a} and {b} went to the shops, {c} gave the bag to"


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(prog="python -m anneuron.bench tasks")
    ap.add_argument("--pairs", type=int, default=12, help=f"at most {len(NAMES)}")
    ap.add_argument("--layer", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=64, help="rows per forward, as patching.batch_size")
    add_gpt2_shape(ap, layers=8, d_model=256, d_mlp=1024)
    args = ap.parse_args(argv)
    from anneuron.experiments.prompts import make_pair

    bridge = random_gpt2_bridge(args)
    pairs = [make_pair(bridge, TEMPLATE.format(a=a, b=b, c=b), TEMPLATE.format(a=a, b=b, c=a), f" {a}", f" {b}")
             for a, b in NAMES[: args.pairs]]
    task = T.TaskRuns([P.run_pair(bridge, pair, grad=False) for pair in pairs])

    t = time.perf_counter()
    model = T.PairsModel(bridge, task)
    batched = T.neuron_lds(model, task, args.layer, batch_size=args.batch_size)  # [d_mlp, P]
    batched_s = time.perf_counter() - t

    t = time.perf_counter()
    loop = []
    for runs in task.runs:
        single = P.SuffixModel(bridge, runs.corrupted, runs.pair.start, runs.pair.answer, runs.pair.wrong)
        scores = P.neuron_scores(single, runs, args.layer, batch_size=args.batch_size)
        loop.append(scores.double() * (runs.ld_clean - runs.ld_corrupted) + runs.ld_corrupted)
    loop_s = time.perf_counter() - t

    emit(dict(
        dtype="float32", threads=torch.get_num_threads(), pairs=task.n_pairs, layer=args.layer,
        n_layers=bridge.cfg.n_layers, d_model=bridge.cfg.d_model, d_mlp=bridge.cfg.d_mlp, n_pos=pairs[0].n_pos,
        suffix=pairs[0].n_pos - model.start, batch_size=args.batch_size, batched_s=round(batched_s, 3),
        loop_s=round(loop_s, 3), speedup=round(loop_s / batched_s, 2),
        max_abs_diff_ld=float((batched.double() - torch.stack(loop, 1)).abs().max()),
        peak_rss_gb=round(peak_rss_gb(), 2),
    ))
