"""Direct effects (docs/science.md "Direct effect"): what a component writes straight into the logit difference,
through the final norm with its scale frozen, beside its exact (total) patch effect.

Convention, the logit lens' `post` one (anneuron.experiments.logit_lens): a vector v added to the final residual at
the last position moves LD by centre(v) / scale · d, where centre removes the mean under a LayerNorm (nothing under
an RMSNorm), scale = sqrt(mean(centre(x)²) + eps) of that run's final residual x, and d = W_U[:, answer] −
W_U[:, wrong] with the norm's gain folded in (anneuron.models.load_model). Summed over every component this is the
post convention's logit lens, so a layer's heads add up to its attention's logit-lens step (tested).

Two numbers per component: `dla`, the clean run's direct logit attribution (in logits; a task: the mean over
pairs), and `direct`, the direct part of its patch: (clean − corrupted) at the last position, through the
corrupted run's scale, divided by the LD gap (a task: the ratio of mean LDs), in the units of the exact score. A
neuron whose exact score is mostly `direct` writes the answer itself; one whose `direct` is ~0 but exact is large
acts through later layers.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import torch
from jaxtyping import Float
from torch import Tensor

from anneuron import models as M
from anneuron.contracts import EXPERIMENT_SCHEMAS
from anneuron.experiments import patching as P
from anneuron.experiments.tasks import PairsModel, TaskRuns


def final_scale(bridge, run: P.Run) -> float:
    """The final norm's scale of a run at its last position (float32), from its cached blocks."""
    head = M.float32_head(bridge)
    x = (run.acts["resid_pre"][-1, -1] + run.acts["attn_out"][-1, -1] + run.acts["mlp_out"][-1, -1]).float()
    if head.kind == "LN":
        x = x - x.mean()
    return float((x.pow(2).mean() + head.eps).sqrt())


def logit_weights(bridge, task: TaskRuns, run: str) -> Float[Tensor, "P d_model"]:
    """Per pair, d / scale of its `run` ("clean" or "corrupted"): a centred vector's LD per unit."""
    scales = torch.tensor([final_scale(bridge, getattr(r, run)) for r in task.runs])
    directions = torch.stack([P.unembed_direction(bridge, r.pair.answer, r.pair.wrong)[0] for r in task.runs])
    return directions.cpu() / scales[:, None]


def centre(bridge, v: Float[Tensor, "... d_model"]) -> Float[Tensor, "... d_model"]:
    v = v.float().cpu()
    return v - v.mean(-1, keepdim=True) if M.float32_head(bridge).kind == "LN" else v


def neuron_direct(bridge, task: TaskRuns, model: PairsModel
                  ) -> tuple[Float[Tensor, "L d_mlp"], Float[Tensor, "L d_mlp"]]:
    """(dla, direct) of every neuron (module docstring): activation at the last position × centre(W_out[n]) · d /
    scale. Memory: one layer's W_out at a time."""
    clean_w, corrupted_w = logit_weights(bridge, task, "clean"), logit_weights(bridge, task, "corrupted")
    dla, direct = [], []
    for layer in range(model.n_layers):
        w = centre(bridge, model.w_out(layer).detach())  # [d_mlp, d_model]
        act_clean = torch.stack([r.clean.acts["post"][layer, -1] for r in task.runs]).float().cpu()  # [P, d_mlp]
        act_corr = torch.stack([r.corrupted.acts["post"][layer, -1] for r in task.runs]).float().cpu()
        dla.append((act_clean * (clean_w @ w.T)).mean(0))
        per_pair = (act_clean - act_corr) * (corrupted_w @ w.T)  # [P, d_mlp], LD change
        direct.append(per_pair.double().sum(0) / float((task.ld_clean - task.ld_corrupted).sum()))
    return torch.stack(dla).double(), torch.stack(direct)


def direct_table(bridge, task: TaskRuns, model: PairsModel, exact: Float[Tensor, "L d_mlp"]) -> pa.Table:
    """The `exp_direct` table: every neuron's dla and direct, and its exact score (null where not patched)."""
    dla, direct = neuron_direct(bridge, task, model)
    n_layers, d_mlp = dla.shape
    e = exact.double().flatten().numpy()
    return pa.table({"layer": np.repeat(np.arange(n_layers), d_mlp), "neuron": np.tile(np.arange(d_mlp), n_layers),
                     "dla": dla.flatten().numpy(), "direct": direct.flatten().numpy(),
                     "exact": pa.array(e, mask=np.isnan(e))}).cast(EXPERIMENT_SCHEMAS["direct"])
