"""Layer deletion and adjacent swap (anneuron.stages.interventions: batched, padded, suffix-only, the layer list
replaced) against a hand-built hooked forward: each row alone, the whole model run, the deleted block turned into
the identity by a forward hook, the swapped pair run by hand inside a hook on its first block (the second then the
first, with the arguments the model passed) and the second made the identity; KL and top-1 in float64. On a tiny
GPT-2 with random LayerNorms and the four tiny random Llamas."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from llama_models import *  # noqa: F401,F403 (session fixtures)
from test_layer_stats import shards  # noqa: F401 (module fixture)

from anneuron import architecture as A
from anneuron.models import load_hf
from anneuron.stages import interventions as I
from anneuron.stages.stream import take_rows

TOKENS = 70


def test_plan():
    assert I.plan(3) == [("delete", 0, [1, 2]), ("delete", 1, [2]), ("delete", 2, []),
                         ("swap", 0, [1, 0, 2]), ("swap", 1, [2, 1])]


def hooked_logits(model, tokens: torch.Tensor, kind: str, layer: int) -> torch.Tensor:
    """The full forward with the intervention made by forward hooks (no layer list touched)."""
    layers = A.layers(model)

    def identity(mod, args, kwargs, out):
        return args[0] if args else kwargs["hidden_states"]

    def swapped(mod, args, kwargs, out):
        x = args[0] if args else kwargs["hidden_states"]
        rest = args[1:]
        kw = {k: v for k, v in kwargs.items() if k != "hidden_states"}
        y = layers[layer + 1].forward(x, *rest, **kw)
        return layers[layer].forward(y, *rest, **kw)

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


def check(folder, shards) -> None:  # noqa: F811
    model = load_hf(str(folder), "cpu", "float32", "eager")
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
    """Planted: block 1's attention and MLP output projections zeroed, so it writes nothing to the residual. Deleting
    it, or swapping it with a neighbour, is then no change at all (KL 0, top-1 all kept), while deleting the others
    is; and the per-layer statistics see a null block (zero output norms, the lens unchanged across it)."""
    from anneuron.stages.layer_stats import layer_stats

    model = load_hf(str(tiny_dir), "cpu", "float32", "eager")
    block = A.layers(model)[1]
    with torch.no_grad():
        for proj in (block.attn.c_proj, block.mlp.c_proj):
            proj.weight.zero_()
            proj.bias.zero_()
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
