"""Patching and the logit lens on tiny random models of every decoder family beyond GPT-2 (tests/family_models.py
`decoder`: the random Llamas of tests/llama_models.py with RoPE, GQA, gated MLPs, random RMSNorm gains, tied and
untied; GPT-NeoX and Phi with their parallel residual and partial rotary, Gemma 2 with post-norms, (1 + w) gains and
soft-caps, Gemma 3, Qwen3 with q/k norms, OLMo-2 with post-norms only; sliding windows shorter than the prompt)
against the same slow references as the GPT-2 tests (tests/experiments/test_patching.py): TransformerLens' own
patching helpers, one full hooked forward per neuron, autograd and finite differences; the logit lens against a
hand computation from the raw Hugging Face weights. Then the planted Llama: exact patching finds its neuron."""

from __future__ import annotations

import pytest
import torch
from family_models import *  # noqa: F401,F403 (session fixtures)
from family_models import FAMILY_MODELS, LLAMAS
from test_patching import ANSWER, CLEAN, CORRUPTED, TOL, assert_same_ld
from transformer_lens import patching as tl_patching

from anneuron import architecture as A
from anneuron.experiments import patching as P
from anneuron.experiments.logit_lens import logit_lens
from anneuron.tokenizer import single_token

# the LD gap the fixtures' seeds were chosen to give on the IOI-style pair (tests/llama_models.py, families.py)
MIN_GAP = {**{k: 0.6 for k in LLAMAS}, **{k: 0.25 for k in FAMILY_MODELS}}


@pytest.fixture(scope="module")
def runs(decoder, decoder_bridge):
    tok = decoder_bridge.tokenizer
    pair = P.PromptPair(decoder_bridge.to_tokens(CLEAN), decoder_bridge.to_tokens(CORRUPTED),
                        single_token(tok, ANSWER), single_token(tok, " John"))
    r = P.run_pair(decoder_bridge, pair)
    assert abs(r.ld_clean - r.ld_corrupted) > MIN_GAP[decoder]  # (fixture seeds chosen for it)
    return r


@pytest.fixture(scope="module")
def suffix(decoder_bridge, runs):
    pair = runs.pair
    return P.SuffixModel(decoder_bridge, runs.corrupted, pair.start, pair.answer, pair.wrong)


def test_fixture_exercises_the_family(decoder_hf, decoder, runs):
    """What each family does differently is really there: sliding windows shorter than the prompt, a soft-cap the
    logits reach, parallel blocks, post-norms (whose gains must be random)."""
    cfg, fam = decoder_hf.config, A.family_of(decoder_hf)
    windows = [P.sliding_window(cfg, l) for l in range(cfg.num_hidden_layers)]
    if decoder in ("gemma2", "gemma3", "qwen3"):
        assert any(w is not None and w < runs.pair.n_pos - runs.pair.start + 2 for w in windows), windows
        assert None in windows  # and full attention on the others
    if decoder == "gemma2":
        with torch.no_grad():
            out = decoder_hf.model(runs.pair.clean).last_hidden_state
            raw = decoder_hf.lm_head(out)
        cap = cfg.final_logit_softcapping
        assert (raw - cap * torch.tanh(raw / cap)).abs().max() > 0.1 * raw.abs().max()  # the cap bites
    assert fam.is_parallel(cfg) == (decoder in ("gpt_neox", "phi"))
    for layer in A.layers(decoder_hf, fam):
        for post in A.post_norms(layer, fam):
            if post is not None:
                assert (A.gain(post, fam) - 1).abs().max() > 0.3
    assert (fam.mlp_post_norm is not None) == (decoder in ("gemma2", "gemma3", "olmo2"))


def test_runs_equal_the_raw_model(decoder_hf, runs):
    """The processed bridge's LDs are the raw Hugging Face model's (folding changes nothing)."""
    pair = runs.pair
    with torch.no_grad():
        for tokens, ld in ((pair.clean, runs.ld_clean), (pair.corrupted, runs.ld_corrupted)):
            assert abs(float(P.logit_diff(decoder_hf(tokens).logits[0], pair.answer, pair.wrong)) - ld) < 1e-5


@pytest.mark.parametrize("point", ["pre", "mid", "post", "act"])
def test_unpatched_suffix_equals_the_full_forward(suffix, runs, point):
    worst = max(abs(float(suffix.logit_diff(suffix.base[point][l][None], l, point)[0]) - runs.ld_corrupted)
                for l in range(suffix.n_layers))
    print(f"{point}: max |unpatched suffix LD - full forward LD| = {worst:.3g}")
    assert worst < TOL


def test_prefix_cache_equals_recomputing_every_position(decoder_bridge, runs):
    """Suffix-only with the prefix keys/values cached (rotated at positions 0..start−1, and sliding windows over
    them) == recomputing all positions (start = 0), for the same patches."""
    pair = runs.pair
    full = P.SuffixModel(decoder_bridge, runs.corrupted, 0, pair.answer, pair.wrong)
    short = P.SuffixModel(decoder_bridge, runs.corrupted, pair.start, pair.answer, pair.wrong)
    assert_same_ld(P.neuron_scores(full, runs, 0, range(40), batch_size=64),
                   P.neuron_scores(short, runs, 0, range(40), batch_size=64), runs)


@pytest.mark.parametrize("component", ["resid_pre", "attn_out", "mlp_out"])
def test_layer_position_scores_equal_transformer_lens_helpers(decoder_bridge, runs, suffix, component):
    pair = runs.pair
    helper = {"resid_pre": tl_patching.get_act_patch_resid_pre, "attn_out": tl_patching.get_act_patch_attn_out,
              "mlp_out": tl_patching.get_act_patch_mlp_out}[component]

    def metric(logits):
        return P.restored(P.logit_diff(logits[0], pair.answer, pair.wrong), runs.ld_clean, runs.ld_corrupted)

    with torch.no_grad():
        _, clean_cache = decoder_bridge.run_with_cache(pair.clean)
        reference = helper(decoder_bridge, pair.corrupted, clean_cache, metric)
    ours = P.layer_position_scores(suffix, runs, component, batch_size=3)
    assert ours.shape == reference.shape
    gap = runs.ld_clean - runs.ld_corrupted
    print(f"{component}: max |LD diff| vs TransformerLens = {float((ours - reference).abs().max() * abs(gap)):.3g}")
    assert_same_ld(ours, reference, runs)
    assert ours[:, : pair.start].abs().max() == 0


@pytest.mark.parametrize("layer,batch_size", [(0, 37), (1, 128), (2, 7), (2, 128)])
def test_batched_neuron_patching_equals_one_full_forward_per_neuron(decoder_bridge, runs, suffix, layer, batch_size):
    """All 128 neurons of the layer set to their clean value at every position (a gated MLP's: the product
    act(gate)·up; under a post-norm: the MLP's output projection and post-norm rerun, never Δact·W_out added)."""
    ours = P.neuron_scores(suffix, runs, layer, batch_size=batch_size)
    reference = P.naive_neuron_scores(decoder_bridge, runs, layer, range(decoder_bridge.cfg.d_mlp))
    gap = runs.ld_clean - runs.ld_corrupted
    print(f"L{layer}: max |LD diff| vs one hooked forward per neuron = "
          f"{float((ours - reference).abs().max() * abs(gap)):.3g}")
    assert_same_ld(ours, reference, runs)


def test_neuron_subsets(runs, suffix):
    full = P.neuron_scores(suffix, runs, 1, batch_size=64)
    subset = [100, 3, 77]
    torch.testing.assert_close(P.neuron_scores(suffix, runs, 1, subset, batch_size=2), full[subset])


def test_linear_write_would_be_wrong_under_a_post_norm(decoder, runs, suffix):
    """Under a post-norm, adding Δact·W_out after the MLP is NOT the patch (the reason for the `act` point): on
    these models it misses by far more than the tolerance; without one it is the same patch."""
    layer = 1
    d_act = P.neuron_delta(runs, layer, suffix.start)
    idx = torch.argsort(d_act.abs().sum(0), descending=True)[:8]
    point, delta = suffix.neuron_patches(layer, d_act, idx)
    assert point == ("act" if suffix.nonlinear_write else "post")
    exact = P.patched_logit_diff(suffix, layer, point, len(idx), delta, batch_size=8)
    linear = P.patched_logit_diff(suffix, layer, "post", len(idx),
                                  lambda sl: P._neuron_deltas(d_act, suffix.w_out(layer), idx[sl]), batch_size=8)
    miss = float((exact - linear).abs().max())
    print(f"{decoder}: max |exact - linear-write LD| = {miss:.3g}")
    assert (miss > 100 * TOL) == suffix.nonlinear_write


def test_joint_scores_equal_a_hook_loop(decoder_bridge, runs, suffix):
    layer = 1
    single = P.neuron_scores(suffix, runs, layer, batch_size=64)
    order = torch.argsort(single, descending=True).tolist()
    groups = [order[:1], order[:2], order[:5], order[:50], order[::-1][:3]]
    joint = P.joint_scores(suffix, runs, layer, groups, batch_size=2)
    assert_same_ld(joint[:1], single[order[:1]], runs)
    pair, reference = runs.pair, []
    for g in groups:
        hook = P.set_neurons_hook(runs.clean.acts["post"][layer], g)
        reference.append(P.hooked_logit_diff(decoder_bridge, pair.corrupted, pair.answer, pair.wrong,
                                             [(f"blocks.{layer}.mlp.hook_post", hook)]))
    assert_same_ld(joint, runs.score(torch.tensor(reference, dtype=torch.float64)), runs)


def test_attribution_equals_autograd_and_first_order_change(decoder_bridge, runs):
    pair, layer = runs.pair, 1
    ours = P.attribution_scores(runs)
    assert ours.shape == (3, 128)
    corrupted_post = runs.corrupted.acts["post"][layer]
    delta = runs.clean.acts["post"][layer] - corrupted_post
    x = corrupted_post.clone().requires_grad_(True)
    logits = decoder_bridge.run_with_hooks(pair.corrupted, fwd_hooks=[(f"blocks.{layer}.mlp.hook_post",
                                                                      lambda act, hook: x[None])])
    (grad,) = torch.autograd.grad(P.logit_diff(logits[0], pair.answer, pair.wrong), x)
    gap = runs.ld_clean - runs.ld_corrupted
    torch.testing.assert_close(ours[layer], ((delta * grad).sum(0) / gap).float(), atol=1e-6, rtol=1e-4)

    def ld_at(eps: float) -> float:
        return P.hooked_logit_diff(decoder_bridge, pair.corrupted, pair.answer, pair.wrong, [
            (f"blocks.{layer}.mlp.hook_post", lambda act, hook: (corrupted_post + eps * delta)[None])])

    eps = 1e-2
    directional = (ld_at(eps) - ld_at(-eps)) / (2 * eps) / gap
    assert abs(float(ours[layer].sum()) - directional) < 1e-3 * max(1.0, abs(directional))


def test_engine_check_is_tiny(decoder_bridge, runs, suffix):
    err = P.check_engine(decoder_bridge, suffix, runs, 2, 5)
    print(f"check_engine: {err:.3g}")
    assert err < 1e-5


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_low_precision_engine_check_is_within_its_tolerance(decoder_dir, dtype):
    """A body cast to bfloat16/float16 (the float32 head kept, soft-cap included): the engine against a full hooked
    forward in the same precision, within the tolerance every experiment enforces (ENGINE_TOLERANCE)."""
    from anneuron.models import load_model

    br = load_model(str(decoder_dir), device="cpu", dtype=dtype)
    tok = br.tokenizer
    pair = P.PromptPair(br.to_tokens(CLEAN), br.to_tokens(CORRUPTED), single_token(tok, ANSWER),
                        single_token(tok, " John"))
    runs = P.run_pair(br, pair)
    err = P.check_engine(br, P.SuffixModel(br, runs.corrupted, pair.start, pair.answer, pair.wrong), runs, 1, 5)
    print(f"{dtype}: check_engine {err:.3g}")
    assert err < P.ENGINE_TOLERANCE[getattr(torch, dtype)]


# --- the logit lens: the family's final norm (gain, offset, LayerNorm centring) and soft-cap ----------------------

@torch.no_grad()
def _by_hand(hf, x: torch.Tensor, a: int, w: int, scale: torch.Tensor | None = None) -> float:
    """The RAW model's final norm without its bias (centre under LayerNorm; divide by its own scale or the given
    one; its gain, with Gemma's offset), its lm_head rows a and w without b_U, then its soft-cap."""
    fam = A.family_of(hf)
    norm = A.module(hf, fam.final_norm)
    x = x.double()
    if fam.norm == "LN":
        x = x - x.mean()
    x = x / (scale.double() if scale is not None else (x.pow(2).mean() + A.eps_of(norm)).sqrt())
    z = (x * A.gain(norm, fam).double()) @ A.module(hf, fam.unembed).weight.double()[[a, w]].T
    cap = getattr(hf.config, "final_logit_softcapping", None)
    if cap:
        z = cap * torch.tanh(z / cap)
    return float(z[0] - z[1])


@pytest.fixture(scope="module")
def lens(decoder_bridge, runs):
    return logit_lens(decoder_bridge, runs.clean.cache, runs.pair.answer, runs.pair.wrong)


def _entries(runs) -> list[torch.Tensor]:
    """0_pre, 0_mid, ..., final_post at the last position; mid = resid_pre + attn_out (a parallel block's too)."""
    cache, out = runs.clean.cache, []
    for l in range(3):
        pre = cache[f"blocks.{l}.hook_resid_pre"][0, -1]
        out += [pre, pre + cache[f"blocks.{l}.hook_attn_out"][0, -1]]
    return out + [cache["blocks.2.hook_resid_post"][0, -1]]


def test_logit_lens_recomputed_entries_by_hand(decoder_hf, decoder_bridge, runs, lens):
    a, w = runs.pair.answer, runs.pair.wrong
    worst = max(abs(float(lens.recomputed[i]) - _by_hand(decoder_hf, x, a, w)) for i, x in enumerate(_entries(runs)))
    print(f"recomputed: max |lens - by hand| = {worst:.3g}")
    assert worst < 1e-4
    b_u = decoder_bridge.unembed.original_component.bias
    bias = 0.0 if b_u is None else float(b_u[a] - b_u[w])  # (the final LayerNorm's bias went into b_U)
    if getattr(decoder_hf.config, "final_logit_softcapping", None) is None:
        assert abs(float(lens.recomputed[-1]) - (runs.ld_clean - bias)) < 1e-4
    else:
        assert bias == 0 and abs(float(lens.recomputed[-1]) - runs.ld_clean) < 1e-4
    assert lens.labels == ["0_pre", "0_mid", "1_pre", "1_mid", "2_pre", "2_mid", "final_post"]


def test_logit_lens_post_entries_by_hand(decoder_hf, runs, lens):
    """Every entry scaled by the final residual's own scale (centred first under LayerNorm)."""
    fam = A.family_of(decoder_hf)
    entries = _entries(runs)
    final = entries[-1].double()
    final = final - final.mean() if fam.norm == "LN" else final
    scale = (final.pow(2).mean() + A.eps_of(A.module(decoder_hf, fam.final_norm))).sqrt()
    a, w = runs.pair.answer, runs.pair.wrong
    cache = runs.clean.cache
    torch.testing.assert_close(cache["ln_final.hook_scale"][0, -1, 0].double(), scale, rtol=1e-6, atol=0)
    worst = max(abs(float(lens.post[i]) - _by_hand(decoder_hf, x, a, w, scale)) for i, x in enumerate(entries))
    print(f"post: max |lens - by hand| = {worst:.3g}")
    assert worst < 1e-4
    assert abs(float(lens.post[-1]) - float(lens.recomputed[-1])) < 1e-4  # the final entry: its own scale
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


def test_head_patching_equals_the_raw_model_per_head(decoder, decoder_hf, decoder_bridge, runs):
    """Every head of every layer set to its clean z at every position by the batched engine (heads.head_lds: point
    `z`, the projection, post-norm and MLP rerun) against the raw Hugging Face model (no bridge, no folding): one
    full forward per head with that head's slice of its attention output projection's input (o_proj, GPT-NeoX's and
    Phi's dense) set to the raw clean run's."""
    from anneuron.experiments import heads as H
    from anneuron.experiments import tasks as T

    fam, pair, d_head = A.family_of(decoder_hf), runs.pair, decoder_bridge.cfg.d_head
    projections = [A.attn_out(layer, fam) for layer in A.layers(decoder_hf, fam)]
    clean_z = {}
    handles = [proj.register_forward_pre_hook(lambda mod, args, l=l: clean_z.__setitem__(l, args[0].clone()))
               for l, proj in enumerate(projections)]
    with torch.no_grad():
        decoder_hf(pair.clean)
    for h in handles:
        h.remove()

    def raw_ld(layer: int, head: int) -> float:
        cols = slice(head * d_head, (head + 1) * d_head)

        def pre_hook(mod, args):
            x = args[0].clone()
            x[..., cols] = clean_z[layer][..., cols]
            return (x, *args[1:])

        handle = projections[layer].register_forward_pre_hook(pre_hook)
        try:
            with torch.no_grad():
                return float(P.logit_diff(decoder_hf(pair.corrupted).logits[0], pair.answer, pair.wrong))
        finally:
            handle.remove()

    task = T.TaskRuns([runs])
    model, th = T.PairsModel(decoder_bridge, task), H.TaskHeads.of(decoder_bridge, task)
    ours = torch.stack([H.head_lds(model, task, th, l, batch_size=3)[:, 0] for l in range(model.n_layers)])
    reference = torch.tensor([[raw_ld(l, h) for h in range(decoder_bridge.cfg.n_heads)] for l in range(model.n_layers)])
    worst = float((ours.double() - reference.double()).abs().max())
    print(f"{decoder}: max |engine - raw hooked LD| over heads = {worst:.3g} (LD scale {runs.ld_scale:.3g}; largest "
          f"head effect {float((reference - runs.ld_corrupted).abs().max()):.3g})")
    assert worst < TOL * runs.ld_scale
    assert float((reference - runs.ld_corrupted).abs().max()) > 0.05  # the patches move LD
