"""Tiny random Llamas (tests/llama_models.py: tied SwiGLU and untied GeGLU, GQA, RoPE, random RMSNorm gains)
through load_model and the weights pass, against the raw Hugging Face weights in float64.

Processing under RMSNorm = every gain folded into the layers reading it, nothing centred: the logits stay equal to
the raw model's (not just up to a per-position constant), W_U = diag(g_final)·W_U, W_out = down_proj's columns."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from llama_models import *  # noqa: F401,F403 (session fixtures)
from llama_models import LLAMAS
from test_congruence import K, check, dense_reference

from anneuron import architecture as A
from anneuron.weights.congruence import BASES, Weights, congruence_column, congruence_pass, congruence_row, weights_of

PROMPT = "The quick brown fox jumps over the lazy dog. An apple a day keeps the doctor away."


def raw_weights(hf) -> Weights:
    """W_out, W_E and the final-gain-folded W_U straight from the Hugging Face modules, float64."""
    layers = hf.model.layers
    return Weights([layer.mlp.down_proj.weight.detach().double().T for layer in layers],
                   hf.model.embed_tokens.weight.detach().double(),
                   (hf.model.norm.weight[:, None] * hf.lm_head.weight.T).detach().double())


def test_fixture_exercises_folding(llama_hf, llama_kind):
    cfg = llama_hf.config
    assert cfg.num_key_value_heads < cfg.num_attention_heads  # grouped-query attention
    assert cfg.tie_word_embeddings == LLAMAS[llama_kind]["tied"]
    for norm in [llama_hf.model.norm] + [n for l in llama_hf.model.layers
                                         for n in (l.input_layernorm, l.post_attention_layernorm)]:
        assert (norm.weight - 1).abs().max() > 0.3, "RMSNorm gains must be random, or folding is never tested"


def test_processed_logits_equal_raw_logits(llama_bridge, llama_hf):
    """Exactly (float rounding), not up to a per-position constant: nothing is centred."""
    toks = llama_bridge.to_tokens(PROMPT)
    with torch.no_grad():
        raw, ours = llama_hf(toks).logits, llama_bridge(toks)
    diff = (raw - ours).abs().max().item()
    print(f"max |processed - raw HF| logits: {diff:.3g} (logits up to {raw.abs().max():.3g})")
    assert diff < 2e-5


def test_processed_weights_are_the_raw_ones_with_gains_folded(llama_bridge, llama_hf, llama_kind):
    hf_ours = llama_bridge.original_model
    for raw, ours in zip(llama_hf.model.layers, A.layers(llama_bridge)):
        g1, g2 = raw.input_layernorm.weight, raw.post_attention_layernorm.weight
        for name in ("q_proj", "k_proj", "v_proj"):
            torch.testing.assert_close(A.module(ours, f"self_attn.{name}").weight,
                                       getattr(raw.self_attn, name).weight * g1, rtol=0, atol=1e-6)
        for name in ("gate_proj", "up_proj"):
            torch.testing.assert_close(A.module(ours, f"mlp.{name}").weight, getattr(raw.mlp, name).weight * g2,
                                       rtol=0, atol=1e-6)
        torch.testing.assert_close(A.module(ours, "mlp.down_proj").weight, raw.mlp.down_proj.weight, rtol=0, atol=0)
        assert (A.module(ours, "input_layernorm").weight == 1).all()
        assert (A.module(ours, "post_attention_layernorm").weight == 1).all()
    assert (A.module(hf_ours, "model.norm").weight == 1).all()
    w = raw_weights(llama_hf)
    torch.testing.assert_close(llama_bridge.W_U.double(), w.W_U, rtol=0, atol=1e-6)
    torch.testing.assert_close(llama_bridge.W_E.double(), w.W_E, rtol=0, atol=0)  # W_E untouched (tied or not)
    assert A.module(hf_ours, "lm_head").weight.data_ptr() != A.module(hf_ours, "model.embed_tokens").weight.data_ptr()


def test_transformer_lens_fold_agrees_and_its_centring_is_what_we_skip(llama_dir, llama_bridge):
    """TransformerLens 4.3's own fold_ln gives the same W_U; its default processing also centres W_U over the
    vocabulary (W_out and W_E it leaves alone under RMSNorm), which only shifts each position's logits."""
    from transformer_lens.model_bridge import TransformerBridge

    from anneuron.resolve import folder_tokenizer

    tl = TransformerBridge.boot_transformers(str(llama_dir), device="cpu", dtype=torch.float32,
                                             tokenizer=folder_tokenizer(llama_dir))
    tl.enable_compatibility_mode(disable_warnings=True)
    ours = llama_bridge.W_U
    torch.testing.assert_close(tl.W_U, ours - ours.mean(1, keepdim=True), rtol=0, atol=1e-6)
    for layer in range(tl.cfg.n_layers):
        torch.testing.assert_close(tl.blocks[layer].mlp.W_out, llama_bridge.blocks[layer].mlp.W_out, rtol=0, atol=0)
    torch.testing.assert_close(tl.W_E, llama_bridge.W_E, rtol=0, atol=0)


