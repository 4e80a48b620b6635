"""Train a small GPT-2 on CPU, fast and deterministically, then put it back into the full GPT-2 vocabulary.

Why the remapped vocabulary: a generated corpus uses ~200 of GPT-2's 50,257 tokens, and the full unembedding costs
~1.1 s/step on 2 cores against ~40 ms/step for the remapped one (notes/transformerlens4.md). The trained weights
go back into a full-vocabulary GPT-2 at the original token ids with ZERO rows for unused tokens, so every stage of
the pipeline (real GPT-2 tokenizer, congruence over 50,257 tokens) runs on it unchanged.

Why the loss carries a constant extra logit: in the full model the ~50,000 zero rows give logit 0 each. Training
against log-sum-exp(used logits, log(#unused) + 0) is EXACTLY the cross-entropy of the full model with those rows
held at zero, so the saved model's probabilities (not only its top-1) are the ones that were trained.

Deterministic: seeded init and batches, `torch.use_deterministic_algorithms`, a fixed thread count; two runs on
the same machine give identical weights.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm
from transformers import GPT2Config, GPT2LMHeadModel

from anneuron.io import atomic_dir, write_json
from anneuron.stage_config import TrainConfig
from anneuron.tokenizer import EOS_ID, GPT2_VOCAB_SIZE, gpt2_tokenizer

log = logging.getLogger(__name__)


# fixed parts of the method, not configuration (written into training.json beside the configured ones)
VAL_FRACTION = 0.05  # of the training texts, held out for validation
EVAL_WINDOWS = 256


@dataclass
class TrainResult:
    model: GPT2LMHeadModel  # remapped vocabulary, the best-validation checkpoint
    vocab: torch.Tensor  # (V,) int64: original GPT-2 id of each remapped id, ascending
    record: dict = field(default_factory=dict)


# --- data --------------------------------------------------------------------------------------------------------


def token_stream(texts: Sequence[str], tokenizer=None) -> np.ndarray:
    """(N,) int64: the documents' tokens joined by EOS, EOS first (the pipeline's `concat` stream)."""
    tokenizer = tokenizer or gpt2_tokenizer()
    out = [np.array([EOS_ID], dtype=np.int64)]
    for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"]:
        out.append(np.asarray(ids + [EOS_ID], dtype=np.int64))
    return np.concatenate(out)


def vocabulary(*streams: np.ndarray) -> torch.Tensor:
    """(V,) int64: the sorted GPT-2 ids these streams use, EOS/BOS always included."""
    ids = np.unique(np.concatenate([*streams, np.array([EOS_ID])]))
    return torch.from_numpy(ids.astype(np.int64))


def remap(stream: np.ndarray, vocab: torch.Tensor) -> torch.Tensor:
    """(N,) GPT-2 ids -> remapped ids (positions in `vocab`); every id must be in `vocab`."""
    table = torch.full((GPT2_VOCAB_SIZE,), -1, dtype=torch.int64)
    table[vocab] = torch.arange(len(vocab))
    out = table[torch.from_numpy(stream)]
    if (out < 0).any():
        raise ValueError("stream has tokens outside the vocabulary")
    return out


def sample_batch(stream: torch.Tensor, batch: int, seq: int, bos: int, gen: torch.Generator
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Random windows shaped like the pipeline's rows: x = BOS + w[:-1], y = w, with w `seq` stream tokens.
    x, y: (batch, seq)."""
    starts = torch.randint(0, len(stream) - seq, (batch,), generator=gen)
    w = torch.stack([stream[s : s + seq] for s in starts.tolist()])
    x = torch.cat([torch.full((batch, 1), bos, dtype=w.dtype), w[:, :-1]], dim=1)
    return x, w


