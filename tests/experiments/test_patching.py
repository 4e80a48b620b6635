"""The fast patching engine against the slow, obviously right ways: TransformerLens' own patching helpers (one full
forward per patch) and plain hook loops, on a random model with random LayerNorms; attribution against autograd
and finite differences.

Patch scores are compared as the patched logit difference they stand for (score · gap + LD_corrupted), to 1e-5:
the random model's clean/corrupted gap is only ~0.3, so a score tolerance would test float32 noise ×3."""

from __future__ import annotations

import pytest
import torch
from transformer_lens import patching as tl_patching

from anneuron.experiments import patching as P
from anneuron.tokenizer import single_token

CLEAN = "When John and Mary went to the big old store, man gave a drink to"
CORRUPTED = "When John and Mary went to the big old store, Ben gave a drink to"
ANSWER, WRONG = " man", " John"
TOL = 1e-5


def assert_same_ld(ours: torch.Tensor, reference: torch.Tensor, runs: P.PairRuns) -> None:
    """Two tensors of patch scores stand for the same patched LDs, to TOL."""
    gap = runs.ld_clean - runs.ld_corrupted
    torch.testing.assert_close(ours.double() * gap, reference.double() * gap, atol=TOL, rtol=0)


@pytest.fixture(scope="module")
def tiny_runs(tiny_bridge):
    tok = tiny_bridge.tokenizer
    pair = P.PromptPair(tiny_bridge.to_tokens(CLEAN), tiny_bridge.to_tokens(CORRUPTED),
                        single_token(tok, ANSWER), single_token(tok, WRONG))
    runs = P.run_pair(tiny_bridge, pair)
    assert abs(runs.ld_clean - runs.ld_corrupted) > 0.2  # a gap the scores can be compared on
    return runs


@pytest.fixture(scope="module")
def suffix(tiny_bridge, tiny_runs):
    pair = tiny_runs.pair
    return P.SuffixModel(tiny_bridge, tiny_runs.corrupted, pair.start, pair.answer, pair.wrong)


def test_pair_differs_late(tiny_runs):
    pair = tiny_runs.pair
    assert 0 < pair.start < pair.n_pos - 3  # the suffix is short but not trivial


@pytest.mark.parametrize("point", ["pre", "mid", "post"])
def test_unpatched_suffix_equals_the_full_forward(suffix, tiny_runs, point):
    for layer in range(suffix.n_layers):
        ld = suffix.logit_diff(suffix.base[point][layer][None], layer, point)
        assert abs(float(ld[0]) - tiny_runs.ld_corrupted) < TOL


def test_prefix_keys_values_equal_recomputing_every_position(tiny_bridge, tiny_runs):
    """Suffix-only with cached keys/values == recomputing all positions (start = 0) for the same patch."""
    pair = tiny_runs.pair
    full = P.SuffixModel(tiny_bridge, tiny_runs.corrupted, 0, pair.answer, pair.wrong)
    short = P.SuffixModel(tiny_bridge, tiny_runs.corrupted, pair.start, pair.answer, pair.wrong)
    assert_same_ld(P.neuron_scores(full, tiny_runs, 0, range(40), batch_size=64),
                   P.neuron_scores(short, tiny_runs, 0, range(40), batch_size=64), tiny_runs)


@pytest.mark.parametrize("component", ["resid_pre", "attn_out", "mlp_out"])
def test_layer_position_scores_equal_transformer_lens_helpers(tiny_bridge, tiny_runs, suffix, component):
    pair = tiny_runs.pair
    helper = {"resid_pre": tl_patching.get_act_patch_resid_pre, "attn_out": tl_patching.get_act_patch_attn_out,
              "mlp_out": tl_patching.get_act_patch_mlp_out}[component]

    def metric(logits):
        return P.restored(P.logit_diff(logits[0], pair.answer, pair.wrong), tiny_runs.ld_clean,
                          tiny_runs.ld_corrupted)

    with torch.no_grad():
        _, clean_cache = tiny_bridge.run_with_cache(pair.clean)
        reference = helper(tiny_bridge, pair.corrupted, clean_cache, metric)
    ours = P.layer_position_scores(suffix, tiny_runs, component, batch_size=3)
    assert ours.shape == reference.shape
    assert_same_ld(ours, reference, tiny_runs)
    assert ours[:, : pair.start].abs().max() == 0  # identical prefix: exactly nothing to restore


@pytest.mark.parametrize("layer,batch_size", [(0, 37), (1, 100), (2, 7)])
def test_batched_neuron_patching_equals_one_full_forward_per_neuron(tiny_bridge, tiny_runs, suffix, layer,
                                                                      batch_size):
    """All 256 neurons of the layer; batch sizes that do not divide d_mlp."""
    ours = P.neuron_scores(suffix, tiny_runs, layer, batch_size=batch_size)
    reference = P.naive_neuron_scores(tiny_bridge, tiny_runs, layer, range(tiny_bridge.cfg.d_mlp))
    assert_same_ld(ours, reference, tiny_runs)


def test_neuron_subsets_and_unmoved_neurons(tiny_runs, suffix):
    full = P.neuron_scores(suffix, tiny_runs, 1, batch_size=64)
    subset = [200, 3, 77]
    torch.testing.assert_close(P.neuron_scores(suffix, tiny_runs, 1, subset, batch_size=2), full[subset])
    d = P.neuron_delta(tiny_runs, 1, suffix.start)
    assert ((d != 0).any(0) | (full == 0)).all()  # a neuron that does not move scores exactly 0


