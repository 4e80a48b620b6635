"""Direct effects (docs/science.md "Direct effect"): what a component writes straight into the logit difference,
with every norm's scale frozen at the run's value, beside its exact (total) patch effect.

Convention, the logit lens' `post` one (anneuron.experiments.logit_lens): a vector v added to the final residual at
the last position moves LD by v · centre(d) / scale, where centre removes the mean under a LayerNorm (nothing under
an RMSNorm; centre(v) · d = v · centre(d)), scale = sqrt(mean(centre(x)²) + eps) of that run's final residual x, and
d = W_U[:, answer] − W_U[:, wrong] with the norm's gain folded in (anneuron.models.load_model). Where a post-norm
sits between a sublayer and the residual (Gemma 2/3, OLMo-2), its scale is frozen too, at the RMS of that run's
sublayer output at the last position (architecture.frozen_post_norm): a component's write v before the norm enters
the residual as g ⊙ v / rms. Both frozen, the convention is linear, so a sublayer's components plus its output bias
add up to what the sublayer writes (tested on every family); summed over every component it is the post
convention's logit lens (without a final soft-cap: Gemma 2's LD is capped, the direct effects are in uncapped logit
units).

Two numbers per component: `dla`, the clean run's direct logit attribution (in logits; a task: the mean over
pairs), and `direct`, the direct part of its patch: (clean − corrupted) at the last position, through the
corrupted run's scales, divided by the LD gap (a task: the ratio of mean LDs), in the units of the exact score. A
neuron whose exact score is mostly `direct` writes the answer itself; one whose `direct` is ~0 but exact is large
acts through later layers.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pyarrow as pa
import torch
from jaxtyping import Float
from torch import Tensor

from anneuron import architecture as A
from anneuron import models as M
from anneuron.contracts import EXPERIMENT_SCHEMAS
from anneuron.experiments import patching as P
from anneuron.experiments.tasks import PairsModel, TaskRuns

RUNS = ("clean", "corrupted")


def final_scale(bridge, run: P.Run) -> float:
    """The final norm's scale of a run at its last position (float32), from its cached blocks."""
    x = run.acts["resid_pre"][-1, -1] + run.acts["attn_out"][-1, -1] + run.acts["mlp_out"][-1, -1]
    return float(M.float32_head(bridge).scale(x))


def logit_weights(bridge, task: TaskRuns, run: str) -> Float[Tensor, "P d_model"]:
    """Per pair, centre(d) / scale of its `run` ("clean" or "corrupted"): LD per unit of a vector added to the
    final residual at the last position."""
    scales = torch.tensor([final_scale(bridge, getattr(r, run)) for r in task.runs])
    d = torch.stack([P.unembed_direction(bridge, r.pair.answer, r.pair.wrong)[0] for r in task.runs]).float().cpu()
    if M.float32_head(bridge).kind == "LN":
        d = d - d.mean(-1, keepdim=True)
    return d / scales[:, None]


def last_inputs(task: TaskRuns, run: str, sublayer: Literal["attn", "mlp"], layer: int) -> Float[Tensor, "P n_in"]:
    """Per pair, what the sublayer's output projection reads at the last position of its `run`: every head's z
    side by side (attn), or the neurons (mlp)."""
    key = "z" if sublayer == "attn" else "post"
    return torch.stack([getattr(r, run).acts[key][layer, -1].flatten() for r in task.runs])


@torch.no_grad()
def write_weights(model: PairsModel, task: TaskRuns, weights: Float[Tensor, "P d_model"], run: str,
                  sublayer: Literal["attn", "mlp"], layer: int) -> Float[Tensor, "P d_model"]:
    """Per pair, LD per unit of what the sublayer's output projection writes at the last position of its `run`
    (before the post-norm, if any), every scale frozen at the run's: `weights` (logit_weights of that run) ⊙ the
    post-norm's frozen factor."""
    if sublayer == "attn":
        norm, proj = model.attention.post[layer], model.attention.out[layer]
    else:
        norm, proj = model.mlp_posts[layer], model.mlps[layer][1]
    if norm is None:
        return weights
    out = proj(last_inputs(task, run, sublayer, layer))
    return weights * A.frozen_post_norm(norm, model.family, out).cpu()


def input_direct(bridge, task: TaskRuns, model: PairsModel, final: dict[str, Float[Tensor, "P d_model"]],
                 sublayer: Literal["attn", "mlp"], layer: int) -> tuple[Float[Tensor, "n_in"], Float[Tensor, "n_in"]]:
    """(dla, direct) of each input of a sublayer's output projection (module docstring): a neuron (mlp), or one
    component of one head's z (attn: a head's is the sum of its d_head). Input i at the last position writes
    x_i · W[i] (W: the projection's weight as (inputs, d_model)), through the frozen post-norm and final norm;
    `final` is logit_weights of both runs. Memory: W folded into the weights first, never [P, n_in, d_model]."""
    proj = model.attention.out[layer] if sublayer == "attn" else model.mlps[layer][1]
    w = A.neurons_to_model(proj).detach().float().cpu()  # [n_in, d_model]
    per_unit = {run: write_weights(model, task, final[run], run, sublayer, layer) @ w.T for run in RUNS}  # [P, n_in]
    x = {run: last_inputs(task, run, sublayer, layer).float().cpu() for run in RUNS}
    dla = (x["clean"] * per_unit["clean"]).mean(0)
    change = (x["clean"] - x["corrupted"]) * per_unit["corrupted"]  # [P, n_in], LD change
    return dla.double(), change.double().sum(0) / float((task.ld_clean - task.ld_corrupted).sum())


def neuron_direct(bridge, task: TaskRuns, model: PairsModel
                  ) -> tuple[Float[Tensor, "L d_mlp"], Float[Tensor, "L d_mlp"]]:
    """(dla, direct) of every neuron (module docstring), one layer's W_out at a time."""
    final = {run: logit_weights(bridge, task, run) for run in RUNS}
    dla, direct = zip(*(input_direct(bridge, task, model, final, "mlp", l) for l in range(model.n_layers)))
    return torch.stack(dla), torch.stack(direct)


def direct_table(bridge, task: TaskRuns, model: PairsModel, exact: Float[Tensor, "L d_mlp"]) -> pa.Table:
    """The `exp_direct` table: every neuron's dla and direct, and its exact score (null where not patched)."""
    dla, direct = neuron_direct(bridge, task, model)
    n_layers, d_mlp = dla.shape
    e = exact.double().flatten().numpy()
    return pa.table({"layer": np.repeat(np.arange(n_layers), d_mlp), "neuron": np.tile(np.arange(d_mlp), n_layers),
                     "dla": dla.flatten().numpy(), "direct": direct.flatten().numpy(),
                     "exact": pa.array(e, mask=np.isnan(e))}).cast(EXPERIMENT_SCHEMAS["direct"])
