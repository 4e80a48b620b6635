"""Tiny Llama-architecture models for tests and benchmarks, built offline with the real GPT-2 tokenizer (vocabulary
50,257): random ones (RMSNorm, RoPE, grouped-query attention, a gated MLP, tied or untied unembedding) and one with
a PLANTED gated neuron.

Random init leaves every RMSNorm gain at 1, so folding the gains would never be exercised: they are randomised.
The planted model (`build_planted_llama`): one neuron of a gated MLP whose gate and up rows both point at the
normalised residual its layer sees on a trigger token, so act(gate)·up is large there and near 0 elsewhere, and
whose down-projection column points along the answer token's unembedding (final gain included), so the neuron
lifts that token; its prompt pair (clean ends in the trigger) makes it the one neuron exact patching must find.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import (
    AutoModelForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    PretrainedConfig,
    Qwen2Config,
)

from anneuron.contracts import neuron_name
from anneuron.io import atomic_dir, write_json
from anneuron.tokenizer import gpt2_tokenizer, single_token


def llama_config(*, n_layer: int = 3, d_model: int = 64, d_mlp: int = 128, n_head: int = 4, n_kv_head: int = 2,
                 n_ctx: int = 128, act: str = "silu", tied: bool = True, rope_theta: float = 10000.0,
                 arch: str = "llama") -> PretrainedConfig:
    """A Llama-style config over the GPT-2 vocabulary. act: `silu` (SwiGLU) or `gelu_pytorch_tanh` (GeGLU).
    arch: `llama`, or the Llama-layout variants `mistral` (sliding-window attention, off here) and `qwen2` (biases on
    the query, key and value projections)."""
    tok = gpt2_tokenizer()
    shape = dict(vocab_size=len(tok), hidden_size=d_model, intermediate_size=d_mlp, num_hidden_layers=n_layer,
                 num_attention_heads=n_head, num_key_value_heads=n_kv_head, max_position_embeddings=n_ctx,
                 rms_norm_eps=1e-5, rope_theta=rope_theta, hidden_act=act, tie_word_embeddings=tied,
                 bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    if arch == "llama":
        return LlamaConfig(**shape, attention_bias=False, mlp_bias=False)
    if arch == "mistral":
        return MistralConfig(**shape, sliding_window=None)
    if arch == "qwen2":
        return Qwen2Config(**shape, use_sliding_window=False)
    raise ValueError(f"llama_config: arch {arch!r} is not llama, mistral or qwen2")


@torch.no_grad()
def randomise(model: LlamaForCausalLM, seed: int = 0, norm_noise: float = 0.3, weight_scale: float = 5.0) -> None:
    """RMSNorm gains 1 + norm_noise·N(0, 1) (so folding matters); every other weight × weight_scale (so
    activations, norms and attention are far from trivial)."""
    g = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():  # (a tied lm_head is the embedding: listed once)
        if "norm" in name:
            p.copy_(1.0 + norm_noise * torch.randn(p.shape, generator=g))
        else:
            p.mul_(weight_scale)


def random_llama(folder: Path, *, seed: int = 0, norm_noise: float = 0.3, weight_scale: float = 5.0,
                 **shape) -> Path:
    """A random tiny Llama (llama_config's shape unless given) with the GPT-2 tokenizer, saved to `folder`."""
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(llama_config(**shape)).eval()
    randomise(model, seed, norm_noise, weight_scale)
    model.save_pretrained(folder)
    gpt2_tokenizer().save_pretrained(folder)
    return Path(folder)


# --- the planted Llama ---------------------------------------------------------------------------------------------

PLANTED = dict(layer=1, neuron=37, trigger=" picked", token=" an",
               clean="I climbed up the apple tree and picked", corrupted="I climbed up the apple tree and walked",
               answer=" an", wrong=" a")
TARGET = 6.0  # gate and up pre-activations on the trigger: the neuron is silu(6)·6 ≈ 36 there
OUT_SHIFT = 3.0  # the neuron's write on the trigger, in units of the residual norm there


def _unit(v: torch.Tensor) -> torch.Tensor:
    return v / v.norm()


@torch.no_grad()
def _mlp_inputs(model: LlamaForCausalLM, layer: int, ids: torch.Tensor) -> torch.Tensor:
    """(B, T, d_model): what the layer's MLP reads (its post-attention norm's output) for a batch of token ids."""
    got = []
    h = model.model.layers[layer].post_attention_layernorm.register_forward_hook(lambda m, i, o: got.append(o))
    model(ids)
    h.remove()
    return got[0]


@torch.no_grad()
def build_planted_llama(seed: int = 5, n_contexts: int = 64) -> tuple[LlamaForCausalLM, dict]:
    """A random tiny Llama (tied, SwiGLU, randomised gains; weights at init scale so the planted neuron dominates)
    with PLANTED's neuron, and its ground truth. Unplanted, it mostly predicts the current token again; seed 5
    makes its corrupted prompt prefer " a" (LD ≈ −10) while the clean one prefers " an" (LD ≈ +64)."""
    tok = gpt2_tokenizer()
    torch.manual_seed(seed)
    model = LlamaForCausalLM(llama_config(n_layer=3, d_model=64, d_mlp=128, tied=True)).eval()
    randomise(model, seed, norm_noise=0.3, weight_scale=1.0)
    emb = model.model.embed_tokens.weight
    emb.copy_(torch.randn(emb.shape, generator=torch.Generator().manual_seed(seed + 1)))  # |e| ~ sqrt(d)
    layer, n = PLANTED["layer"], PLANTED["neuron"]
    trig, token = single_token(tok, PLANTED["trigger"]), single_token(tok, PLANTED["token"])
    mlp = model.model.layers[layer].mlp

    # inputs: random contexts ending in the trigger vs. the same contexts ending elsewhere
    g = torch.Generator().manual_seed(seed + 2)
    ctx = torch.randint(0, tok.eos_token_id, (n_contexts, 8), generator=g)
    ctx[:, 0] = tok.bos_token_id
    with_trig = ctx.clone()
    with_trig[:, -1] = trig
    on = _mlp_inputs(model, layer, with_trig)[:, -1]  # (n, d)
    off = _mlp_inputs(model, layer, ctx)[:, 1:].reshape(-1, on.shape[1])
    w = _unit(on.mean(0) - off.mean(0))
    scale = TARGET / float((on @ w).mean())
    mlp.gate_proj.weight[n] = scale * w
    mlp.up_proj.weight[n] = scale * w

    # output: along the answer's unembedding as the final norm sees it
    final_gain = model.model.norm.weight
    direction = _unit(final_gain * model.lm_head.weight[token])
    clean = torch.tensor([[tok.bos_token_id] + tok.encode(PLANTED["clean"])])
    resid = model(clean, output_hidden_states=True).hidden_states[layer + 1][0, -1]  # after the layer
    act = torch.nn.functional.silu(torch.tensor(TARGET)) * TARGET
    mlp.down_proj.weight[:, n] = direction * OUT_SHIFT * resid.norm() / act
    truth = dict(PLANTED, seed=seed, name=neuron_name(layer, n), trigger_id=trig, token_id=token)
    return model, truth


def write_planted_llama(out_dir: str | Path, seed: int = 5) -> dict:
    """Model, tokenizer and ground_truth.json, written atomically."""
    model, truth = build_planted_llama(seed)
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp)
        gpt2_tokenizer().save_pretrained(tmp)
        write_json(Path(tmp) / "ground_truth.json", truth)
    return truth
