"""Attention heads of an experiment or task (docs/science.md "Heads"): each head's direct logit attribution, its
activation patching (its output at all positions, and position by position for the top heads) and the attention
patterns of the top heads.

A head's output is z_h · W_O[h]: z_h (TransformerLens' `hook_z`, [T, d_head]) is the head's slice of the input of the
attention's output projection (GPT-2's c_proj, Llama's o_proj), and W_O[h] the matching rows of that projection's
weight; the attention output is Σ_h z_h W_O[h] + b_O (checked on every run: `decomposition_error`). Under
grouped-query attention a query head's z already is its share of its key/value head (its own pattern over the
shared values), so patching z_h patches that query head alone, as TransformerLens' `hook_z` does.

Patching head h of layer L at all positions sets z_h to its clean value: it adds (z_clean − z_corr)_h W_O[h] to
the corrupted residual after block L's attention, which the one engine (patching.patched_logit_diff, through
tasks.PairsModel) runs, batched over heads and pairs. Tested against TransformerLens'
`get_act_patch_attn_head_out_all_pos` / `_by_pos` (GPT-2) and a hooked full forward per head (Llama layouts, GQA).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import torch
from jaxtyping import Float
from torch import Tensor, nn

from anneuron import architecture as A
from anneuron.contracts import EXPERIMENT_SCHEMAS
from anneuron.experiments import patching as P
from anneuron.experiments.direct_effect import centre, logit_weights
from anneuron.experiments.standouts import robust_z, standout_mask
from anneuron.experiments.tasks import PairsModel, TaskRuns, copies_per_forward
from anneuron.stage_config import PatchingConfig

TOP_HEADS = 5  # patched position by position, and their patterns kept
OUT_PROJECTIONS = ("o_proj", "c_proj")  # the attention output projection: Llama layouts, GPT-2


def out_projection(block) -> nn.Module:
    """The attention output projection (Hugging Face module) of a bridge block."""
    attn = A.unwrap(block.attn)
    for name in OUT_PROJECTIONS:
        if hasattr(attn, name):
            return A.unwrap(getattr(attn, name))
    raise A.ArchitectureError(f"{type(attn).__name__}: heads need the attention output projection "
                              f"(one of {', '.join(OUT_PROJECTIONS)})")


def unsupported(bridge) -> str | None:
    """Why this model's heads and direct effects cannot be computed exactly (None: they can). A post-norm (Gemma 2/3,
    OLMo-2) rescales each head's and neuron's write by the RMS of the whole sublayer output, so one write added to
    the residual is not what the model does; GPT-NeoX and Phi name their attention output projection `dense` and
    have no head reference test yet. Refused rather than approximated."""
    fam = A.family_of(bridge)
    if fam.attn_post_norm is not None or fam.mlp_post_norm is not None:
        return f"{fam.name}: a post-norm makes one head's or neuron's write nonlinear (no exact head or direct effect)"
    try:
        out_projection(bridge.blocks[0])
    except A.ArchitectureError as e:
        return f"{fam.name}: {e}"
    return None


def w_o(bridge) -> list[Float[Tensor, "H d_head d_model"]]:
    """Each layer's W_O per head (views of the output projections' weights)."""
    h, d_head = bridge.cfg.n_heads, bridge.cfg.d_head
    return [A.neurons_to_model(out_projection(b)).detach().view(h, d_head, -1) for b in bridge.blocks]


@dataclass
class HeadRun:
    z: Float[Tensor, "L T H d_head"]
    pattern: Float[Tensor, "L H T T"]


@torch.no_grad()
def head_run(bridge, tokens) -> HeadRun:
    """One forward keeping every layer's hook_z and hook_pattern."""
    n = bridge.cfg.n_layers
    names = {f"blocks.{l}.attn.hook_{k}" for l in range(n) for k in ("z", "pattern")}
    _, cache = bridge.run_with_cache(tokens, names_filter=lambda name: name in names)
    return HeadRun(torch.stack([cache[f"blocks.{l}.attn.hook_z"][0] for l in range(n)]),
                   torch.stack([cache[f"blocks.{l}.attn.hook_pattern"][0] for l in range(n)]))


def head_outputs(z: Float[Tensor, "... T H d_head"], W_O: Float[Tensor, "H d_head d_model"]
                 ) -> Float[Tensor, "... T H d_model"]:
    return torch.einsum("...thk,hkd->...thd", z, W_O.to(z.dtype))


