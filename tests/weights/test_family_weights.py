"""Tiny random models of every decoder family beyond GPT-2 (tests/family_models.py `decoder`: the random Llamas of
tests/llama_models.py, tied SwiGLU and untied GeGLU, GQA, RoPE, and the GPT-NeoX, Phi, Gemma 2/3, Qwen3 and OLMo-2
variants) through load_model and the weights pass, against the raw Hugging Face weights in float64.

Processing (anneuron.architecture.fold_norms) = the gain (and LayerNorm bias) of every norm reading the residual
folded into the layers reading it, W_U = diag(g_final)·W_U (LayerNorm: centred over d_model), post-norms left in
place, nothing else centred: the logits stay equal to the raw model's (not just up to a per-position constant).
W_out = the output projection's columns (Llama: down_proj's); under a post-norm, diag(g_post)·W_out: the direction of
each neuron's exact term in the MLP's write."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from family_models import *  # noqa: F401,F403 (session fixtures)
from family_models import FAMILY_MODELS, LLAMAS
from test_congruence import K, check, dense_reference

from anneuron import architecture as A
from anneuron.weights.congruence import BASES, Weights, congruence_column, congruence_pass, congruence_row, weights_of

PROMPT = "The quick brown fox jumps over the lazy dog. An apple a day keeps the doctor away."


def raw_weights(hf) -> Weights:
    """W_out (times the MLP post-norm's gain, where there is one), W_E and the final-gain-folded W_U (centred over
    d_model under LayerNorm) straight from the Hugging Face modules, float64."""
    fam = A.family_of(hf)
    w_out = []
    for layer in A.layers(hf, fam):
        w = A.neurons_to_model(A.mlp_out(layer, fam)).detach().double()
        post = A.post_norms(layer, fam)[1]
        w_out.append(w if post is None else w * A.gain(post, fam).detach().double())
    W_U = (A.gain(A.module(hf, fam.final_norm), fam)[:, None] * A.module(hf, fam.unembed).weight.T).double()
    if fam.centres:
        W_U = W_U - W_U.mean(0, keepdim=True)
    return Weights(w_out, A.module(hf, fam.embed).weight.detach().double(), W_U.detach())


def _tied(decoder: str) -> bool:
    """Whether the variant was built with a tied unembedding (Gemma 2 as the real ones; the Llamas as LLAMAS says)."""
    return LLAMAS[decoder]["tied"] if decoder in LLAMAS else FAMILY_MODELS[decoder][2]["tie_word_embeddings"]


def test_fixture_exercises_folding(decoder_hf, decoder):
    fam = A.family_of(decoder_hf)
    cfg = decoder_hf.config
    assert cfg.tie_word_embeddings == _tied(decoder)
    assert cfg.tie_word_embeddings == (cfg.model_type == "gemma2") or decoder in LLAMAS
    if decoder in LLAMAS:
        assert cfg.num_key_value_heads < cfg.num_attention_heads  # grouped-query attention
    norms = [A.module(decoder_hf, fam.final_norm)] + [A.module(layer, n) for layer in A.layers(decoder_hf, fam)
                                                      for n in fam.norm_readers]
    for norm in norms:
        assert (A.gain(norm, fam) - 1).abs().max() > 0.3, "norm gains must be random, or folding is never tested"


def test_processed_logits_equal_raw_logits(decoder_bridge, decoder_hf):
    """Exactly (float rounding), not up to a per-position constant."""
    toks = decoder_bridge.to_tokens(PROMPT)
    with torch.no_grad():
        raw, ours = decoder_hf(toks).logits, decoder_bridge(toks)
    diff = (raw - ours).abs().max().item()
    print(f"max |processed - raw HF| logits: {diff:.3g} (logits up to {raw.abs().max():.3g})")
    assert diff < 2e-5


def test_processed_weights_are_the_raw_ones_with_gains_folded(decoder_bridge, decoder_hf, decoder):
    fam = A.family_of(decoder_hf)
    for raw, ours in zip(A.layers(decoder_hf, fam), A.layers(decoder_bridge, fam)):
        for norm_name, readers in fam.norm_readers.items():
            norm = A.module(raw, norm_name)
            for reader in readers:
                want = A.module(raw, reader).weight * A.gain(norm, fam)
                torch.testing.assert_close(A.module(ours, reader).weight, want, rtol=0, atol=1e-6)
                if getattr(norm, "bias", None) is not None:  # LayerNorm: its bias through the reader
                    want_b = A.module(raw, reader).bias + A.module(raw, reader).weight @ norm.bias
                    torch.testing.assert_close(A.module(ours, reader).bias, want_b, rtol=0, atol=1e-5)
            assert (A.gain(A.module(ours, norm_name), fam) == 1).all()
        for raw_post, our_post in zip(A.post_norms(raw, fam), A.post_norms(ours, fam)):  # never folded
            if raw_post is not None:
                assert torch.equal(raw_post.weight, our_post.weight)
        torch.testing.assert_close(A.mlp_out(ours, fam).weight, A.mlp_out(raw, fam).weight, rtol=0, atol=0)
        if decoder in LLAMAS:  # the same by the Llama's own module names: q/k/v read g1, gate/up read g2
            g1, g2 = raw.input_layernorm.weight, raw.post_attention_layernorm.weight
            for name in ("q_proj", "k_proj", "v_proj"):
                torch.testing.assert_close(A.module(ours, f"self_attn.{name}").weight,
                                           getattr(raw.self_attn, name).weight * g1, rtol=0, atol=1e-6)
            for name in ("gate_proj", "up_proj"):
                torch.testing.assert_close(A.module(ours, f"mlp.{name}").weight, getattr(raw.mlp, name).weight * g2,
                                           rtol=0, atol=1e-6)
            torch.testing.assert_close(A.module(ours, "mlp.down_proj").weight, raw.mlp.down_proj.weight, rtol=0,
                                       atol=0)
            assert (A.module(ours, "input_layernorm").weight == 1).all()
            assert (A.module(ours, "post_attention_layernorm").weight == 1).all()
    hf_ours = decoder_bridge.original_model
    assert (A.gain(A.module(hf_ours, fam.final_norm), fam) == 1).all()  # folded into W_U
    w = raw_weights(decoder_hf)
    torch.testing.assert_close(decoder_bridge.W_U.double(), w.W_U, rtol=0, atol=1e-6)
    torch.testing.assert_close(decoder_bridge.W_E.double(), w.W_E, rtol=0, atol=0)  # W_E untouched (tied or not)
    # the final gain folded into the unembedding only: a tied model comes out untied
    assert A.module(hf_ours, fam.unembed).weight.data_ptr() != A.module(hf_ours, fam.embed).weight.data_ptr()


def test_transformer_lens_fold_agrees_and_its_centring_is_what_we_skip(llama_dir, llama_bridge):
    """(The Llamas.) TransformerLens 4.3's own fold_ln gives the same W_U; its default processing also centres W_U over
    the vocabulary (W_out and W_E it leaves alone under RMSNorm), which only shifts each position's logits."""
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


