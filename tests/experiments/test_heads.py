"""Attention heads (anneuron.experiments.heads) and direct effects (anneuron.experiments.direct_effect): head patching
against TransformerLens' own helpers (GPT-2) and a hooked full forward per head (random Llamas with grouped-query
attention); batched over pairs against one pair at a time; direct logit attributions against the logit lens they
must add up to."""

from __future__ import annotations

import pytest
import torch
from test_patching import TOL
from test_tasks import head_case, make_task  # noqa: F401 (the parametrised fixture)
from transformer_lens import patching as tl_patching

from anneuron.experiments import heads as H
from anneuron.experiments import patching as P
from anneuron.experiments import tasks as T
from anneuron.experiments.direct_effect import neuron_direct
from anneuron.experiments.logit_lens import logit_lens


def one_pair(task: T.TaskRuns, p: int) -> T.TaskRuns:
    return T.TaskRuns([task.runs[p]])


def test_heads_decompose_the_attention_output(head_case):  # noqa: F811
    bridge, task, _ = head_case
    th = H.TaskHeads.of(bridge, task)
    for runs, heads in zip(task.runs, th.corrupted):
        assert H.decomposition_error(runs.corrupted, heads, th.W_O) < 1e-5
    assert th.W_O[0].shape == (bridge.cfg.n_heads, bridge.cfg.d_head, bridge.cfg.d_model)


def test_head_patching_equals_a_hooked_forward_per_head(head_case):  # noqa: F811
    """All positions: one full forward per head with that head's z set to clean (GQA: the query head alone)."""
    bridge, task, model = head_case
    th = H.TaskHeads.of(bridge, task)
    for layer in range(model.n_layers):
        lds = H.head_lds(model, task, th, layer, batch_size=5)  # [H, P]
        for p, runs in enumerate(task.runs):
            slow = torch.tensor([H.hooked_head_ld(bridge, runs, th.clean[p], layer, h)
                                 for h in range(bridge.cfg.n_heads)])
            torch.testing.assert_close(lds[:, p].double(), slow.double(), atol=TOL, rtol=0)


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


def test_heads_batched_over_pairs_equal_one_pair_at_a_time(head_case):  # noqa: F811
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


def test_direct_logit_attributions_add_up_to_the_logit_lens(head_case):  # noqa: F811
    """Per pair (a one-pair task: dla is that pair's), a layer's head DLAs plus its attention bias make the logit
    lens' step across that attention, and its neuron DLAs plus the MLP's output bias the step across the MLP (the
    `post` convention: both divide by the final residual's scale)."""
    bridge, task, model = head_case
    for p in range(task.n_pairs):
        single = one_pair(task, p)
        runs = single.runs[0]
        th = H.TaskHeads.of(bridge, single)
        head_dla, _ = H.head_dla(bridge, single, th)
        neuron_dla, _ = neuron_direct(bridge, single, T.PairsModel(bridge, single))
        lens = logit_lens(bridge, runs.clean.cache, runs.pair.answer, runs.pair.wrong).post.double()
        for layer in range(model.n_layers):
            out = H.head_outputs(th.clean[0].z[layer].float(), th.W_O[layer].float()).sum(1)  # [T, d]
            attn_bias = (runs.clean.acts["attn_out"][layer, -1].float() - out[-1])
            mlp_bias = runs.clean.acts["mlp_out"][layer, -1].float() - (
                runs.clean.acts["post"][layer, -1].float() @ model.w_out(layer).float())
            bias_dla = [float(H.centre(bridge, b.detach()) @ H.logit_weights(bridge, single, "clean")[0])
                        for b in (attn_bias, mlp_bias)]
            attn_step, mlp_step = lens[2 * layer + 1] - lens[2 * layer], lens[2 * layer + 2] - lens[2 * layer + 1]
            assert abs(float(head_dla[layer].sum()) + bias_dla[0] - float(attn_step)) < 1e-4
            assert abs(float(neuron_dla[layer].sum()) + bias_dla[1] - float(mlp_step)) < 1e-4


def test_final_scale_is_the_final_norms_own(head_case):  # noqa: F811
    """The scale the direct effects divide by, recomputed from the cached blocks, is ln_final's hook_scale."""
    from anneuron.experiments.direct_effect import final_scale

    bridge, task, _ = head_case
    for runs in task.runs:
        assert abs(final_scale(bridge, runs.clean) - float(runs.clean.cache["ln_final.hook_scale"][0, -1])) < 1e-5


@pytest.mark.parametrize("min_agreement", [0.0, 1.0])
def test_head_tables(head_case, min_agreement):  # noqa: F811
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
