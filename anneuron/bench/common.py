"""Shared measuring helpers for the benchmarks."""

from __future__ import annotations

import json
import resource


def peak_rss_gb() -> float:
    """Peak resident set size of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def emit(result: dict) -> None:
    """The benchmark contract: one JSON object on the last line."""
    print(json.dumps(result, sort_keys=True))


def add_gpt2_shape(ap, *, layers: int, d_model: int, d_mlp: int) -> None:
    """The options of a benchmark on a random GPT-2: torch threads and the model's shape."""
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--layers", type=int, default=layers)
    ap.add_argument("--d-model", type=int, default=d_model, help="a multiple of 64 (heads of 64 dimensions)")
    ap.add_argument("--d-mlp", type=int, default=d_mlp)


def random_gpt2_bridge(args):
    """Sets args.threads, then a random GPT-2 of args' shape (add_gpt2_shape), loaded as the pipeline loads it."""
    import tempfile
    from pathlib import Path

    import torch

    from anneuron.demos.gpt2 import random_gpt2
    from anneuron.models import load_model

    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        folder = random_gpt2(Path(tmp) / "gpt2-random", n_layer=args.layers, d_model=args.d_model, d_mlp=args.d_mlp,
                             n_head=args.d_model // 64, ln_noise=0.1)
        return load_model(str(folder), device="cpu", dtype="float32")
