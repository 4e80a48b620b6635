"""The logit lens on the logit difference (docs/science.md): how far the residual stream already prefers the answer over
the wrong token at each point of the network, at the last position of the clean prompt.

TransformerLens' `accumulated_resid(incl_mid=True)` gives the residual before and after each attention layer
(`0_pre`, `0_mid`, `1_pre`, …, `final_post`); each entry goes through the final norm and is projected on
W_U[:, answer] − W_U[:, wrong] (b_U left out, as the post). The norm has two honest readings, both kept:
`post` scales every entry by the cached scale of the final residual (the post's figure; TL's `apply_ln_to_stack`),
which keeps the entries additive; `recomputed` normalises each entry by its own scale, i.e. what the unembedding
would make of the stream if the model stopped there. Their last entries agree: LD_clean − (b_U[a] − b_U[w]).
A LayerNorm (GPT-2) also removes each entry's mean; an RMSNorm (Llama) does not, and TransformerLens follows the
model's `normalization_type` in both readings. The final norm's gain is folded into W_U by load_model in both
families, so the direction below already includes it (tests/experiments/test_logit_lens.py,
tests/experiments/test_llama_patching.py).

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
    final residual's scale (`post`) or by its own (`recomputed`), scale = sqrt(mean(x²) + eps)."""
    stack, labels = cache.accumulated_resid(incl_mid=True, pos_slice=-1, return_labels=True)  # [n, 1, d_model]
    head = M.float32_head(bridge)
    x = stack[:, 0].float()  # [n, d_model]; the last entry is the final norm's input
    if head.kind == "LN":
        x = x - x.mean(-1, keepdim=True)
    scale = (x.pow(2).mean(-1, keepdim=True) + head.eps).sqrt()  # [n, 1]
    direction, _ = unembed_direction(bridge, answer, wrong)
    project = lambda v: (v @ direction).detach().cpu()  # noqa: E731
    return LogitLens(list(labels), project(x / scale[-1]), project(x / scale))
