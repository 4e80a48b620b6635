"""The logit lens's two conventions against projections done by hand (random model, random LayerNorms)."""

from __future__ import annotations

import pytest
import torch

from anneuron.experiments import patching as P
from anneuron.experiments.logit_lens import logit_lens
from anneuron.tokenizer import single_token

PROMPT = "When John and Mary went to the big old store, man gave a drink to"


@pytest.fixture(scope="module")
def setup(tiny_bridge):
    tok = tiny_bridge.tokenizer
    a, w = single_token(tok, " man"), single_token(tok, " John")
    run = P.run_prompt(tiny_bridge, tiny_bridge.to_tokens(PROMPT), a, w)
    return run, a, w, logit_lens(tiny_bridge, run.cache, a, w)


@torch.no_grad()
def _by_hand(bridge, x: torch.Tensor, a: int, w: int, scale: torch.Tensor | None = None) -> float:
    """Final LayerNorm (own statistics, or the given scale) then W_U[:, a] − W_U[:, w]; b_U left out."""
    ln = bridge.ln_final.original_component
    x = x.double() - x.double().mean()
    x = x / (scale.double() if scale is not None else (x.pow(2).mean() + ln.eps).sqrt())
    x = x * ln.weight.double() + ln.bias.double()
    W_U = bridge.W_U.double()
    return float(x @ (W_U[:, a] - W_U[:, w]))


def test_labels_are_transformer_lens_own(setup, tiny_bridge):
    *_, lens = setup
    n = tiny_bridge.cfg.n_layers
    expected = [f"{l}_{k}" for l in range(n) for k in ("pre", "mid")] + ["final_post"]
    assert lens.labels == expected
    assert len(lens.post) == len(lens.recomputed) == 2 * n + 1


def test_final_entries_equal_ld_minus_unembedding_bias(setup, tiny_bridge):
    run, a, w, lens = setup
    b_U = tiny_bridge.b_U
    target = run.ld - float(b_U[a] - b_U[w])
    assert abs(float(lens.post[-1]) - target) < 1e-4
    assert abs(float(lens.recomputed[-1]) - target) < 1e-4


def test_recomputed_entry_after_each_block_is_its_own_normalised_projection(setup, tiny_bridge):
    run, a, w, lens = setup
    cache = run.cache
    for l in range(tiny_bridge.cfg.n_layers):
        resid = cache[f"blocks.{l}.hook_resid_post"][0, -1] if l == tiny_bridge.cfg.n_layers - 1 else \
            cache[f"blocks.{l + 1}.hook_resid_pre"][0, -1]
        assert abs(float(lens.recomputed[2 * l + 2]) - _by_hand(tiny_bridge, resid, a, w)) < 1e-4
        mid = cache[f"blocks.{l}.hook_resid_mid"][0, -1]
        assert abs(float(lens.recomputed[2 * l + 1]) - _by_hand(tiny_bridge, mid, a, w)) < 1e-4


def test_post_convention_uses_the_final_scale_for_every_entry(setup, tiny_bridge):
    run, a, w, lens = setup
    scale = run.cache["ln_final.hook_scale"][0, -1]
    resid = run.cache["blocks.0.hook_resid_pre"][0, -1]
    assert abs(float(lens.post[0]) - _by_hand(tiny_bridge, resid, a, w, scale=scale)) < 1e-4
    # additive: the post entries' steps sum to the final entry (the recomputed ones need not)
    steps = lens.post[1:] - lens.post[:-1]
    assert abs(float(lens.post[0] + steps.sum() - lens.post[-1])) < 1e-4


def test_mlp_jumps_and_rows(setup, tiny_bridge):
    *_, lens = setup
    n = tiny_bridge.cfg.n_layers
    jumps = lens.mlp_jumps("post")
    assert jumps.shape == (n,)
    assert abs(float(jumps[0] - (lens.post[2] - lens.post[1]))) < 1e-6
    assert abs(float(jumps[-1] - (lens.post[-1] - lens.post[-2]))) < 1e-6
    rows = lens.rows()
    assert len(rows) == 2 * (2 * n + 1)
    assert {r["convention"] for r in rows} == {"post", "recomputed"}
    assert rows[0] == dict(index=0, label="0_pre", convention="post", logit_diff=float(lens.post[0]))
