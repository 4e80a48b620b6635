"""Patching and the logit lens on tiny random Llamas (tests/llama_models.py: RoPE, GQA, gated MLPs, random RMSNorm
gains, tied and untied) against the same slow references as the GPT-2 tests (tests/experiments/test_patching.py):
TransformerLens' own patching helpers, one full hooked forward per neuron, autograd and finite differences; the logit
lens against
a hand computation from the raw Hugging Face weights. Then the planted Llama: exact patching finds its neuron."""

from __future__ import annotations

import pytest
import torch
from llama_models import *  # noqa: F401,F403 (session fixtures)
from test_patching import ANSWER, CLEAN, CORRUPTED, TOL, assert_same_ld
from transformer_lens import patching as tl_patching

from anneuron.experiments import patching as P
from anneuron.experiments.logit_lens import logit_lens
from anneuron.tokenizer import single_token


@pytest.fixture(scope="module")
def runs(llama_bridge):
    tok = llama_bridge.tokenizer
    pair = P.PromptPair(llama_bridge.to_tokens(CLEAN), llama_bridge.to_tokens(CORRUPTED),
                        single_token(tok, ANSWER), single_token(tok, " John"))
    r = P.run_pair(llama_bridge, pair)
    assert abs(r.ld_clean - r.ld_corrupted) > 0.6  # (fixture seeds chosen for it)
    return r


@pytest.fixture(scope="module")
def suffix(llama_bridge, runs):
    pair = runs.pair
    return P.SuffixModel(llama_bridge, runs.corrupted, pair.start, pair.answer, pair.wrong)


def test_runs_equal_the_raw_model(llama_hf, runs):
    """The processed bridge's LDs are the raw Hugging Face model's (folding changes nothing)."""
    pair = runs.pair
    with torch.no_grad():
        for tokens, ld in ((pair.clean, runs.ld_clean), (pair.corrupted, runs.ld_corrupted)):
            assert abs(float(P.logit_diff(llama_hf(tokens).logits[0], pair.answer, pair.wrong)) - ld) < 1e-5


@pytest.mark.parametrize("point", ["pre", "mid", "post"])
def test_unpatched_suffix_equals_the_full_forward(suffix, runs, point):
    worst = max(abs(float(suffix.logit_diff(suffix.base[point][l][None], l, point)[0]) - runs.ld_corrupted)
                for l in range(suffix.n_layers))
    print(f"{point}: max |unpatched suffix LD - full forward LD| = {worst:.3g}")
    assert worst < TOL


def test_prefix_cache_equals_recomputing_every_position(llama_bridge, runs):
    """Suffix-only with the prefix keys/values cached (rotated at positions 0..start−1) == recomputing all
    positions (start = 0), for the same patches."""
    pair = runs.pair
    full = P.SuffixModel(llama_bridge, runs.corrupted, 0, pair.answer, pair.wrong)
    short = P.SuffixModel(llama_bridge, runs.corrupted, pair.start, pair.answer, pair.wrong)
    assert_same_ld(P.neuron_scores(full, runs, 0, range(40), batch_size=64),
                   P.neuron_scores(short, runs, 0, range(40), batch_size=64), runs)


@pytest.mark.parametrize("component", ["resid_pre", "attn_out", "mlp_out"])
def test_layer_position_scores_equal_transformer_lens_helpers(llama_bridge, runs, suffix, component):
    pair = runs.pair
    helper = {"resid_pre": tl_patching.get_act_patch_resid_pre, "attn_out": tl_patching.get_act_patch_attn_out,
              "mlp_out": tl_patching.get_act_patch_mlp_out}[component]

    def metric(logits):
        return P.restored(P.logit_diff(logits[0], pair.answer, pair.wrong), runs.ld_clean, runs.ld_corrupted)

    with torch.no_grad():
        _, clean_cache = llama_bridge.run_with_cache(pair.clean)
        reference = helper(llama_bridge, pair.corrupted, clean_cache, metric)
    ours = P.layer_position_scores(suffix, runs, component, batch_size=3)
    assert ours.shape == reference.shape
    gap = runs.ld_clean - runs.ld_corrupted
    print(f"{component}: max |LD diff| vs TransformerLens = {float((ours - reference).abs().max() * abs(gap)):.3g}")
    assert_same_ld(ours, reference, runs)
    assert ours[:, : pair.start].abs().max() == 0


