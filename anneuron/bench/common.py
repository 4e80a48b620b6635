"""Shared measuring helpers for the benchmarks."""

from __future__ import annotations

import json
import os
import resource
import time
from pathlib import Path
from typing import Callable


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


def timed(fn: Callable[[], object]) -> float:
    """Seconds of one call of fn (wall clock)."""
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


# The default shapes of the benchmarks on a random model of a family: GPT-2 small, and SmolLM2-135M for Llama
# (d_mlp: 4 d_model when absent).
SHAPES = {"gpt2": dict(layers=12, d_model=768), "llama": dict(layers=30, d_model=576, d_mlp=1536)}


def add_arch_shape(ap, *, arch: str, threads: int) -> None:
    """The options of a benchmark on a random model of a family (build_model): its family, its shape (SHAPES'
    by default) and torch threads."""
    ap.add_argument("--arch", default=arch, choices=list(SHAPES))
    ap.add_argument("--layers", type=int, default=None, help="default: 12 (gpt2), 30 (llama)")
    ap.add_argument("--d-model", type=int, default=None, help="default: 768 (gpt2), 576 (llama)")
    ap.add_argument("--d-mlp", type=int, default=None, help="default: 4 d_model (gpt2), 1536 (llama)")
    ap.add_argument("--threads", type=int, default=threads, help="torch threads")


def parse_arch_shape(ap, argv: list[str]):
    """Parses argv (add_arch_shape's options), fills the shape the family's defaults leave open, sets torch's threads
    and keeps the hub offline."""
    import torch

    args = ap.parse_args(argv)
    shape = SHAPES[args.arch]
    args.layers = args.layers or shape["layers"]
    args.d_model = args.d_model or shape["d_model"]
    args.d_mlp = args.d_mlp or shape.get("d_mlp") or 4 * args.d_model
    torch.set_num_threads(args.threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return args


def build_model(arch: str, folder: Path, layers: int, d_model: int, d_mlp: int, n_ctx: int) -> Path:
    """A random model of the family: heads of 64 dimensions (Llama: a third of them key/value heads, as in
    SmolLM2), randomised norms."""
    if arch == "gpt2":
        from anneuron.demos.gpt2 import random_gpt2

        return random_gpt2(folder, n_layer=layers, d_model=d_model, d_mlp=d_mlp, n_head=d_model // 64, n_ctx=n_ctx)
    from anneuron.demos.llama import random_llama

    n_head = d_model // 64
    return random_llama(folder, n_layer=layers, d_model=d_model, d_mlp=d_mlp, n_head=n_head,
                        n_kv_head=max(1, n_head // 3), n_ctx=n_ctx, norm_noise=0.1, weight_scale=1.0)
