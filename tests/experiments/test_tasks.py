"""Tasks (anneuron.experiments.tasks): the batched multi-pair engine against a per-pair loop of the single-pair
engine (itself tested against TransformerLens and hooked forwards), on the random GPT-2 and the random Llamas
(GQA, RoPE, per-pair prefixes of different content and different first differences); the aggregate against its
definition; a task of the planted model end to end."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from test_patching import TOL

from anneuron.experiments import patching as P
from anneuron.experiments import tasks as T
from anneuron.tokenizer import single_token

# One length; different prefixes (pair 1), different answers (pair 1) and an earlier first difference (pair 2).
PAIRS = [
    ("When John and Mary went to the big old store, man gave a drink to",
     "When John and Mary went to the big old store, Ben gave a drink to", " man", " John"),
    ("When Tom and Anna went to the big old house, man gave a book to",
     "When Tom and Anna went to the big old house, Ben gave a book to", " man", " Tom"),
    ("When John and Mary went to the big old store, man gave a drink to",
     "When Paul and Mary went to the big old store, man gave a drink to", " John", " Paul"),
]


def make_task(bridge) -> T.TaskRuns:
    tok = bridge.tokenizer
    return T.TaskRuns([P.run_pair(bridge, P.PromptPair(bridge.to_tokens(c), bridge.to_tokens(r),
                                                       single_token(tok, a), single_token(tok, w)))
                       for c, r, a, w in PAIRS])


def singles(bridge, task: T.TaskRuns) -> list[P.SuffixModel]:
    return [P.SuffixModel(bridge, r.corrupted, r.pair.start, r.pair.answer, r.pair.wrong) for r in task.runs]


def assert_lds(batched: torch.Tensor, loop: list[torch.Tensor], task: T.TaskRuns) -> None:
    """batched [..., P] against the per-pair loop's scores, compared as LDs (score · gap + LD_corrupted)."""
    for p, (scores, runs) in enumerate(zip(loop, task.runs)):
        ld = scores.double() * (runs.ld_clean - runs.ld_corrupted) + runs.ld_corrupted
        torch.testing.assert_close(batched[..., p].double(), ld, atol=TOL, rtol=0)


def llama(kind: str, tmp_path_factory):
    """The session's random Llama of this kind (tests/llama_models.py), built once per process."""
    from llama_models import llama_folder, loaded

    return loaded(kind, llama_folder(kind, tmp_path_factory))


def family_model(variant: str, tmp_path_factory):
    """The session's tiny random model of another family (tests/family_models.py), built once per process."""
    from family_models import family_folder, loaded

    return loaded(variant, family_folder(variant, tmp_path_factory))


# GPT-2, two Llama layouts, and the families whose blocks differ: parallel (GPT-NeoX), post-norms and a final
# soft-cap (Gemma 2: its neurons are patched through the MLP's projection and post-norm, LD soft-capped per pair):
# every family of tests/family_models.py
CASES = ["gpt2", "tied-swiglu", "qwen2-qkv-bias", "qwen3", "gpt_neox", "phi", "gemma2", "gemma3", "olmo2"]


def _case(name: str, tiny_bridge, tmp_path_factory):
    if name == "gpt2":
        bridge = tiny_bridge
    elif name in ("tied-swiglu", "qwen2-qkv-bias"):
        bridge = llama(name, tmp_path_factory)
    else:
        bridge = family_model(name, tmp_path_factory)
    task = make_task(bridge)
    starts = [r.pair.start for r in task.runs]
    assert len(set(starts)) > 1 and len({r.pair.answer for r in task.runs}) > 1
    return bridge, task, T.PairsModel(bridge, task)


@pytest.fixture(scope="module", params=CASES)
def case(request, tiny_bridge, tmp_path_factory):
    return _case(request.param, tiny_bridge, tmp_path_factory)


def test_unpatched_copies_are_each_pairs_corrupted_run(case):
    bridge, task, model = case
    for point in ("pre", "mid", "post"):
        for layer in range(model.n_layers):
            ld = model.logit_diff(model.base[point][layer][None], layer, point)[0]
            torch.testing.assert_close(ld.double(), task.ld_corrupted, atol=TOL, rtol=0)