@pytest.mark.parametrize("layer,batch_size", [(0, 37), (1, 128), (2, 7)])
def test_batched_neuron_patching_equals_one_full_forward_per_neuron(llama_bridge, runs, suffix, layer, batch_size):
    """All 128 neurons of the layer (the gated product act(gate)·up set to its clean value at every position)."""
    ours = P.neuron_scores(suffix, runs, layer, batch_size=batch_size)
    reference = P.naive_neuron_scores(llama_bridge, runs, layer, range(llama_bridge.cfg.d_mlp))
    gap = runs.ld_clean - runs.ld_corrupted
    print(f"L{layer}: max |LD diff| vs one hooked forward per neuron = "
          f"{float((ours - reference).abs().max() * abs(gap)):.3g}")
    assert_same_ld(ours, reference, runs)


def test_neuron_subsets(runs, suffix):
    full = P.neuron_scores(suffix, runs, 1, batch_size=64)
    subset = [100, 3, 77]
    torch.testing.assert_close(P.neuron_scores(suffix, runs, 1, subset, batch_size=2), full[subset])


def test_joint_scores_equal_a_hook_loop(llama_bridge, runs, suffix):
    layer = 1
    single = P.neuron_scores(suffix, runs, layer, batch_size=64)
    order = torch.argsort(single, descending=True).tolist()
    groups = [order[:1], order[:2], order[:5], order[:50], order[::-1][:3]]
    joint = P.joint_scores(suffix, runs, layer, groups, batch_size=2)
    assert_same_ld(joint[:1], single[order[:1]], runs)
    pair, reference = runs.pair, []
    for g in groups:
        hook = P.set_neurons_hook(runs.clean.acts["post"][layer], g)
        reference.append(P.hooked_logit_diff(llama_bridge, pair.corrupted, pair.answer, pair.wrong,
                                             [(f"blocks.{layer}.mlp.hook_post", hook)]))
    assert_same_ld(joint, runs.score(torch.tensor(reference, dtype=torch.float64)), runs)


def test_attribution_equals_autograd_and_first_order_change(llama_bridge, runs):
    pair, layer = runs.pair, 1
    ours = P.attribution_scores(runs)
    assert ours.shape == (3, 128)
    corrupted_post = runs.corrupted.acts["post"][layer]
    delta = runs.clean.acts["post"][layer] - corrupted_post
    x = corrupted_post.clone().requires_grad_(True)
    logits = llama_bridge.run_with_hooks(pair.corrupted, fwd_hooks=[(f"blocks.{layer}.mlp.hook_post",
                                                                     lambda act, hook: x[None])])
    (grad,) = torch.autograd.grad(P.logit_diff(logits[0], pair.answer, pair.wrong), x)
    gap = runs.ld_clean - runs.ld_corrupted
    torch.testing.assert_close(ours[layer], ((delta * grad).sum(0) / gap).float(), atol=1e-6, rtol=1e-4)

    def ld_at(eps: float) -> float:
        return P.hooked_logit_diff(llama_bridge, pair.corrupted, pair.answer, pair.wrong, [
            (f"blocks.{layer}.mlp.hook_post", lambda act, hook: (corrupted_post + eps * delta)[None])])

    eps = 1e-2
    directional = (ld_at(eps) - ld_at(-eps)) / (2 * eps) / gap
    assert abs(float(ours[layer].sum()) - directional) < 1e-3 * max(1.0, abs(directional))


def test_engine_check_is_tiny(llama_bridge, runs, suffix):
    err = P.check_engine(llama_bridge, suffix, runs, 2, 5)
    print(f"check_engine: {err:.3g}")
    assert err < 1e-5


# --- the logit lens under RMSNorm ---------------------------------------------------------------------------------

@torch.no_grad()
def _by_hand(hf, x: torch.Tensor, a: int, w: int, scale: torch.Tensor | None = None) -> float:
    """The RAW model's final RMSNorm (own RMS, or the given scale; no mean removed; its gain) then its
    lm_head rows a − w."""
    norm = hf.model.norm
    x = x.double()
    x = x / (scale.double() if scale is not None else (x.pow(2).mean() + norm.variance_epsilon).sqrt())
    W = hf.lm_head.weight.double()
    return float((x * norm.weight.double()) @ (W[a] - W[w]))


@pytest.fixture(scope="module")
def lens(llama_bridge, runs):
    return logit_lens(llama_bridge, runs.clean.cache, runs.pair.answer, runs.pair.wrong)


