"""Shared measuring helpers for the benchmarks."""

from __future__ import annotations

import json
import resource
import time
from pathlib import Path
from typing import Callable


def peak_rss_gb() -> float:
    """Peak resident set size of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def best_time(fn: Callable[[], object], repeat: int = 3) -> float:
    """Best wall time of `repeat` calls: the least disturbed by other load on a shared machine."""
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def emit(result: dict) -> None:
    """The benchmark contract: one JSON object on the last line."""
    print(json.dumps(result, sort_keys=True))


def random_gpt2(folder: Path, *, n_layer: int = 12, d_model: int = 768, d_mlp: int = 3072, n_head: int = 12,
                n_ctx: int = 1024, seed: int = 0, ln_noise: float = 0.2, bias_noise: float = 0.0,
                weight_scale: float = 1.0, tied: bool = True) -> Path:
    """A random GPT-2 (GPT-2 small's shape by default) with the real tokenizer and randomised LayerNorms (so the
    processed model differs from the raw one), saved to `folder`. `bias_noise` and `weight_scale` push the other
    parameters away from their init (the tests' models, whose activations must be far from trivial)."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from anneuron.tokenizer import gpt2_tokenizer

    tok = gpt2_tokenizer()
    cfg = GPT2Config(vocab_size=len(tok), n_positions=n_ctx, n_embd=d_model, n_layer=n_layer, n_head=n_head,
                     n_inner=d_mlp, activation_function="gelu_new", resid_pdrop=0.0, embd_pdrop=0.0,
                     attn_pdrop=0.0, tie_word_embeddings=tied, bos_token_id=tok.bos_token_id,
                     eos_token_id=tok.eos_token_id)
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(cfg).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "ln" in name:
                p.copy_((1.0 if name.endswith("weight") else 0.0) + ln_noise * torch.randn(p.shape, generator=g))
            elif name.endswith("bias") and bias_noise:
                p.copy_(bias_noise * torch.randn(p.shape, generator=g))
            elif not name.endswith("bias") and weight_scale != 1.0:
                p.mul_(weight_scale)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder
