"""Layer deletion and adjacent swap (anneuron.stages.interventions: batched, padded, suffix-only, the layer list
replaced) against a hand-built hooked forward: each row alone, the whole model run, the deleted block turned into
the identity by a forward hook, the swapped pair run by hand inside a hook on its first block (the second then the
first, each with the arguments the intact forward gave it: its own mask and rotary embeddings) and the second made
the identity; KL and top-1 in float64 (KL rtol 1e-4, abs 1e-6; top-1 agreement to 1e-9). On a tiny GPT-2 with
random LayerNorms, the four tiny random Llamas and every family of tests/family_models.py (parallel GPT-NeoX and Phi,
post-norm Gemma 2/3 and OLMo-2, Qwen3; sliding-window and global layers mixed in Gemma 2/3 and Qwen3)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from family_models import *  # noqa: F401,F403 (session fixtures)
from llama_models import *  # noqa: F401,F403 (session fixtures)
from test_layer_stats import shards  # noqa: F401 (module fixture)

from anneuron import architecture as A
from anneuron.models import load_hf
from anneuron.resolve import resolve
from anneuron.stages import interventions as I
from anneuron.stages.stream import take_rows

TOKENS = 70


def test_plan():
    assert I.plan(3) == [("delete", 0, [1, 2]), ("delete", 1, [2]), ("delete", 2, []),
                         ("swap", 0, [1, 0, 2]), ("swap", 1, [2, 1])]


def own_calls(model, tokens: torch.Tensor) -> list[tuple[tuple, dict]]:
    """Each decoder layer's arguments but the residual, as the intact forward calls it (its mask and rotary
    embeddings: by layer type in Gemma 2/3 and Qwen3)."""
    layers = A.layers(model)
    calls: list = [None] * len(layers)

    def grab(k, args, kwargs):
        calls[k] = (args[1:], {n: v for n, v in kwargs.items() if n != "hidden_states"})

    handles = [layer.register_forward_pre_hook(lambda m, a, kw, k=k: grab(k, a, kw), with_kwargs=True)
               for k, layer in enumerate(layers)]
    try:
        model(input_ids=tokens, use_cache=False)
    finally:
        for h in handles:
            h.remove()
    return calls


def hooked_logits(model, tokens: torch.Tensor, kind: str, layer: int, own: bool = True) -> torch.Tensor:
    """The full forward with the intervention made by forward hooks (no layer list touched). A swapped pair runs
    each block with its own arguments (own=True, the stage's definition) or with those of the index it runs at."""
    layers = A.layers(model)
    calls = own_calls(model, tokens)

    def identity(mod, args, kwargs, out):
        return args[0] if args else kwargs["hidden_states"]

    def swapped(mod, args, kwargs, out):
        x = args[0] if args else kwargs["hidden_states"]
        rest, kw = calls[layer]
        first_rest, first_kw = calls[layer + 1] if own else calls[layer]
        second_rest, second_kw = calls[layer] if own else calls[layer + 1]
        y = layers[layer + 1].forward(x, *first_rest, **first_kw)
        return layers[layer].forward(y, *second_rest, **second_kw)

    if kind == "delete":
        handles = [layers[layer].register_forward_hook(identity, with_kwargs=True)]
    else:
        handles = [layers[layer].register_forward_hook(swapped, with_kwargs=True),
                   layers[layer + 1].register_forward_hook(identity, with_kwargs=True)]
    try:
        return model(input_ids=tokens, use_cache=False).logits[0].double()
    finally:
        for h in handles:
            h.remove()


def check(folder, shards, attention: str = "eager") -> None:  # noqa: F811
    model = load_hf(str(folder), "cpu", "float32", attention)
    table = I.interventions(model, shards, intervention_tokens=TOKENS, batch_size=3, progress=False).to_pydict()
    rows = list(take_rows(shards, TOKENS))
    L = len(A.layers(model))
    assert len(table["layer"]) == 2 * L - 1
    with torch.no_grad():
        for i, (kind, layer) in enumerate(zip(table["intervention"], table["layer"])):
            kls, agree = [], []
            for _, row in rows:
                toks = torch.tensor([row.tokens])
                p = torch.log_softmax(model(input_ids=toks, use_cache=False).logits[0].double(), -1)[1:]
                q = torch.log_softmax(hooked_logits(model, toks, kind, layer), -1)[1:]
                kls += (p.exp() * (p - q)).sum(-1).tolist()
                agree += (p.argmax(-1) == q.argmax(-1)).double().tolist()
            assert table["positions"][i] == len(kls) == TOKENS - len(rows)
            assert table["kl"][i] == pytest.approx(np.mean(kls), rel=1e-4, abs=1e-6), (kind, layer)
            assert table["top1_agreement"][i] == pytest.approx(np.mean(agree), abs=1e-9), (kind, layer)
    assert min(table["kl"]) > 1e-3  # every intervention changes the model (random weights x5)
    assert max(table["top1_agreement"]) < 1  # and some top-1 somewhere


def test_gpt2_against_hooked_forwards(tiny_dir, shards):  # noqa: F811
    check(tiny_dir, shards)


def test_llama_against_hooked_forwards(llama_dir, shards):  # noqa: F811
    check(llama_dir, shards)


def test_family_against_hooked_forwards(family, family_dir, shards):  # noqa: F811
    """GPT-NeoX (parallel and sequential), Phi, Gemma 2/3 and OLMo-2 (post-norms), Qwen3, under the attention the
    workflow runs them with (SDPA; Gemma 2 eager: its attention soft-cap), against the hooked forward."""
    check(family_dir, shards, A.family_of(resolve(str(family_dir)).model_type).fast_attention)


@pytest.mark.parametrize("variant", ["gemma2", "gemma3", "qwen3"])
def test_a_swapped_block_keeps_its_own_window(variant, shards, tmp_path_factory):  # noqa: F811
    """Sliding-window and global layers mixed (Gemma 2/3, Qwen3): a block moved by a swap keeps its own mask and
    rotary base, and that is not the same model as giving it those of the index it runs at (which running the
    replaced layer list bare would do), so the hooked reference above can tell the two apart."""
    from llama_models import _once  # the family fixtures' cache: the same model as family_dir's

    from anneuron.demos.families import random_family_model

    folder = _once(f"dir/{variant}", lambda: random_family_model(tmp_path_factory.mktemp("family") / variant,
                                                                 variant))
    model = load_hf(str(folder), "cpu", "float32", "eager")
    types = model.config.layer_types
    mixed = next(ell for ell in range(len(types) - 1) if types[ell] != types[ell + 1])
    toks = torch.tensor([next(iter(take_rows(shards, TOKENS)))[1].tokens])
    with torch.no_grad():
        own = hooked_logits(model, toks, "swap", mixed)
        by_index = hooked_logits(model, toks, "swap", mixed, own=False)
    assert (own - by_index).abs().max() > 1e-2


def test_the_layer_list_is_restored(tiny_dir):
    model = load_hf(str(tiny_dir), "cpu", "float32", "eager")
    before = list(A.layers(model))
    fam = A.family_of(model)
    with pytest.raises(RuntimeError, match="inside"):
        with I.layer_list(model, fam, before[:1]):
            assert len(A.layers(model)) == 1
            raise RuntimeError("inside")
    assert A.layers(model) == before


def test_a_block_that_writes_nothing(tiny_dir, shards):  # noqa: F811
    """Planted: block 1's attention and MLP output projections zeroed, so it writes nothing to the residual."""
    model = load_hf(str(tiny_dir), "cpu", "float32", "eager")
    block = A.layers(model)[1]
    with torch.no_grad():
        for proj in (block.attn.c_proj, block.mlp.c_proj):
            proj.weight.zero_()
            proj.bias.zero_()
    null_block_checks(model, shards)


def test_a_family_block_that_writes_nothing(family, family_dir, shards):  # noqa: F811
    """Planted on every family: block 1's two writes (anneuron.architecture.writers: the post-norms' outputs in
    Gemma 2/3 and OLMo-2) replaced by zeros by forward hooks. With Gemma 2/3's and Qwen3's mixed windows a swap
    with the null block is only a no-op if the other block keeps its own window."""
    model = load_hf(str(family_dir), "cpu", "float32", "eager")
    fam = A.family_of(model)

    def zero(mod, args, out):
        return (torch.zeros_like(out[0]), *out[1:]) if isinstance(out, tuple) else torch.zeros_like(out)

    handles = [w.register_forward_hook(zero) for w in A.writers(A.layers(model)[1], fam)]
    try:
        null_block_checks(model, shards)
    finally:
        for h in handles:
            h.remove()


def null_block_checks(model, shards) -> None:  # noqa: F811
    """Block 1 of a 3-block model writes nothing: deleting it, or swapping it with a neighbour, is then no change
    at all (KL < 1e-9, top-1 all kept), while deleting the others is (KL > 1e-3); and the per-layer statistics see
    a null block (zero output norms, the lens unchanged across it, to rel 1e-5)."""
    from anneuron.stages.layer_stats import layer_stats

    table = I.interventions(model, shards, intervention_tokens=TOKENS, batch_size=3, progress=False).to_pydict()
    got = {(k, ell): (kl, a) for k, ell, kl, a in zip(table["intervention"], table["layer"], table["kl"],
                                                      table["top1_agreement"])}
    for null in (("delete", 1), ("swap", 0), ("swap", 1)):
        assert got[null][0] < 1e-9 and got[null][1] == 1.0, null
    for other in (("delete", 0), ("delete", 2)):
        assert got[other][0] > 1e-3, other
    stats = layer_stats(model, shards, max_tokens=TOKENS, lens_tokens=TOKENS, batch_size=3, seed=0,
                        progress=False).to_pydict()
    assert stats["attn_out_norm"][1] == 0 and stats["mlp_out_norm"][1] == 0 and stats["mlp_out_norm"][0] > 0
    assert stats["kl_to_final"][1] == pytest.approx(stats["kl_to_final"][0], rel=1e-5)
    assert stats["entropy"][1] == pytest.approx(stats["entropy"][0], rel=1e-5)