def test_weights_of_gives_views_or_the_post_norm_write_directions(decoder_bridge):
    """Without a post-norm, weights_of's W_out is a view of the output projection (Llama: down_proj). Under a
    post-norm, the MLP's write (hook_mlp_out) = Σ_n act_n · W_out'[n] / rms(m), W_out' = weights_of's diag(g)·W_out
    and m the MLP output before the post-norm: what the folded direction means."""
    fam = A.family_of(decoder_bridge)
    w = weights_of(decoder_bridge)
    assert w.n_layers == 3 and w.d_mlp == 128 and w.d_vocab == 50257
    assert all(x.shape == (128, 64) for x in w.w_out)
    layers = A.layers(decoder_bridge, fam)
    if fam.mlp_post_norm is None:
        for x, layer in zip(w.w_out, layers):
            assert x.data_ptr() == A.mlp_out(layer, fam).weight.data_ptr()
        return
    with torch.no_grad():
        _, cache = decoder_bridge.run_with_cache(decoder_bridge.to_tokens(PROMPT))
    for l, layer in enumerate(layers):
        acts = cache[f"blocks.{l}.mlp.hook_post"][0].double()  # [T, d_mlp]
        m = acts @ A.neurons_to_model(A.mlp_out(layer, fam)).double()
        eps = A.eps_of(A.post_norms(layer, fam)[1])
        rms = (m.pow(2).mean(-1, keepdim=True) + eps).sqrt()
        torch.testing.assert_close(acts @ w.w_out[l].double() / rms, cache[f"blocks.{l}.hook_mlp_out"][0].double(),
                                   rtol=0, atol=1e-4)


@pytest.fixture(scope="module")
def cut(decoder_bridge, decoder_hf) -> tuple[Weights, dict]:
    """The first 64 neurons of each layer (192; the full vocabulary): the pass's weights and the dense float64
    reference from the raw Hugging Face weights."""
    w, raw = weights_of(decoder_bridge), raw_weights(decoder_hf)
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


def test_soft_cap_leaves_top_k_alone(decoder_bridge):
    """Gemma 2's soft-cap c·tanh(z / c) is strictly increasing: the top-k tokens of any logit vector (a neuron's
    direct effect, a prediction) are the same with and without it (float64 here: in float32, logits within a few
    units of 9c round to the same capped value, c = 30 in Gemma 2, far beyond its logits)."""
    from anneuron.models import float32_head

    head = float32_head(decoder_bridge)
    if head.softcap is None:
        return
    z = 2 * head.softcap * torch.randn(64, 50257, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert torch.equal(z.topk(10, -1).indices, head.capped(z).topk(10, -1).indices)


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
