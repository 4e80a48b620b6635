"""Tiny random models of every decoder family anneuron.architecture knows beyond GPT-2 and Llama (GPT-NeoX/Pythia,
Phi, Gemma 2, Gemma 3, Qwen3, OLMo-2), built offline from each family's own Hugging Face config class, with the real
GPT-2 tokenizer (vocabulary 50,257), for the tests that check every stage on every family.

Each is built to exercise what its family does differently, which random init would hide: every norm gain (and
LayerNorm bias) randomised, so folding and post-norms matter; an untied unembedding where the family allows it (Gemma
2 stays tied, as the real ones, so the untying is exercised too); partial rotary (GPT-NeoX, Phi); the parallel
residual (GPT-NeoX, Phi; GPT-NeoX also without it, `use_parallel_residual: false`); a sliding window (4 tokens)
shorter than the test prompts on some layers (Gemma 2/3, Qwen3); Gemma 2's attention and final soft-caps set low
enough to bite. Shape: 3 layers, d_model 64, d_mlp 128, 4 query heads (2 key/value heads where the family has
grouped-query attention).
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import (
    AutoModelForCausalLM,
    Gemma2Config,
    Gemma3TextConfig,
    GPTNeoXConfig,
    Olmo2Config,
    PhiConfig,
    PretrainedConfig,
    Qwen3Config,
)

from anneuron.tokenizer import gpt2_tokenizer

WINDOW = 4  # the sliding window of the families that have one: shorter than any test prompt
# variant -> (family config, seed, config keys beyond the shared shape); seeds chosen so that the IOI-style prompt
# pair of the patching tests has an LD gap above 0.25
FAMILY_MODELS: dict[str, tuple[str, int, dict]] = {
    "gpt_neox": ("gpt_neox", 2, dict(rotary_pct=0.25, use_parallel_residual=True, tie_word_embeddings=False)),
    "gpt_neox-sequential": ("gpt_neox", 6, dict(rotary_pct=0.25, use_parallel_residual=False,
                                                tie_word_embeddings=False)),
    "phi": ("phi", 8, dict(partial_rotary_factor=0.5, tie_word_embeddings=False)),
    "gemma2": ("gemma2", 7, dict(head_dim=16, sliding_window=WINDOW, final_logit_softcapping=5.0,
                                 attn_logit_softcapping=10.0, query_pre_attn_scalar=16, tie_word_embeddings=True)),
    "gemma3": ("gemma3", 9, dict(head_dim=16, sliding_window=WINDOW, sliding_window_pattern=2,
                                 tie_word_embeddings=False)),
    "qwen3": ("qwen3", 8, dict(head_dim=16, use_sliding_window=True, sliding_window=WINDOW, max_window_layers=1,
                               tie_word_embeddings=False)),
    "olmo2": ("olmo2", 8, dict(tie_word_embeddings=False)),
}
_CONFIGS = {"gpt_neox": GPTNeoXConfig, "phi": PhiConfig, "gemma2": Gemma2Config, "gemma3": Gemma3TextConfig,
            "qwen3": Qwen3Config, "olmo2": Olmo2Config}
_GQA = ("gemma2", "gemma3", "qwen3", "olmo2")


def family_config(variant: str, *, n_layer: int = 3, d_model: int = 64, d_mlp: int = 128, n_head: int = 4,
                  n_ctx: int = 128) -> PretrainedConfig:
    """The variant's family's own config class at a tiny shape, over the GPT-2 vocabulary (FAMILY_MODELS)."""
    family, _, keys = FAMILY_MODELS[variant]
    tok = gpt2_tokenizer()
    shape = dict(vocab_size=len(tok), hidden_size=d_model, intermediate_size=d_mlp, num_hidden_layers=n_layer,
                 num_attention_heads=n_head, max_position_embeddings=n_ctx, bos_token_id=tok.bos_token_id,
                 eos_token_id=tok.eos_token_id, pad_token_id=None)  # (a padding row would be all zero)
    if family in _GQA:
        shape["num_key_value_heads"] = n_head // 2
    return _CONFIGS[family](**shape, **keys)


@torch.no_grad()
def randomise_family(model, seed: int, gain_offset: float, norm_noise: float = 0.3,
                     weight_scale: float = 5.0) -> None:
    """Norm gains (offset + weight) 1 + norm_noise·N(0, 1), norm biases norm_noise·N(0, 1), every other weight ×
    weight_scale (so activations, norms and attention are far from trivial)."""
    g = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():  # (a tied lm_head is the embedding: listed once)
        if "norm" in name:
            noise = norm_noise * torch.randn(p.shape, generator=g)
            p.copy_(noise if name.endswith("bias") else 1.0 - gain_offset + noise)
        else:
            p.mul_(weight_scale)


def random_family_model(folder: Path, variant: str, seed: int | None = None, **shape) -> Path:
    """A random tiny model of a FAMILY_MODELS variant (family_config's shape unless given) with the GPT-2
    tokenizer, saved to `folder`."""
    from anneuron.architecture import family_of

    config = family_config(variant, **shape)
    seed = FAMILY_MODELS[variant][1] if seed is None else seed
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config).eval()
    randomise_family(model, seed, family_of(config.model_type).gain_offset)
    model.save_pretrained(folder)
    gpt2_tokenizer().save_pretrained(folder)
    return Path(folder)