@pytest.mark.parametrize("component", list(P.COMPONENTS))
def test_layer_positions_batched_equal_a_loop_over_pairs(case, component):
    bridge, task, model = case
    batched = T.layer_position_lds(model, task, component, batch_size=7)  # [L, T, P]
    loop = [P.layer_position_scores(m, r, component, batch_size=64) for m, r in zip(singles(bridge, task), task.runs)]
    assert_lds(batched, loop, task)


def test_neurons_and_joint_batched_equal_a_loop_over_pairs(case):
    bridge, task, model = case
    neurons = list(range(0, 128, 3))
    groups = [[0], [1, 5, 9], list(range(20))]
    for layer in range(model.n_layers):
        batched = T.neuron_lds(model, task, layer, neurons, batch_size=10)
        loop = [P.neuron_scores(m, r, layer, neurons, batch_size=64) for m, r in zip(singles(bridge, task), task.runs)]
        assert_lds(batched, loop, task)
        joint = T.joint_lds(model, task, layer, groups, batch_size=4)
        assert_lds(joint, [P.joint_scores(m, r, layer, groups, batch_size=64)
                           for m, r in zip(singles(bridge, task), task.runs)], task)


def test_task_engine_check_is_small(case):
    bridge, task, model = case
    assert T.check_engine(bridge, model, task, 1, 7) < 1e-5


def test_aggregate_is_the_ratio_of_mean_lds_and_agreement_counts_signs():
    clean, corrupted = [2.0, 4.0, 1.0], [-1.0, 0.0, 0.5]
    task = T.TaskRuns([SimpleNamespace(ld_clean=c, ld_corrupted=r, pair=SimpleNamespace(n_pos=5))
                       for c, r in zip(clean, corrupted)])
    ld = torch.tensor([[2.0, 4.0, 1.0], [-1.0, 2.0, 0.0], [0.5, 1.0, 0.75]])
    s = task.scores(ld)
    mean_gap = (sum(clean) - sum(corrupted)) / 3
    expected = [(float(ld[i].double().mean()) - sum(corrupted) / 3) / mean_gap for i in range(3)]
    torch.testing.assert_close(s.aggregate, torch.tensor(expected, dtype=torch.float64))
    torch.testing.assert_close(s.per_pair[1], torch.tensor([0.0, 0.5, -1.0], dtype=torch.float64))
    assert s.aggregate[0] == 1 and s.std[0] == 0 and s.agreement[0] == 1
    assert float(s.aggregate[1]) > 0 and float(s.agreement[1]) == pytest.approx(1 / 3)  # only pair 1 is positive
    # the gap-weighted mean of the per-pair scores is the same aggregate
    torch.testing.assert_close(task.combine(s.per_pair.T), s.aggregate)


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_a_low_precision_task_passes_its_engine_check(demo_dir, dtype):
    """The batched engine in a 16-bit body: each pair's unpatched and one-neuron LDs, and the top head's, against a
    hooked forward of the same body, within the engine's tolerance for that dtype (patching.ENGINE_TOLERANCE)."""
    from anneuron.experiments.heads import head_tables
    from anneuron.models import body_dtype, load_model
    from anneuron.stage_config import PatchingConfig

    bridge = load_model(str(demo_dir), device="cpu", dtype=dtype)
    tok = bridge.tokenizer
    pairs = [(f"I climbed up the {f} tree and picked", f"I climbed up the {f} tree and walked") for f in
             ("apple", "pear", "plum")]
    task = T.TaskRuns([P.run_pair(bridge, P.PromptPair(bridge.to_tokens(c), bridge.to_tokens(r),
                                                       single_token(tok, " an"), single_token(tok, " a")))
                       for c, r in pairs])
    model = T.PairsModel(bridge, task)
    tolerance = P.ENGINE_TOLERANCE[body_dtype(bridge)]
    assert T.check_engine(bridge, model, task, 2, 892) < tolerance
    pc = PatchingConfig(auto_threshold=0.2, auto_method="mlp_out", max_auto_layers=2, attribution_exact_top=5,
                        standout_z=8.0, standout_min_score=0.05, batch_size=16, joint_k=(1,))
    _, head_error, _ = head_tables(bridge, task, model, ["t"] * task.runs[0].pair.n_pos, pc, 0.8)
    assert head_error < tolerance, head_error
