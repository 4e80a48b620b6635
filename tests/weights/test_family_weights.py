"""Tiny random models of every family beyond GPT-2 and Llama (tests/family_models.py) through load_model and the
weights pass, against the raw Hugging Face weights in float64.

Processing (anneuron.architecture.fold_norms) = the gain (and LayerNorm bias) of every norm reading the residual
folded into the layers reading it, W_U = diag(g_final)·W_U (LayerNorm: centred over d_model), post-norms left in
place: the logits stay equal to the raw model's. Under a post-norm, W_out is diag(g_post)·W_out: the direction of
each neuron's exact term in the MLP's write."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from family_models import *  # noqa: F401,F403 (session fixtures)
from test_congruence import K, check, dense_reference

from anneuron import architecture as A
from anneuron.weights.congruence import BASES, Weights, congruence_pass, weights_of

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


def test_fixture_exercises_folding(family_hf):
    fam = A.family_of(family_hf)
    cfg = family_hf.config
    assert cfg.tie_word_embeddings == (cfg.model_type == "gemma2")
    norms = [A.module(family_hf, fam.final_norm)] + [A.module(layer, n) for layer in A.layers(family_hf, fam)
                                                     for n in fam.norm_readers]
    for norm in norms:
        assert (A.gain(norm, fam) - 1).abs().max() > 0.3, "norm gains must be random, or folding is never tested"


def test_processed_logits_equal_raw_logits(family_bridge, family_hf):
    """Exactly (float rounding), not up to a per-position constant."""
    toks = family_bridge.to_tokens(PROMPT)
    with torch.no_grad():
        raw, ours = family_hf(toks).logits, family_bridge(toks)
    diff = (raw - ours).abs().max().item()
    print(f"max |processed - raw HF| logits: {diff:.3g} (logits up to {raw.abs().max():.3g})")
    assert diff < 2e-5


def test_processed_weights_are_the_raw_ones_with_gains_folded(family_bridge, family_hf):
    fam = A.family_of(family_hf)
    for raw, ours in zip(A.layers(family_hf, fam), A.layers(family_bridge, fam)):
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
    w = raw_weights(family_hf)
    torch.testing.assert_close(family_bridge.W_U.double(), w.W_U, rtol=0, atol=1e-6)
    torch.testing.assert_close(family_bridge.W_E.double(), w.W_E, rtol=0, atol=0)  # W_E untouched (tied or not)


def test_post_norm_write_splits_into_the_folded_directions(family_bridge):
    """Under a post-norm, the MLP's write (hook_mlp_out) = Σ_n act_n · W_out'[n] / rms(m), W_out' = weights_of's
    diag(g)·W_out and m the MLP output before the post-norm: what the folded direction means. Without a post-norm,
    W_out' is the output projection itself (a view)."""
    fam = A.family_of(family_bridge)
    w = weights_of(family_bridge)
    layers = A.layers(family_bridge, fam)
    if fam.mlp_post_norm is None:
        for x, layer in zip(w.w_out, layers):
            assert x.data_ptr() == A.mlp_out(layer, fam).weight.data_ptr()
        return
    with torch.no_grad():
        _, cache = family_bridge.run_with_cache(family_bridge.to_tokens(PROMPT))
    for l, layer in enumerate(layers):
        acts = cache[f"blocks.{l}.mlp.hook_post"][0].double()  # [T, d_mlp]
        m = acts @ A.neurons_to_model(A.mlp_out(layer, fam)).double()
        eps = A.eps_of(A.post_norms(layer, fam)[1])
        rms = (m.pow(2).mean(-1, keepdim=True) + eps).sqrt()
        torch.testing.assert_close(acts @ w.w_out[l].double() / rms, cache[f"blocks.{l}.hook_mlp_out"][0].double(),
                                   rtol=0, atol=1e-4)


@pytest.fixture(scope="module")
def cut(family_bridge, family_hf) -> tuple[Weights, dict]:
    """The first 64 neurons of each layer (192; the full vocabulary): the pass's weights and the dense float64
    reference from the raw Hugging Face weights."""
    w, raw = weights_of(family_bridge), raw_weights(family_hf)
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


def test_soft_cap_leaves_top_k_alone(family_bridge):
    """Gemma 2's soft-cap c·tanh(z / c) is strictly increasing: the top-k tokens of any logit vector (a neuron's
    direct effect, a prediction) are the same with and without it (float64 here: in float32, logits within a few
    units of 9c round to the same capped value, c = 30 in Gemma 2, far beyond its logits)."""
    from anneuron.models import float32_head

    head = float32_head(family_bridge)
    if head.softcap is None:
        return
    z = 2 * head.softcap * torch.randn(64, 50257, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert torch.equal(z.topk(10, -1).indices, head.capped(z).topk(10, -1).indices)
