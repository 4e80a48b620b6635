"""`python -m anneuron.bench patching`: exact patching of every neuron of one layer, the naive way (one full hooked
forward per neuron, as the post and TransformerLens' patching helpers do; a sample timed and scaled) against the
batched suffix-only engine of anneuron.experiments.patching, on a GPT-2-small-shaped random model (12 layers, d_model
768, d_mlp 3072, the real vocabulary; CPU; `--layers`, `--d-model`, `--d-mlp` for another shape) and the post's
~20-token an/a prompt pair, which differs 4 tokens from its end.

Also timed: the engine recomputing every position (start = 0) instead of only the suffix, and attribution patching
(one clean forward, one corrupted forward and backward). `max_abs_diff` compares naive and engine scores on the
sampled neurons. `gpt2_large_*` is the paper estimate for all 184,320 neurons of GPT-2 Large on this prompt:
FLOPs of the engine (counted below) and the time they take on one H100 at an assumed utilisation.
"""

from __future__ import annotations

import argparse
import time

import torch

from anneuron.bench.common import add_gpt2_shape, emit, peak_rss_gb, random_gpt2_bridge
from anneuron.experiments import patching as P

CLEAN = "I climbed up the pear tree and picked a pear. I climbed up the apple tree and picked"
CORRUPTED = "I climbed up the pear tree and picked a pear. I climbed up the lemon tree and picked"
LARGE = dict(n_layers=36, d_model=1280, d_mlp=5120)
H100_BF16_TFLOPS = 989.0  # dense bf16 peak, SXM
H100_UTILISATION = 0.3  # small GEMMs (batch x suffix rows x d_model): a conservative share of peak


def engine_flops(layer: int, n_layers: int, d_model: int, d_mlp: int, n_prefix: int, n_suffix: int) -> float:
    """Multiply-adds × 2 of one patched copy of a neuron of `layer`: blocks layer+1.. on the suffix positions
    (queries, attention over prefix + suffix keys, MLP), the last block's queries and MLP at the last position only."""
    keys = n_prefix + n_suffix
    per_pos = 2 * (4 * d_model**2 + 2 * d_model * d_mlp) + 4 * d_model * keys  # QKVO + MLP + scores and mixing
    full = max(0, n_layers - layer - 2) * n_suffix * per_pos
    last = 2 * 2 * d_model**2 * n_suffix + (per_pos - 2 * 2 * d_model**2) if layer < n_layers - 1 else 0
    return float(full + last + 2 * d_model)


def all_neurons_flops(n_layers: int, d_model: int, d_mlp: int, n_prefix: int, n_suffix: int) -> float:
    return sum(d_mlp * engine_flops(l, n_layers, d_model, d_mlp, n_prefix, n_suffix) for l in range(n_layers))


def naive_flops(n_layers: int, d_model: int, d_mlp: int, n_pos: int, d_vocab: int = 50257) -> float:
    """One full forward of the prompt (every layer, every position, every logit)."""
    per_pos = 2 * (4 * d_model**2 + 2 * d_model * d_mlp) + 4 * d_model * n_pos
    return float(n_layers * n_pos * per_pos + 2 * n_pos * d_model * d_vocab)


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(prog="python -m anneuron.bench patching")
    ap.add_argument("--layer", type=int, default=9)
    ap.add_argument("--sample", type=int, default=24, help="neurons patched the naive way (time scaled up)")
    ap.add_argument("--batch-size", type=int, default=64)
    add_gpt2_shape(ap, layers=12, d_model=768, d_mlp=3072)
    args = ap.parse_args(argv)
    from anneuron.experiments.prompts import make_pair

    bridge = random_gpt2_bridge(args)
    pair = make_pair(bridge, CLEAN, CORRUPTED, " an", " a")
    d_mlp, n_layers = bridge.cfg.d_mlp, bridge.cfg.n_layers
    runs = P.run_pair(bridge, pair, grad=False)
    sample = torch.linspace(0, d_mlp - 1, args.sample).long().tolist()

    t = time.perf_counter()
    naive = P.naive_neuron_scores(bridge, runs, args.layer, sample)
    naive_s = (time.perf_counter() - t) * d_mlp / len(sample)

    t = time.perf_counter()
    model = P.SuffixModel(bridge, runs.corrupted, pair.start, pair.answer, pair.wrong)
    ours = P.neuron_scores(model, runs, args.layer, batch_size=args.batch_size)
    ours_s = time.perf_counter() - t

    t = time.perf_counter()
    every_pos = P.SuffixModel(bridge, runs.corrupted, 0, pair.answer, pair.wrong)
    ours_full = P.neuron_scores(every_pos, runs, args.layer, batch_size=args.batch_size)
    ours_all_positions_s = time.perf_counter() - t

    t = time.perf_counter()
    graded = P.run_pair(bridge, pair, grad=True)
    P.attribution_scores(graded)
    attribution_s = time.perf_counter() - t

    n_prefix, n_suffix = pair.start, pair.n_pos - pair.start
    large_flops = all_neurons_flops(**LARGE, n_prefix=n_prefix, n_suffix=n_suffix)
    large_naive = naive_flops(**LARGE, n_pos=pair.n_pos) * LARGE["n_layers"] * LARGE["d_mlp"]
    emit(dict(
        dtype="float32", threads=torch.get_num_threads(), layer=args.layer, d_mlp=d_mlp, n_layers=n_layers,
        n_pos=pair.n_pos, suffix=n_suffix, batch_size=args.batch_size, sample=len(sample),
        naive_s=round(naive_s, 2), ours_s=round(ours_s, 3), speedup=round(naive_s / ours_s, 1),
        ours_all_positions_s=round(ours_all_positions_s, 3),
        suffix_vs_all_positions=round(ours_all_positions_s / ours_s, 2),
        attribution_s=round(attribution_s, 3),
        ld_gap=round(runs.ld_clean - runs.ld_corrupted, 4),
        max_abs_diff=float((naive - ours[sample]).abs().max()),
        max_abs_diff_ld=float((naive - ours[sample]).abs().max() * abs(runs.ld_clean - runs.ld_corrupted)),
        max_abs_diff_all_positions=float((ours_full - ours).abs().max()),
        flops_ratio_layer=round(naive_flops(n_layers, bridge.cfg.d_model, d_mlp, pair.n_pos)
                                / engine_flops(args.layer, n_layers, bridge.cfg.d_model, d_mlp, n_prefix, n_suffix),
                                1),
        gpt2_large_tflop=round(large_flops / 1e12, 1), gpt2_large_naive_tflop=round(large_naive / 1e12, 1),
        gpt2_large_h100_s=round(large_flops / (H100_BF16_TFLOPS * 1e12 * H100_UTILISATION), 1),
        h100_assumed=f"{H100_BF16_TFLOPS:g} TFLOP/s bf16 x {H100_UTILISATION:g}",
        peak_rss_gb=round(peak_rss_gb(), 2),
    ))
