"""The logit lens on the logit difference (docs/science.md): how far the residual stream already prefers the answer over
the wrong token at each point of the network, at the last position of the clean prompt.

TransformerLens' `accumulated_resid(incl_mid=True)` gives the residual before and after each attention layer
(`0_pre`, `0_mid`, `1_pre`, …, `final_post`); each entry goes through the final norm and is projected on
W_U[:, answer] − W_U[:, wrong] (b_U left out, as the post). The norm has two honest readings, both kept:
`post` scales every entry by the cached scale of the final residual (the post's figure; TL's `apply_ln_to_stack`),
which keeps the entries additive; `recomputed` normalises each entry by its own scale, i.e. what the unembedding
would make of the stream if the model stopped there. Their last entries agree: LD_clean − (b_U[a] − b_U[w]).
A LayerNorm (GPT-2) also removes each entry's mean; an RMSNorm (Llama) does not, and TransformerLens follows the
model's `normalization_type` in both readings. Gemma 2's final soft-cap is applied to each entry's two logits
(neither reading is then additive); a parallel block's `mid` entry is resid_pre + attn_out. The final norm's gain
is folded into W_U by load_model in every family, so the direction below already includes it
(tests/experiments/test_logit_lens.py, test_family_patching.py).

Computed in float32 whatever the body's dtype (docs/science.md "Precision"): the cached residuals are upcast, both
scales are recomputed from them (the `post` scale is the final residual's, i.e. what ln_final computes; a
low-precision cache's own `ln_final.hook_scale` would be rounded), and the direction is the float32 one of
anneuron.experiments.patching.unembed_direction.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor
from transformer_lens import ActivationCache

from anneuron import models as M
from anneuron.experiments.patching import unembed_direction

CONVENTIONS = ("post", "recomputed")


@dataclass(frozen=True)
class LogitLens:
    labels: list[str]  # 0_pre, 0_mid, 1_pre, ..., final_post
    post: Float[Tensor, "n"]
    recomputed: Float[Tensor, "n"]

    def rows(self) -> list[dict]:
        """The rows of logit_lens.parquet: index, label, convention, logit_diff."""
        return [dict(index=i, label=lab, convention=conv, logit_diff=float(getattr(self, conv)[i]))
                for conv in CONVENTIONS for i, lab in enumerate(self.labels)]

    def mlp_jumps(self, convention: str = "post") -> Float[Tensor, "L"]:
        """Change across each MLP layer: entry after block L (its successor's `_pre`, or `final_post`) minus the
        entry after its attention (`L_mid`)."""
        values = getattr(self, convention)
        return values[2::2] - values[1::2]


@torch.no_grad()
def logit_lens(bridge, cache: ActivationCache, answer: int, wrong: int) -> LogitLens:
    """Both conventions from a clean run's cache (resid_pre/resid_mid of every layer and the final resid_post), in
    float32. TransformerLens' apply_ln_to_stack, in float32: centre each entry (LayerNorm only), then divide by the
    final residual's scale (`post`) or by its own (`recomputed`), scale = sqrt(mean(x²) + eps). Under a final
    soft-cap (Gemma 2) each entry is cap(x·W_U[:, answer]) − cap(x·W_U[:, wrong]): the model's own LD read there."""
    stack, labels = _stack(bridge, cache)  # [n, d_model]
    head = M.float32_head(bridge)
    x = stack.float()  # the last entry is the final norm's input
    scale = head.scale(x)[:, None]  # [n, 1]
    if head.kind == "LN":
        x = x - x.mean(-1, keepdim=True)
    if head.softcap is None:
        direction, _ = unembed_direction(bridge, answer, wrong)
        project = lambda v: (v @ direction).detach().cpu()  # noqa: E731
    else:
        columns = head.unembed.weight[[answer, wrong]].detach().float()  # [2, d_model]

        def project(v: Tensor) -> Tensor:
            z = head.capped(v @ columns.T)
            return (z[:, 0] - z[:, 1]).detach().cpu()

    return LogitLens(list(labels), project(x / scale[-1]), project(x / scale))


def _stack(bridge, cache: ActivationCache) -> tuple[Float[Tensor, "n d_model"], list[str]]:
    """The residual at the last position before each block, after each attention, and after the last block
    (`accumulated_resid(incl_mid=True)`). A parallel block (GPT-NeoX, Phi) has no resid_mid: its `mid` entry is
    resid_pre + attn_out, the same sum without the MLP's write."""
    n = bridge.cfg.n_layers
    if f"blocks.{n - 1}.hook_resid_mid" in cache.cache_dict:
        stack, labels = cache.accumulated_resid(incl_mid=True, pos_slice=-1, return_labels=True)  # [n, 1, d]
        return stack[:, 0], list(labels)
    entries, labels = [], []
    for l in range(n):
        pre = cache[f"blocks.{l}.hook_resid_pre"][0, -1]
        entries += [pre, pre + cache[f"blocks.{l}.hook_attn_out"][0, -1]]
        labels += [f"{l}_pre", f"{l}_mid"]
    return torch.stack(entries + [cache[f"blocks.{n - 1}.hook_resid_post"][0, -1]]), labels + ["final_post"]