def test_weights_of_gives_views_of_down_proj(llama_bridge):
    w = weights_of(llama_bridge)
    assert w.n_layers == 3 and w.d_mlp == 128 and w.d_vocab == 50257
    for layer, x in zip(A.layers(llama_bridge), w.w_out):
        assert x.shape == (128, 64) and x.data_ptr() == layer.mlp.down_proj.weight.data_ptr()


@pytest.fixture(scope="module")
def cut(llama_bridge, llama_hf) -> tuple[Weights, dict]:
    """The first 64 neurons of each layer (192; the full vocabulary): the pass's weights and the dense float64
    reference from the raw Hugging Face weights."""
    w, raw = weights_of(llama_bridge), raw_weights(llama_hf)
    ours = Weights([x[:64] for x in w.w_out], w.W_E, w.W_U)
    return ours, dense_reference(Weights([x[:64] for x in raw.w_out], raw.W_E, raw.W_U))


@pytest.mark.parametrize("basis", BASES)
def test_fp32_pass_matches_dense_float64_from_raw_weights(cut, basis):
    """Chunks of 50 (crossing layers at 64 and 128), fp32 products."""
    ours, reference = cut
    res = congruence_pass(ours, basis=basis, top_k=K, chunk_neurons=50, device="cpu", dtype=torch.float32,
                          progress=False)
    check(res, reference[basis], exact=False)
    C = reference[basis]["C"]
    print(f"{basis}: max |top-1 neuron value - reference| "
          f"{np.abs(res.neuron_top_values[:, 0] - C.max(1)).max():.3g}")


@pytest.mark.parametrize("basis", BASES)
def test_rows_and_columns_match_reference(cut, basis):
    ours, reference = cut
    C = reference[basis]["C"]
    for flat in (0, 100, 191):
        np.testing.assert_allclose(congruence_row(ours, flat, basis), C[flat], rtol=1e-5, atol=1e-5)
    for t in (0, 281, 50256):
        np.testing.assert_allclose(congruence_column(ours, t, basis), C[:, t], rtol=1e-5, atol=1e-5)


def test_unsupported_architecture_is_one_line():
    with pytest.raises(A.ArchitectureError) as e:
        A.family_of("mamba", "exact patching")
    msg = str(e.value)
    assert "\n" not in msg and "mamba" in msg and "exact patching" in msg


def test_token_value_key_orders_values_of_both_signs():
    """The per-token top-k merge sorts (token, value) by one int64 key: values straddling 0 must stay in order
    (they do as soon as a token's k-th best value is negative, as in these un-centred Llama weights)."""
    from anneuron.weights.congruence import _token_value_key

    val = torch.tensor([0.2, -0.0003, 0.1, -5.0, float("-inf"), 3.0, -0.1, 0.0], dtype=torch.float32)
    tok = torch.tensor([1, 1, 1, 0, 1, 0, 0, 1])
    order = torch.argsort(_token_value_key(tok, val))
    assert tok[order].tolist() == [0, 0, 0, 1, 1, 1, 1, 1]
    want = torch.tensor([3.0, -0.1, -5.0, 0.2, 0.1, 0.0, -0.0003, float("-inf")], dtype=torch.float32)
    assert torch.equal(val[order], want)