def decomposition_error(run: P.Run, heads: HeadRun, W: list[Tensor]) -> float:
    """max over layers and positions of |attn_out − Σ_h z_h W_O[h] − b_O| relative to max |attn_out|, with b_O the
    residual's first position (what it must be everywhere: a bias)."""
    worst = 0.0
    for l, W_O in enumerate(W):
        rest = run.acts["attn_out"][l].float() - head_outputs(heads.z[l].float(), W_O.float()).sum(1)
        worst = max(worst, float((rest - rest[:1]).abs().max() / run.acts["attn_out"][l].abs().max().clamp_min(1e-12)))
    return worst


@dataclass
class TaskHeads:
    """Every pair's clean and corrupted z (on the suffix) and patterns, and W_O."""

    clean: list[HeadRun]
    corrupted: list[HeadRun]
    W_O: list[Tensor]

    @classmethod
    def of(cls, bridge, task: TaskRuns) -> "TaskHeads":
        return cls([head_run(bridge, r.pair.clean) for r in task.runs],
                   [head_run(bridge, r.pair.corrupted) for r in task.runs], w_o(bridge))

    def z_delta(self, layer: int, start: int) -> Float[Tensor, "P S H d_head"]:
        return torch.stack([c.z[layer, start:] - r.z[layer, start:] for c, r in zip(self.clean, self.corrupted)])


def head_lds(model: PairsModel, task: TaskRuns, th: TaskHeads, layer: int, *, batch_size: int
             ) -> Float[Tensor, "H P"]:
    """LD with each head of the layer set to its clean z at every position (one copy per head and pair)."""
    dz = th.z_delta(layer, model.start)  # [P, S, H, d_head]
    W_O = th.W_O[layer]

    def delta(sl: slice) -> Tensor:
        h = torch.arange(sl.start, sl.stop)
        return head_outputs(dz[:, :, h], W_O[h]).permute(2, 0, 1, 3)  # [b, P, S, d]

    return P.patched_logit_diff(model, layer, "mid", W_O.shape[0], delta,
                                batch_size=copies_per_forward(batch_size, task.n_pairs)).cpu()


def head_position_lds(model: PairsModel, task: TaskRuns, th: TaskHeads, layer: int, head: int, *, batch_size: int
                      ) -> Float[Tensor, "S P"]:
    """LD with one head set to its clean z at one suffix position at a time."""
    out = head_outputs(th.z_delta(layer, model.start)[:, :, head:head + 1], th.W_O[layer][head:head + 1])[:, :, 0]

    def delta(sl: slice) -> Tensor:
        pos = torch.arange(sl.start, sl.stop)
        d = torch.zeros(len(pos), *out.shape, dtype=out.dtype, device=out.device)  # [b, P, S, d]
        d[torch.arange(len(pos)), :, pos] = out[:, pos].transpose(0, 1)
        return d

    return P.patched_logit_diff(model, layer, "mid", out.shape[1], delta,
                                batch_size=copies_per_forward(batch_size, task.n_pairs)).cpu()


def head_dla(bridge, task: TaskRuns, th: TaskHeads) -> tuple[Float[Tensor, "L H"], Float[Tensor, "L H"]]:
    """(dla, direct) of every head (anneuron.experiments.direct_effect): its output at the last position."""
    clean_w, corrupted_w = logit_weights(bridge, task, "clean"), logit_weights(bridge, task, "corrupted")
    gaps = float((task.ld_clean - task.ld_corrupted).sum())
    dla, direct = [], []
    for layer, W_O in enumerate(th.W_O):
        out_c = centre(bridge, torch.stack([head_outputs(c.z[layer, -1:].float(), W_O.float())[0] for c in th.clean]))
        out_r = centre(bridge, torch.stack([head_outputs(r.z[layer, -1:].float(), W_O.float())[0]
                                            for r in th.corrupted]))  # [P, H, d]
        dla.append(torch.einsum("phd,pd->ph", out_c, clean_w).mean(0))
        direct.append(torch.einsum("phd,pd->ph", out_c - out_r, corrupted_w).double().sum(0) / gaps)
    return torch.stack(dla).double(), torch.stack(direct)


