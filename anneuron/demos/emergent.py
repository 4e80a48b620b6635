"""The offline demo model `demo-emergent`: a small GPT-2 that learns a/an from the generated corpus by itself
(docs/demos.md), so the pipeline has to find what it learned instead of what we planted.

Built from `anneuron.demos.emergent_corpus` (data) and `anneuron.demos.training` (the fast remapped-vocabulary
training); this module adds the checks that the rule was learned and writes the artifact with `training.json` beside
the model.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from transformers import GPT2LMHeadModel

from anneuron.demos.emergent_corpus import Probe, probes
from anneuron.demos.training import TrainResult, deterministic, expand_vocab, save_trained, train
from anneuron.io import read_parquet
from anneuron.stage_config import TrainConfig
from anneuron.tokenizer import gpt2_tokenizer, single_token

log = logging.getLogger(__name__)


@torch.no_grad()
def article_check(model: GPT2LMHeadModel, items: list[Probe]) -> dict:
    """On prefixes that end right before a predictable article: how often the full-vocabulary model's top-1 is the
    right article, its mean probability, and the accuracy per article."""
    tok = gpt2_tokenizer()
    ids = {"a": single_token(tok, " a"), "an": single_token(tok, " an")}
    hits = {"a": [], "an": []}
    probs = []
    for p in items:
        x = torch.tensor([[tok.bos_token_id] + tok.encode(p.prefix)])
        last = model(x).logits[0, -1]
        hits[p.article].append(int(last.argmax()) == ids[p.article])
        probs.append(float(last.softmax(-1)[ids[p.article]]))
    every = hits["a"] + hits["an"]
    return dict(
        n=len(items), accuracy=sum(every) / len(every), mean_prob=sum(probs) / len(probs),
        accuracy_a=sum(hits["a"]) / max(1, len(hits["a"])), accuracy_an=sum(hits["an"]) / max(1, len(hits["an"])),
    )


@torch.no_grad()
def top1_agreement(result: TrainResult, full: GPT2LMHeadModel, texts: list[str]) -> float:
    """Fraction of positions where the full-vocabulary model's top-1 is the remapped model's top-1 (mapped back):
    the zero rows must never win."""
    from anneuron.demos.training import remap, token_stream

    n_ctx = full.config.n_positions
    stream = token_stream(texts)
    rows = min(8, len(stream) // n_ctx)
    x = torch.from_numpy(stream[: rows * n_ctx]).view(rows, n_ctx)
    small_top = result.vocab[result.model(remap(x.flatten().numpy(), result.vocab).view(rows, n_ctx)).logits.argmax(-1)]
    full_top = full(x).logits.argmax(-1)
    return float((small_top == full_top).float().mean())


def build_emergent_model(train_path: str | Path, out_dir: str | Path, cfg: TrainConfig, *, probe_seed: int,
                         n_probes: int = 400, progress: bool = True) -> dict:
    """Train on the corpus at `train_path` (Parquet, `text`), check the article rule, save model + tokenizer +
    training.json into `out_dir`; returns the record."""
    texts = read_parquet(train_path, columns=["text"]).column("text").to_pylist()
    log.info("training on %d documents: %s", len(texts), cfg)
    result = train(texts, cfg, progress=progress)
    with deterministic(cfg.threads):
        full = expand_vocab(result.model, result.vocab)
        extra = dict(
            article_check=article_check(full, probes(n_probes, seed=probe_seed)),
            top1_agreement=top1_agreement(result, full, texts[-50:]),
        )
    log.info("trained: %s", {k: result.record[k] for k in ("step_chosen", "train_loss", "val_loss", "train_seconds")})
    log.info("checks: %s", extra)
    save_trained(out_dir, result, extra)
    return {**result.record, **extra}