def test_logit_lens_recomputed_entries_by_hand(llama_hf, runs, lens):
    cache, (a, w), n = runs.clean.cache, (runs.pair.answer, runs.pair.wrong), 3
    worst = 0.0
    for l in range(n):
        after = cache[f"blocks.{l + 1}.hook_resid_pre" if l < n - 1 else f"blocks.{l}.hook_resid_post"][0, -1]
        mid = cache[f"blocks.{l}.hook_resid_mid"][0, -1]
        for i, x in ((2 * l + 2, after), (2 * l + 1, mid)):
            worst = max(worst, abs(float(lens.recomputed[i]) - _by_hand(llama_hf, x, a, w)))
    print(f"recomputed: max |lens - by hand| = {worst:.3g}")
    assert worst < 1e-4
    assert abs(float(lens.recomputed[-1]) - runs.ld_clean) < 1e-4  # no b_U: the last entry is LD itself


def test_logit_lens_post_entries_by_hand(llama_hf, runs, lens):
    """Every entry scaled by the final residual's RMS (the cached ln_final scale), no mean removed; additive."""
    cache, (a, w) = runs.clean.cache, (runs.pair.answer, runs.pair.wrong)
    final = cache["blocks.2.hook_resid_post"][0, -1]
    scale = (final.double().pow(2).mean() + llama_hf.model.norm.variance_epsilon).sqrt()
    torch.testing.assert_close(cache["ln_final.hook_scale"][0, -1, 0].double(), scale, rtol=1e-6, atol=0)
    stack = [cache[f"blocks.{l}.hook_resid_{k}"][0, -1] for l in range(3) for k in ("pre", "mid")] + [final]
    worst = max(abs(float(lens.post[i]) - _by_hand(llama_hf, x, a, w, scale)) for i, x in enumerate(stack))
    print(f"post: max |lens - by hand| = {worst:.3g}")
    assert worst < 1e-4
    assert abs(float(lens.post[-1]) - runs.ld_clean) < 1e-4
    assert lens.labels[-1] == "final_post" and len(lens.post) == 7


# --- the planted Llama --------------------------------------------------------------------------------------------

def test_planted_neuron_is_the_top_exact_patching_neuron(planted_llama_bridge, planted_truth):
    """The gated neuron planted to fire on " picked" and write " an" is the top exact-patching neuron of its
    layer, restores most of the gap alone, comes first by attribution too, and the engine agrees with a full
    hooked forward on it."""
    br, truth = planted_llama_bridge, planted_truth
    tok = br.tokenizer
    pair = P.PromptPair(br.to_tokens(truth["clean"]), br.to_tokens(truth["corrupted"]),
                        single_token(tok, truth["answer"]), single_token(tok, truth["wrong"]))
    runs = P.run_pair(br, pair)
    assert runs.ld_clean > 1 and runs.ld_corrupted < 0, (runs.ld_clean, runs.ld_corrupted)
    model = P.SuffixModel(br, runs.corrupted, pair.start, pair.answer, pair.wrong)
    layer, neuron = truth["layer"], truth["neuron"]
    scores = P.neuron_scores(model, runs, layer, batch_size=64)
    top = torch.argsort(scores, descending=True)
    print(f"planted: LD {runs.ld_clean:.3g} / {runs.ld_corrupted:.3g}; top neurons {top[:3].tolist()} "
          f"scores {[round(float(x), 3) for x in scores[top[:3]]]}")
    assert int(top[0]) == neuron and scores[top[0]] > 0.5 and scores[top[1]] < 0.5 * scores[top[0]]
    attribution = P.attribution_scores(runs)
    assert int(attribution.flatten().abs().argmax()) == layer * br.cfg.d_mlp + neuron
    assert P.check_engine(br, model, runs, layer, neuron) < 1e-5
    torch.testing.assert_close(P.naive_neuron_scores(br, runs, layer, [neuron]), scores[[neuron]], rtol=0, atol=1e-4)


def test_unsupported_architecture_is_refused_in_one_line():
    from types import SimpleNamespace

    fake = SimpleNamespace(original_model=SimpleNamespace(config=SimpleNamespace(model_type="mamba")))
    with pytest.raises(NotImplementedError) as e:
        P.SuffixModel(fake, None, 0, 1, 2)
    msg = str(e.value)
    assert "\n" not in msg and "'mamba'" in msg and "SuffixModel" in msg