def hooked_head_ld(bridge, runs: P.PairRuns, clean: HeadRun, layer: int, head: int) -> float:
    """The reference: one full forward of the corrupted prompt with head `head`'s slice of the output projection's
    input set to its clean z (all positions)."""
    d_head = bridge.cfg.d_head
    cols = slice(head * d_head, (head + 1) * d_head)

    def pre_hook(module, args):
        x = args[0].clone()
        x[0, :, cols] = clean.z[layer, :, head].to(x.dtype)
        return (x, *args[1:])

    handle = out_projection(bridge.blocks[layer]).register_forward_pre_hook(pre_hook)
    try:
        return P.hooked_logit_diff(bridge, runs.pair.corrupted, runs.pair.answer, runs.pair.wrong, [])
    finally:
        handle.remove()


def head_tables(bridge, task: TaskRuns, model: PairsModel, clean_str: list[str], pc: PatchingConfig,
                min_agreement: float) -> tuple[dict[str, pa.Table], float, list[dict]]:
    """The `exp_heads`, `exp_head_positions` and `exp_patterns` tables; the engine's largest disagreement
    (relative LD) with a hooked forward on the top head, or the decomposition error, whichever is larger; and the
    top heads by |patch| with their per-pair scores (a task's summary.json lists them)."""
    th = TaskHeads.of(bridge, task)
    n_layers, n_heads = bridge.cfg.n_layers, bridge.cfg.n_heads
    lds = torch.stack([head_lds(model, task, th, l, batch_size=pc.batch_size) for l in range(n_layers)])  # L H P
    s = task.scores(lds.flatten(0, 1))
    patch = s.aggregate.view(n_layers, n_heads)
    z = robust_z(patch.flatten()).view(n_layers, n_heads)
    agree = s.agreement.view(n_layers, n_heads)
    standout = standout_mask(patch, z, pc.standout_z, pc.standout_min_score) & (agree >= min_agreement)
    dla, direct = head_dla(bridge, task, th)
    heads = pa.table(dict(
        layer=np.repeat(np.arange(n_layers), n_heads), head=np.tile(np.arange(n_heads), n_layers),
        dla=dla.flatten().numpy(), direct=direct.flatten().numpy(), patch=patch.flatten().numpy(),
        patch_std=s.std.numpy(), agreement=agree.flatten().numpy(), standout_z=z.flatten().numpy(),
        standout=standout.flatten().numpy())).cast(EXPERIMENT_SCHEMAS["heads"])

    top = [int(i) for i in torch.argsort(patch.flatten().abs(), descending=True, stable=True)[:TOP_HEADS]]
    positions, patterns = [], []
    start = model.start
    for i in top:
        layer, head = divmod(i, n_heads)
        agg = task.scores(head_position_lds(model, task, th, layer, head, batch_size=pc.batch_size)).aggregate
        positions += [dict(layer=layer, head=head, pos=p, token_str=clean_str[p],
                           score=float(agg[p - start]) if p >= start else 0.0) for p in range(len(clean_str))]
        for prompt, run in (("clean", th.clean[0]), ("corrupted", th.corrupted[0])):
            pat = run.pattern[layer, head].float().cpu()
            patterns += [dict(layer=layer, head=head, prompt=prompt, query=q, key=k, weight=float(pat[q, k]))
                         for q in range(pat.shape[0]) for k in range(q + 1)]

    top_heads = [dict(name=f"L{i // n_heads}H{i % n_heads}", layer=i // n_heads, head=i % n_heads,
                      patch=float(s.aggregate[i]), patch_std=float(s.std[i]), agreement=float(s.agreement[i]),
                      per_pair=[float(x) for x in s.per_pair[i]]) for i in top]
    layer, head = divmod(top[0], n_heads)
    error = max(decomposition_error(r.corrupted, h, th.W_O) for r, h in zip(task.runs, th.corrupted))
    for p, runs in enumerate(task.runs):
        slow = hooked_head_ld(bridge, runs, th.clean[p], layer, head)
        error = max(error, abs(float(lds[layer, head, p]) - slow) / runs.ld_scale)
    return {"heads": heads,
            "head_positions": pa.Table.from_pylist(positions, schema=EXPERIMENT_SCHEMAS["head_positions"]),
            "patterns": pa.Table.from_pylist(patterns, schema=EXPERIMENT_SCHEMAS["patterns"])}, error, top_heads
