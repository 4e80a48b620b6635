"""Random GPT-2s for tests, benchmarks and the dress rehearsal (GPT-2 Large's shape): the real tokenizer,
randomised LayerNorms, and on request a real model's logit scale. The GPT-2 twin of anneuron.demos.llama."""

from __future__ import annotations

from pathlib import Path


def random_gpt2(folder: Path, *, n_layer: int = 12, d_model: int = 768, d_mlp: int = 3072, n_head: int = 12,
                n_ctx: int = 1024, seed: int = 0, ln_noise: float = 0.2, bias_noise: float = 0.0,
                weight_scale: float = 1.0, tied: bool = True, logit_std: float | None = None,
                logit_offset: float = 0.0, logit_prior: float = 0.0) -> Path:
    """A random GPT-2 (GPT-2 small's shape by default) with the real tokenizer and randomised LayerNorms (so the
    processed model differs from the raw one), saved to `folder`. `bias_noise` and `weight_scale` push the other
    parameters away from their init (the tests' models, whose activations must be far from trivial).

    A real model's logit scale (untied only): `logit_std` scales the unembedding so that the logits, centred per
    position, have this standard deviation (a random init gives ~0.2; GPT-2 Large's span ~[-10, 25]; at std 3 a
    random 4 x 128 model's span ~[-16, 17], with a top-2 gap below 0.1 at 7-25% of its positions, 0-11% with
    logit_prior 1);
    `logit_offset` adds a per-position constant of about that value to the raw logits (GPT-2's raw logits sit near
    -60..-130, where bfloat16 can only represent multiples of 0.25-0.5), through residual coordinate 0: ln_f
    maps it to ~offset/8 at every position and every row of the unembedding reads it with weight 8.
    `logit_prior` adds a Zipf-like unigram prior, -logit_prior x ln(rank) for a random ranking of the vocabulary
    (through coordinate 1, which ln_f makes the constant 1): a real model's logits are a context-dependent part on
    top of such a frequency prior, which makes their top heavy-tailed (a random model's top-2 gaps are those of the
    largest of 50,257 Gaussians, far more often near zero)."""
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
        if logit_std is not None or logit_offset or logit_prior:
            if tied:
                raise ValueError("logit_std / logit_offset / logit_prior need an untied unembedding (tied=False)")
            if logit_offset or logit_prior:
                model.lm_head.weight[:, :2] = 0.0
            if logit_std is not None:
                probe = torch.randint(0, len(tok), (4, 64), generator=g)
                logits = model(probe).logits
                model.lm_head.weight.mul_(logit_std / (logits - logits.mean(-1, keepdim=True)).std())
            if logit_offset:
                model.lm_head.weight[:, 0] = 8.0
                model.transformer.ln_f.weight[0] = 0.5  # (coordinate 0 of the normalized residual is ~N(0, 1))
                model.transformer.ln_f.bias[0] = logit_offset / 8.0
            if logit_prior:
                rank = torch.randperm(len(tok), generator=g) + 1
                model.lm_head.weight[:, 1] = -logit_prior * rank.double().log().float()
                model.transformer.ln_f.weight[1] = 0.0
                model.transformer.ln_f.bias[1] = 1.0
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder
