"""Attention heads (anneuron.experiments.heads) and direct effects (anneuron.experiments.direct_effect) on every
family: head patching against TransformerLens' own helpers (GPT-2) and a hooked full forward per head (random Llamas
with grouped-query attention, and every family of tests/family_models.py: parallel blocks, post-norms, soft-caps);
batched over pairs against one pair at a time; direct logit attributions against what each sublayer writes (the
sum identity, with the post-norm's and final norm's scales frozen) and against the logit lens."""

from __future__ import annotations

import pytest
import torch
from test_patching import TOL
from test_tasks import CASES, _case, make_task
from transformer_lens import patching as tl_patching

from anneuron import models as M
from anneuron.demos.families import FAMILY_MODELS
from anneuron.experiments import heads as H
from anneuron.experiments import patching as P
from anneuron.experiments import tasks as T
from anneuron.experiments.direct_effect import logit_weights, neuron_direct, write_weights
from anneuron.experiments.logit_lens import logit_lens

# GPT-2, the Llama layouts and every other family variant (GPT-NeoX with and without its parallel residual, Phi,
# Gemma 2 and 3, Qwen3, OLMo-2)
HEAD_CASES = CASES + [v for v in FAMILY_MODELS if v not in CASES]
POST_NORM_CASES = ("gemma2", "gemma3", "olmo2")


@pytest.fixture(scope="module", params=HEAD_CASES)
def head_case(request, tiny_bridge, tmp_path_factory):
    return _case(request.param, tiny_bridge, tmp_path_factory)


def one_pair(task: T.TaskRuns, p: int) -> T.TaskRuns:
    return T.TaskRuns([task.runs[p]])


def test_heads_decompose_the_attention_output(head_case):
    bridge, task, model = head_case
    th = H.TaskHeads.of(bridge, task)
    for runs in task.runs:
        for run in (runs.clean, runs.corrupted):
            assert H.decomposition_error(model, run, th.W_O) < 1e-5
    assert th.W_O[0].shape == (bridge.cfg.n_heads, bridge.cfg.d_head, bridge.cfg.d_model)


def test_head_patching_equals_a_hooked_forward_per_head(head_case):
    """All positions: one full forward per head with that head's z set to clean (GQA: the query head alone), every
    pair and layer. The patches move LD (the hooks bite), and under a post-norm adding the head's write
    (z_clean − z_corr)_h W_O[h] after the attention instead would be wrong by far more than the tolerance."""
    bridge, task, model = head_case
    th = H.TaskHeads.of(bridge, task)
    moved, naive_gap = 0.0, 0.0
    for layer in range(model.n_layers):
        lds = H.head_lds(model, task, th, layer, batch_size=5)  # [H, P]
        dz = th.z_delta(layer, model.start)
        naive = P.patched_logit_diff(model, layer, "mid", bridge.cfg.n_heads,
                                     lambda sl: H.head_outputs(dz[:, :, sl], th.W_O[layer][sl]).permute(2, 0, 1, 3),
                                     batch_size=2)  # [H, P]
        naive_gap = max(naive_gap, float((naive - lds).abs().max()))
        for p, runs in enumerate(task.runs):
            slow = torch.tensor([H.hooked_head_ld(bridge, runs, th.clean[p, layer, :, h], layer, h)
                                 for h in range(bridge.cfg.n_heads)])
            torch.testing.assert_close(lds[:, p].double(), slow.double(), atol=TOL * runs.ld_scale, rtol=0)
            moved = max(moved, float((slow - runs.ld_corrupted).abs().max()))
    print(f"largest head effect on LD {moved:.3g}; additive write vs exact {naive_gap:.3g}")
    assert moved > 0.05
    assert (naive_gap > 100 * TOL) == (model.attention.post[0] is not None)


def test_head_patching_equals_transformer_lens_helpers(tiny_bridge):
    """GPT-2: TransformerLens' get_act_patch_attn_head_out_all_pos and _by_pos (one forward per patch)."""
    task = make_task(tiny_bridge)
    for p in range(task.n_pairs):
        single = one_pair(task, p)
        runs, model = single.runs[0], T.PairsModel(tiny_bridge, single)
        th = H.TaskHeads.of(tiny_bridge, single)
        pair = runs.pair

        def metric(logits):
            return P.logit_diff(logits[0], pair.answer, pair.wrong)

        with torch.no_grad():
            _, clean_cache = tiny_bridge.run_with_cache(pair.clean)
            all_pos = tl_patching.get_act_patch_attn_head_out_all_pos(tiny_bridge, pair.corrupted, clean_cache, metric)
            by_pos = tl_patching.get_act_patch_attn_head_out_by_pos(tiny_bridge, pair.corrupted, clean_cache, metric)
        ours = torch.stack([H.head_lds(model, single, th, l, batch_size=3)[:, 0] for l in range(model.n_layers)])
        torch.testing.assert_close(ours.double(), all_pos.double(), atol=TOL, rtol=0)
        start = model.start
        for layer, head in [(0, 1), (2, 3)]:
            pos = H.head_position_lds(model, single, th, layer, head, batch_size=2)[:, 0]
            torch.testing.assert_close(pos.double(), by_pos[layer, start:, head].double(), atol=TOL, rtol=0)
            torch.testing.assert_close(by_pos[layer, :start, head], torch.full((start,), runs.ld_corrupted),
                                       atol=TOL, rtol=0)


def test_head_patching_by_position_equals_a_hooked_forward(head_case):
    """One head set to its clean z at one position at a time, every suffix position and pair, against a full
    forward with the output projection's input replaced there alone."""
    bridge, task, model = head_case
    th = H.TaskHeads.of(bridge, task)
    for layer, head in [(0, 1), (model.n_layers - 1, 2)]:
        lds = H.head_position_lds(model, task, th, layer, head, batch_size=4)  # [S, P]
        for p, runs in enumerate(task.runs):
            slow = torch.tensor([H.hooked_head_ld(bridge, runs, th.clean[p, layer, :, head], layer, head, pos)
                                 for pos in range(model.start, runs.pair.n_pos)])
            torch.testing.assert_close(lds[:, p].double(), slow.double(), atol=TOL * runs.ld_scale, rtol=0)


def test_heads_batched_over_pairs_equal_one_pair_at_a_time(head_case):
    bridge, task, model = head_case
    th = H.TaskHeads.of(bridge, task)
    for p in range(task.n_pairs):
        single = one_pair(task, p)
        m1, th1 = T.PairsModel(bridge, single), H.TaskHeads.of(bridge, single)
        for layer in range(model.n_layers):
            torch.testing.assert_close(H.head_lds(model, task, th, layer, batch_size=4)[:, p],
                                       H.head_lds(m1, single, th1, layer, batch_size=4)[:, 0], atol=TOL, rtol=0)
        if m1.start == model.start:
            torch.testing.assert_close(H.head_position_lds(model, task, th, 1, 2, batch_size=3)[:, p],
                                       H.head_position_lds(m1, single, th1, 1, 2, batch_size=3)[:, 0],
                                       atol=TOL, rtol=0)


def bias_direct(model: T.PairsModel, task: T.TaskRuns, final: torch.Tensor, sublayer: str, layer: int) -> float:
    """The sublayer's output bias (0 without one) through the frozen post-norm and final norm, for a one-pair task's
    clean run."""
    proj = model.attention.out[layer] if sublayer == "attn" else model.mlps[layer][1]
    if proj.bias is None:
        return 0.0
    return float(write_weights(model, task, final, "clean", sublayer, layer)[0] @ proj.bias.detach().float().cpu())


def test_direct_logit_attributions_add_up_to_what_each_sublayer_writes(head_case):
    """Per pair (a one-pair task: dla is that pair's), a layer's head DLAs plus its attention bias make what the
    attention wrote into the residual (hook_attn_out, after any post-norm) through the final norm's frozen scale,
    and its neuron DLAs plus the MLP's output bias what the MLP wrote: the post-norm's scale frozen at the run's
    makes the split exact. Without a final soft-cap these are the logit lens' steps (the `post` convention)."""
    bridge, task, model = head_case
    capped = M.float32_head(bridge).softcap is not None
    for p in range(task.n_pairs):
        single = one_pair(task, p)
        runs, m1 = single.runs[0], T.PairsModel(bridge, single)
        head_dla, _ = H.head_dla(bridge, single, m1)
        neuron_dla, _ = neuron_direct(bridge, single, m1)
        final = logit_weights(bridge, single, "clean")  # [1, d]
        lens = logit_lens(bridge, runs.clean.cache, runs.pair.answer, runs.pair.wrong).post.double()
        for layer in range(model.n_layers):
            attn, mlp = (float(runs.clean.acts[k][layer, -1].float().cpu() @ final[0]) for k in ("attn_out", "mlp_out"))
            heads_sum = float(head_dla[layer].sum()) + bias_direct(m1, single, final, "attn", layer)
            neurons_sum = float(neuron_dla[layer].sum()) + bias_direct(m1, single, final, "mlp", layer)
            assert abs(heads_sum - attn) < 1e-4 * max(1.0, abs(attn)), (layer, heads_sum, attn)
            assert abs(neurons_sum - mlp) < 1e-4 * max(1.0, abs(mlp)), (layer, neurons_sum, mlp)
            if not capped:
                attn_step, mlp_step = lens[2 * layer + 1] - lens[2 * layer], lens[2 * layer + 2] - lens[2 * layer + 1]
                assert abs(attn - float(attn_step)) < 1e-4 and abs(mlp - float(mlp_step)) < 1e-4


def test_direct_effects_are_the_change_of_each_write(head_case):
    """`direct`, summed over a sublayer's heads (neurons), times the LD gap, is the change of the sublayer's write
    (bias cancels) through the corrupted run's frozen scales: for every pair and layer, against the writes rebuilt
    from z·W_O (activations·W_out) and, without a post-norm, against hook_attn_out / hook_mlp_out themselves."""
    bridge, task, model = head_case
    th = H.TaskHeads.of(bridge, task)
    for p in range(task.n_pairs):
        single = one_pair(task, p)
        runs, m1 = single.runs[0], T.PairsModel(bridge, single)
        _, head_direct = H.head_dla(bridge, single, m1)
        _, neuron_dir = neuron_direct(bridge, single, m1)
        gap = runs.ld_clean - runs.ld_corrupted
        final = logit_weights(bridge, single, "corrupted")
        for layer in range(model.n_layers):
            w = {k: write_weights(m1, single, final, "corrupted", k, layer)[0] for k in ("attn", "mlp")}
            dz = th.clean[p, layer, -1] - th.corrupted[p, layer, -1]  # [H, d_head]
            attn = float(H.head_outputs(dz[None].float(), th.W_O[layer].float())[0].sum(0).cpu() @ w["attn"])
            d_act = (runs.clean.acts["post"][layer, -1] - runs.corrupted.acts["post"][layer, -1]).float()
            mlp = float((d_act @ model.w_out(layer).detach().float()).cpu() @ w["mlp"])
            if model.attention.post[layer] is None:
                hooked = float((runs.clean.acts["attn_out"][layer, -1] - runs.corrupted.acts["attn_out"][layer, -1])
                               .float().cpu() @ final[0])
                assert abs(attn - hooked) < 1e-4 * max(1.0, abs(hooked))
            if model.mlp_posts[layer] is None:
                hooked = float((runs.clean.acts["mlp_out"][layer, -1] - runs.corrupted.acts["mlp_out"][layer, -1])
                               .float().cpu() @ final[0])
                assert abs(mlp - hooked) < 1e-4 * max(1.0, abs(hooked))
            assert abs(float(head_direct[layer].sum()) * gap - attn) < 1e-4 * max(1.0, abs(attn))
            assert abs(float(neuron_dir[layer].sum()) * gap - mlp) < 1e-4 * max(1.0, abs(mlp))


def test_final_scale_is_the_final_norms_own(head_case):
    """The scale the direct effects divide by, recomputed from the cached blocks, is ln_final's hook_scale."""
    from anneuron.experiments.direct_effect import final_scale

    bridge, task, _ = head_case
    for runs in task.runs:
        assert abs(final_scale(bridge, runs.clean) - float(runs.clean.cache["ln_final.hook_scale"][0, -1])) < 1e-5


@pytest.mark.parametrize("min_agreement", [0.0, 1.0])
def test_head_tables(head_case, min_agreement):
    from anneuron.stage_config import PatchingConfig

    bridge, task, model = head_case
    pc = PatchingConfig(auto_threshold=0.2, auto_method="mlp_out", max_auto_layers=2, attribution_exact_top=5,
                        standout_z=1.0, standout_min_score=0.0, batch_size=8, joint_k=(1,))
    tokens = [str(i) for i in range(task.runs[0].pair.n_pos)]
    tables, error, top = H.head_tables(bridge, task, model, tokens, pc, min_agreement)
    assert error < 1e-5
    heads = tables["heads"].to_pylist()
    assert [(t["layer"], t["head"]) for t in top] == [(r["layer"], r["head"]) for r in tables["head_positions"]
                                                      .to_pylist()[::task.runs[0].pair.n_pos]]
    assert all(len(t["per_pair"]) == task.n_pairs for t in top)
    assert len(heads) == model.n_layers * bridge.cfg.n_heads
    assert all(h["standout"] <= (h["agreement"] >= min_agreement) for h in heads)
    pos = tables["head_positions"].to_pylist()
    assert len(pos) == H.TOP_HEADS * len(tokens)
    pattern = tables["patterns"].to_pylist()
    rows = {}
    for r in pattern:
        rows.setdefault((r["layer"], r["head"], r["prompt"], r["query"]), 0.0)
        rows[(r["layer"], r["head"], r["prompt"], r["query"])] += r["weight"]
    assert all(abs(v - 1) < 1e-5 for v in rows.values())  # each query's weights over its keys sum to 1


def test_component_tables_are_written_on_every_family(head_case):
    """What an experiment job writes beyond the neurons (experiment.component_tables): every family's heads,
    positions, patterns and direct effects, none empty, the engine check passed (it raises otherwise)."""
    from anneuron.experiments.experiment import COMPONENT_TABLES, component_tables
    from anneuron.stage_config import PatchingConfig

    bridge, task, model = head_case
    pc = PatchingConfig(auto_threshold=0.2, auto_method="mlp_out", max_auto_layers=2, attribution_exact_top=5,
                        standout_z=1.0, standout_min_score=0.0, batch_size=8, joint_k=(1,))
    exact = torch.full((model.n_layers, bridge.cfg.d_mlp), float("nan"))
    tokens = [str(i) for i in range(task.runs[0].pair.n_pos)]
    tables, top = component_tables(bridge, task, model, exact, tokens, pc, 0.8)
    assert set(tables) == set(COMPONENT_TABLES) and all(t.num_rows > 0 for t in tables.values())
    assert len(top) == H.TOP_HEADS and tables["direct"].num_rows == model.n_layers * bridge.cfg.d_mlp


@pytest.mark.parametrize("case_name", [c for c in HEAD_CASES if c not in POST_NORM_CASES])
def test_each_neurons_direct_effect_from_transformer_lens_own_weights_and_cache(case_name, tiny_bridge,
                                                                                 tmp_path_factory):
    """Neuron by neuron (not only their sum over a layer, which would miss values swapped within it): `dla` and
    `direct` against act · (W_out[l, i] · d) / scale rebuilt from TransformerLens' own stacked W_out and W_U and a
    fresh run_with_cache (hook_post, ln_final.hook_scale), d = W_U[:, answer] − W_U[:, wrong] (centred under a
    LayerNorm). The families without a post-norm (through one, a write passes the post-norm's frozen scale, which
    TransformerLens' cache does not name: the sum identity above covers those)."""
    bridge, task, model = _case(case_name, tiny_bridge, tmp_path_factory)
    assert all(p is None for p in model.mlp_posts)
    single = one_pair(task, 0)
    runs, m1 = single.runs[0], T.PairsModel(bridge, single)
    dla, direct = neuron_direct(bridge, single, m1)
    pair = runs.pair
    d = (bridge.W_U[:, pair.answer] - bridge.W_U[:, pair.wrong]).detach().double()
    if M.float32_head(bridge).kind == "LN":
        d = d - d.mean()
    names = lambda n: n.endswith("mlp.hook_post") or n == "ln_final.hook_scale"  # noqa: E731
    caches = {k: bridge.run_with_cache(toks, names_filter=names)[1] for k, toks in (("clean", pair.clean),
                                                                                   ("corrupted", pair.corrupted))}
    gap = runs.ld_clean - runs.ld_corrupted
    for layer in range(model.n_layers):
        per_neuron = bridge.W_out[layer].detach().double() @ d  # [d_mlp]
        act = {k: c[f"blocks.{layer}.mlp.hook_post"][0, -1].double() for k, c in caches.items()}
        scale = {k: float(c["ln_final.hook_scale"][0, -1]) for k, c in caches.items()}
        want_dla = act["clean"] * per_neuron / scale["clean"]
        want_direct = (act["clean"] - act["corrupted"]) * per_neuron / scale["corrupted"] / gap
        torch.testing.assert_close(dla[layer], want_dla, rtol=1e-4, atol=1e-5 * float(want_dla.abs().max()))
        torch.testing.assert_close(direct[layer], want_direct, rtol=1e-4, atol=1e-5 * float(want_direct.abs().max()))
        assert float(want_dla.abs().max()) > 10 * float(want_dla.abs().median())  # neurons differ: a swap would show