def test_joint_k1_equals_single_neuron_and_k_gt_1_equals_a_hook_loop(tiny_bridge, tiny_runs, suffix):
    layer = 1
    single = P.neuron_scores(suffix, tiny_runs, layer, batch_size=64)
    order = torch.argsort(single, descending=True).tolist()
    groups = [order[:1], order[:2], order[:5], order[:50], order[::-1][:3]]
    joint = P.joint_scores(suffix, tiny_runs, layer, groups, batch_size=2)
    assert_same_ld(joint[:1], single[order[:1]], tiny_runs)
    pair, reference = tiny_runs.pair, []
    for g in groups:
        hook = P.set_neurons_hook(tiny_runs.clean.acts["post"][layer], g)
        reference.append(P.hooked_logit_diff(tiny_bridge, pair.corrupted, pair.answer, pair.wrong,
                                             [(f"blocks.{layer}.mlp.hook_post", hook)]))
    assert_same_ld(joint, tiny_runs.score(torch.tensor(reference, dtype=torch.float64)), tiny_runs)


def test_attribution_equals_autograd_reference_and_first_order_change(tiny_bridge, tiny_runs):
    """Σ_pos Δact · ∂LD/∂act against (a) a separate autograd pass on one layer's hook_post and (b) a central finite
    difference along Δact of that layer (the directional derivative it estimates)."""
    pair, layer = tiny_runs.pair, 1
    ours = P.attribution_scores(tiny_runs)
    assert ours.shape == (tiny_bridge.cfg.n_layers, tiny_bridge.cfg.d_mlp)
    corrupted_post = tiny_runs.corrupted.acts["post"][layer]
    delta = tiny_runs.clean.acts["post"][layer] - corrupted_post
    x = corrupted_post.clone().requires_grad_(True)
    logits = tiny_bridge.run_with_hooks(pair.corrupted, fwd_hooks=[(f"blocks.{layer}.mlp.hook_post",
                                                                    lambda act, hook: x[None])])
    (grad,) = torch.autograd.grad(P.logit_diff(logits[0], pair.answer, pair.wrong), x)
    gap = tiny_runs.ld_clean - tiny_runs.ld_corrupted
    torch.testing.assert_close(ours[layer], ((delta * grad).sum(0) / gap).float(), atol=1e-6, rtol=1e-4)

    def ld_at(eps: float) -> float:
        return P.hooked_logit_diff(tiny_bridge, pair.corrupted, pair.answer, pair.wrong, [
            (f"blocks.{layer}.mlp.hook_post", lambda act, hook: (corrupted_post + eps * delta)[None])])

    eps = 1e-2
    directional = (ld_at(eps) - ld_at(-eps)) / (2 * eps) / gap
    assert abs(float(ours[layer].sum()) - directional) < 1e-3 * max(1.0, abs(directional))


def test_ld_is_read_through_the_float32_head(tiny_bridge, tiny_runs):
    """Run.logits and LD come from the final residual through the float32 final norm and unembedding
    (anneuron.models.Head): for a float32 bridge, its own logits up to float32 rounding, in both kinds of run."""
    pair = tiny_runs.pair
    with torch.no_grad():
        own = tiny_bridge(pair.clean)[0, -1]
    assert tiny_runs.clean.logits.dtype == tiny_runs.corrupted.logits.dtype == torch.float32
    torch.testing.assert_close(tiny_runs.clean.logits, own, atol=1e-5, rtol=0)
    no_grad = P.run_prompt(tiny_bridge, pair.corrupted, pair.answer, pair.wrong)  # tiny_runs.corrupted: grad=True
    assert abs(no_grad.ld - tiny_runs.ld_corrupted) < 1e-6
    torch.testing.assert_close(no_grad.logits, tiny_runs.corrupted.logits, atol=1e-6, rtol=0)


def test_engine_check_is_tiny(tiny_bridge, tiny_runs, suffix):
    assert P.check_engine(tiny_bridge, suffix, tiny_runs, 2, 5) < 1e-5


def test_identical_prompts_are_refused(tiny_bridge):
    t = tiny_bridge.to_tokens(CLEAN)
    with pytest.raises(ValueError, match="same tokens"):
        P.PromptPair(t, t.clone(), 1, 2)


def test_attention_options_of_the_model_s_own_module(tiny_dir, tmp_path):
    """The engine runs GPT-2's own attention module, so the options that module implements (attention scaled by
    1/(layer+1), scores upcast and reordered) hold in the engine as in the full hooked forward."""
    import json
    import shutil

    from anneuron.models import load_model

    folder = tmp_path / "options"
    shutil.copytree(tiny_dir, folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(config | dict(scale_attn_by_inverse_layer_idx=True,
                                                                 reorder_and_upcast_attn=True)))
    bridge = load_model(str(folder), device="cpu", dtype="float32")
    assert bridge.original_model.transformer.h[2].attn.scaling == 16**-0.5 / 3  # d_head = 64 / 4 heads
    tok = bridge.tokenizer
    pair = P.PromptPair(bridge.to_tokens(CLEAN), bridge.to_tokens(CORRUPTED), single_token(tok, ANSWER),
                        single_token(tok, WRONG))
    runs = P.run_pair(bridge, pair, grad=False)
    model = P.SuffixModel(bridge, runs.corrupted, pair.start, pair.answer, pair.wrong)
    neurons = range(0, 256, 8)
    ours = P.neuron_scores(model, runs, 0, neurons, batch_size=64)
    assert_same_ld(ours, P.naive_neuron_scores(bridge, runs, 0, neurons), runs)
    for layer in range(3):
        ld = model.logit_diff(model.base["pre"][layer][None], layer, "pre")
        assert abs(float(ld[0]) - runs.ld_corrupted) < TOL