def eval_windows(stream: torch.Tensor, n: int, seq: int, bos: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Up to `n` evenly spaced fixed windows (the same every evaluation)."""
    n = max(1, min(n, (len(stream) - 1) // seq))
    starts = torch.linspace(0, len(stream) - seq - 1, n).long()
    w = torch.stack([stream[s : s + seq] for s in starts.tolist()])
    x = torch.cat([torch.full((n, 1), bos, dtype=w.dtype), w[:, :-1]], dim=1)
    return x, w


# --- model and loss ----------------------------------------------------------------------------------------------


def small_model(cfg: TrainConfig, vocab_size: int) -> GPT2LMHeadModel:
    """A GPT-2 over the remapped vocabulary; no dropout (it spreads the mechanism out)."""
    torch.manual_seed(cfg.seed)
    return GPT2LMHeadModel(_gpt2_config(cfg.n_layer, cfg.d_model, cfg.d_mlp, cfg.n_head, cfg.n_ctx, cfg.tied,
                                        vocab_size))


def _gpt2_config(n_layer: int, d_model: int, d_mlp: int, n_head: int, n_ctx: int, tied: bool,
                 vocab_size: int) -> GPT2Config:
    bos = EOS_ID if vocab_size == GPT2_VOCAB_SIZE else None
    return GPT2Config(
        vocab_size=vocab_size, n_positions=n_ctx, n_embd=d_model, n_layer=n_layer, n_head=n_head,
        n_inner=d_mlp, activation_function="gelu_new", resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
        tie_word_embeddings=tied, bos_token_id=bos, eos_token_id=bos, attn_implementation="eager",
    )


def full_vocab_loss(logits: torch.Tensor, targets: torch.Tensor, n_unused: int) -> torch.Tensor:
    """Mean cross-entropy of the full-vocabulary model: `logits` (..., V) over the used tokens, plus `n_unused`
    tokens whose logit is exactly 0 (zero embedding rows)."""
    extra = torch.full((*logits.shape[:-1], 1), math.log(n_unused) if n_unused else -math.inf, dtype=logits.dtype)
    return F.cross_entropy(torch.cat([logits, extra], -1).flatten(0, -2), targets.flatten())


@torch.no_grad()
def _evaluate(model: GPT2LMHeadModel, x: torch.Tensor, y: torch.Tensor, n_unused: int, chunk: int = 16) -> float:
    total = 0.0
    for i in range(0, len(x), chunk):
        rows = slice(i, i + chunk)
        total += full_vocab_loss(model(x[rows]).logits, y[rows], n_unused).item() * len(x[rows])
    return total / len(x)


@contextlib.contextmanager
def deterministic(threads: int) -> Iterator[None]:
    """Deterministic kernels and a fixed thread count for the block (restored afterwards)."""
    prev_det, prev_threads = torch.are_deterministic_algorithms_enabled(), torch.get_num_threads()
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(prev_det)
        torch.set_num_threads(prev_threads)


def train(train_texts: Sequence[str], cfg: TrainConfig, progress: bool = True,
          n_eval: int = EVAL_WINDOWS) -> TrainResult:
    """AdamW with linear warm-up, evaluated every `eval_every` steps on held-back documents.

    Keeps the LATEST checkpoint whose validation loss is within `val_tolerance` of the lowest so far, and stops
    once validation loss has stayed above that band for `patience` evaluations: the model is taken before
    validation loss rises, and a flat (noisy) plateau does not cut training short."""
    n_val = max(1, int(len(train_texts) * VAL_FRACTION))
    train_stream = token_stream(train_texts[:-n_val])
    val_stream = token_stream(train_texts[-n_val:])
    vocab = vocabulary(train_stream, val_stream)
    n_unused = GPT2_VOCAB_SIZE - len(vocab)
    tr, va = remap(train_stream, vocab), remap(val_stream, vocab)
    bos = int((vocab == EOS_ID).nonzero())
    seq = cfg.n_ctx
    t0 = time.perf_counter()
    with deterministic(cfg.threads):
        model = small_model(cfg, len(vocab)).train()
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / max(1, cfg.warmup)))
        gen = torch.Generator().manual_seed(cfg.seed)
        xv, yv = eval_windows(va, n_eval, seq, bos)
        xt, yt = eval_windows(tr, n_eval, seq, bos)
        best = dict(step=0, val=math.inf, train=math.inf)
        best_state, curve, above, min_val = None, [], 0, math.inf
        bar = tqdm(range(1, cfg.steps + 1), desc="train", disable=not progress, mininterval=5)
        for step in bar:
            x, y = sample_batch(tr, cfg.batch_size, seq, bos, gen)
            loss = full_vocab_loss(model(x).logits, y, n_unused)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            if step % cfg.eval_every == 0 or step == cfg.steps:
                model.eval()
                point = dict(step=step, train=_evaluate(model, xt, yt, n_unused),
                             val=_evaluate(model, xv, yv, n_unused))
                model.train()
                curve.append(point)
                bar.set_postfix(train=f"{point['train']:.4f}", val=f"{point['val']:.4f}")
                log.info("step %d train %.4f val %.4f", step, point["train"], point["val"])
                min_val = min(min_val, point["val"])
                if point["val"] <= min_val + cfg.val_tolerance:
                    best, best_state, above = point, copy.deepcopy(model.state_dict()), 0
                else:
                    above += 1
                    if above >= cfg.patience:
                        log.info("validation loss above its minimum + %g for %d evaluations: stopping",
                                 cfg.val_tolerance, above)
                        break
        model.load_state_dict(best_state)
        model.eval()
    record = dict(
        config={**cfg.to_dict(), "val_fraction": VAL_FRACTION, "eval_windows": n_eval},
        vocab_size=len(vocab), train_tokens=int(len(tr)), val_tokens=int(len(va)),
        steps_run=curve[-1]["step"], step_chosen=best["step"], train_loss=best["train"], val_loss=best["val"],
        min_val_loss=min_val,
        train_seconds=round(time.perf_counter() - t0, 1), curve=curve, torch_version=torch.__version__,
    )
    return TrainResult(model, vocab, record)


# --- back into the full vocabulary -------------------------------------------------------------------------------


@torch.no_grad()
def expand_vocab(small: GPT2LMHeadModel, vocab: torch.Tensor) -> GPT2LMHeadModel:
    """The same network over GPT-2's 50,257 tokens: embedding (and unembedding) rows at the original ids, zero
    rows elsewhere. Logits at used ids equal the small model's; unused ids get exactly 0."""
    c = small.config
    full = GPT2LMHeadModel(_gpt2_config(c.n_layer, c.n_embd, c.n_inner, c.n_head, c.n_positions,
                                        c.tie_word_embeddings, GPT2_VOCAB_SIZE)).eval()
    state = {}
    for k, v in small.state_dict().items():
        if k in ("transformer.wte.weight", "lm_head.weight"):
            big = torch.zeros(GPT2_VOCAB_SIZE, v.shape[1], dtype=v.dtype)
            big[vocab] = v
            v = big
        state[k] = v
    full.load_state_dict(state, strict=False)
    missing = {k for k in full.state_dict()} - set(state)
    if missing - {"lm_head.weight"}:
        raise RuntimeError(f"expand_vocab: weights not copied: {sorted(missing)}")
    return full


def save_trained(out_dir: str | Path, result: TrainResult, extra: dict | None = None) -> GPT2LMHeadModel:
    """Save the full-vocabulary model, the GPT-2 tokenizer and `training.json` atomically (so
    `anneuron.models.load_model` works on the folder)."""
    full = expand_vocab(result.model, result.vocab)
    with atomic_dir(out_dir) as tmp:
        full.save_pretrained(tmp)
        gpt2_tokenizer().save_pretrained(tmp)
        write_json(Path(tmp) / "training.json", {**result.record, **(extra or {})})
    return full
