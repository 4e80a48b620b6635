"""Attention heads of an experiment or task (docs/science.md "Heads"): each head's direct logit attribution, its
activation patching (its output at all positions, and position by position for the top heads) and the attention
patterns of the top heads, on every family of anneuron.architecture.

A head's output is z_h · W_O[h]: z_h (TransformerLens' `hook_z`, [T, d_head]) is the head's slice of the input of the
attention's output projection (architecture.attn_out: GPT-2's c_proj, Llama's o_proj, GPT-NeoX's and Phi's dense),
and W_O[h] the matching rows of that projection's weight; the attention writes post(Σ_h z_h W_O[h] + b_O), post
being its post-norm (Gemma 2/3, OLMo-2) or nothing (checked on every run: `decomposition_error`). Under grouped-query
attention a query head's z already is its share of its key/value head (its own pattern over the shared values), so
patching z_h patches that query head alone, as TransformerLens' `hook_z` does.

Patching head h of layer L sets z_h to its clean value: the one engine (patching.patched_logit_diff, through
tasks.PairsModel) moves z itself (point `z`) and reruns the output projection, the post-norm, the block's MLP (not a
parallel block's, which reads resid_pre) and the later blocks, batched over heads and pairs, suffix-only. Adding
(z_clean − z_corr)_h W_O[h] to the residual instead would be wrong under a post-norm (it rescales by the RMS of the
whole attention output). Tested against TransformerLens' `get_act_patch_attn_head_out_all_pos` / `_by_pos` (GPT-2)
and a hooked full forward per head (every family).
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
from anneuron.experiments.direct_effect import RUNS, input_direct, logit_weights
from anneuron.experiments.standouts import robust_z, standout_mask
from anneuron.experiments.tasks import PairsModel, TaskRuns, copies_per_forward
from anneuron.stage_config import PatchingConfig

TOP_HEADS = 5  # patched position by position, and their patterns kept


def out_projection(bridge, layer: int) -> nn.Module:
    """The attention output projection (Hugging Face module) of a layer."""
    return A.attn_out(A.layers(bridge)[layer], A.family_of(bridge))


def w_o(bridge) -> list[Float[Tensor, "H d_head d_model"]]:
    """Each layer's W_O per head (views of the output projections' weights)."""
    h, d_head = bridge.cfg.n_heads, bridge.cfg.d_head
    return [A.neurons_to_model(out_projection(bridge, l)).detach().view(h, d_head, -1)
            for l in range(bridge.cfg.n_layers)]


@torch.no_grad()
def patterns(bridge, tokens) -> Float[Tensor, "L H T T"]:
    """Every layer's hook_pattern on one prompt."""
    n = bridge.cfg.n_layers
    names = {f"blocks.{l}.attn.hook_pattern" for l in range(n)}
    _, cache = bridge.run_with_cache(tokens, names_filter=lambda name: name in names)
    return torch.stack([cache[f"blocks.{l}.attn.hook_pattern"][0] for l in range(n)])


def head_outputs(z: Float[Tensor, "... T H d_head"], W_O: Float[Tensor, "H d_head d_model"]
                 ) -> Float[Tensor, "... T H d_model"]:
    return torch.einsum("...thk,hkd->...thd", z, W_O.to(z.dtype))


@torch.no_grad()
def decomposition_error(model: P.SuffixModel, run: P.Run, W: list[Tensor]) -> float:
    """max over layers and positions of |attn_out − post(Σ_h z_h W_O[h] + b_O)| relative to max |attn_out|: the
    run's hook_z, W_O split per head, the projection's bias and the post-norm (if any) make what the attention
    wrote."""
    worst = 0.0
    for l, W_O in enumerate(W):
        out = head_outputs(run.acts["z"][l].float(), W_O.float()).sum(-2)
        bias, post = model.attention.out[l].bias, model.attention.post[l]
        out = out if bias is None else out + bias.float()
        out = out if post is None else post(out).float()
        attn = run.acts["attn_out"][l].float()
        worst = max(worst, float((attn - out).abs().max() / attn.abs().max().clamp_min(1e-12)))
    return worst


@dataclass
class TaskHeads:
    """Every pair's clean and corrupted z (from the runs' acts), and W_O."""

    clean: Float[Tensor, "P L T H d_head"]
    corrupted: Float[Tensor, "P L T H d_head"]
    W_O: list[Tensor]

    @classmethod
    def of(cls, bridge, task: TaskRuns) -> "TaskHeads":
        z = [torch.stack([getattr(r, run).acts["z"] for r in task.runs]) for run in RUNS]
        return cls(*z, w_o(bridge))

    def z_delta(self, layer: int, start: int) -> Float[Tensor, "P S H d_head"]:
        return self.clean[:, layer, start:] - self.corrupted[:, layer, start:]


def head_lds(model: PairsModel, task: TaskRuns, th: TaskHeads, layer: int, *, batch_size: int
             ) -> Float[Tensor, "H P"]:
    """LD with each head of the layer set to its clean z at every position (one copy per head and pair)."""
    dz = th.z_delta(layer, model.start)  # [P, S, H, d_head]

    def delta(sl: slice) -> Tensor:
        h = torch.arange(sl.start, sl.stop, device=dz.device)
        d = dz.new_zeros(len(h), *dz.shape)  # [b, P, S, H, d_head]
        d[torch.arange(len(h), device=dz.device), :, :, h] = dz[:, :, h].permute(2, 0, 1, 3)
        return d.flatten(-2)

    return P.patched_logit_diff(model, layer, "z", dz.shape[2], delta,
                                batch_size=copies_per_forward(batch_size, task.n_pairs)).cpu()


def head_position_lds(model: PairsModel, task: TaskRuns, th: TaskHeads, layer: int, head: int, *, batch_size: int
                      ) -> Float[Tensor, "S P"]:
    """LD with one head set to its clean z at one suffix position at a time."""
    dz = th.z_delta(layer, model.start)  # [P, S, H, d_head]

    def delta(sl: slice) -> Tensor:
        pos = torch.arange(sl.start, sl.stop, device=dz.device)
        d = dz.new_zeros(len(pos), *dz.shape)
        d[torch.arange(len(pos), device=dz.device), :, pos, head] = dz[:, pos, head].transpose(0, 1)
        return d.flatten(-2)

    return P.patched_logit_diff(model, layer, "z", dz.shape[1], delta,
                                batch_size=copies_per_forward(batch_size, task.n_pairs)).cpu()


def head_dla(bridge, task: TaskRuns, model: PairsModel) -> tuple[Float[Tensor, "L H"], Float[Tensor, "L H"]]:
    """(dla, direct) of every head (anneuron.experiments.direct_effect): its output at the last position, through
    the frozen post-norm (if any) and final norm; a head's is the sum over its d_head components of z."""
    final = {run: logit_weights(bridge, task, run) for run in RUNS}
    n_heads = bridge.cfg.n_heads
    per_layer = [input_direct(bridge, task, model, final, "attn", l) for l in range(model.n_layers)]
    return tuple(torch.stack([x[i].view(n_heads, -1).sum(-1) for x in per_layer]) for i in range(2))


def hooked_head_ld(bridge, runs: P.PairRuns, clean_z: Float[Tensor, "T d_head"], layer: int, head: int,
                   pos: int | slice = slice(None)) -> float:
    """The reference: one full forward of the corrupted prompt with head `head`'s slice of the output projection's
    input set to its clean z at positions `pos` (default: all)."""
    d_head = bridge.cfg.d_head
    cols = slice(head * d_head, (head + 1) * d_head)

    def pre_hook(module, args):
        x = args[0].clone()
        x[0, pos, cols] = clean_z[pos].to(x.dtype)
        return (x, *args[1:])

    handle = out_projection(bridge, layer).register_forward_pre_hook(pre_hook)
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
    dla, direct = head_dla(bridge, task, model)
    heads = pa.table(dict(
        layer=np.repeat(np.arange(n_layers), n_heads), head=np.tile(np.arange(n_heads), n_layers),
        dla=dla.flatten().numpy(), direct=direct.flatten().numpy(), patch=patch.flatten().numpy(),
        patch_std=s.std.numpy(), agreement=agree.flatten().numpy(), standout_z=z.flatten().numpy(),
        standout=standout.flatten().numpy())).cast(EXPERIMENT_SCHEMAS["heads"])

    top = [int(i) for i in torch.argsort(patch.flatten().abs(), descending=True, stable=True)[:TOP_HEADS]]
    positions, weights = [], []
    start = model.start
    pats = {prompt: patterns(bridge, getattr(task.runs[0].pair, prompt)) for prompt in RUNS}  # the first pair's
    for i in top:
        layer, head = divmod(i, n_heads)
        agg = task.scores(head_position_lds(model, task, th, layer, head, batch_size=pc.batch_size)).aggregate
        positions += [dict(layer=layer, head=head, pos=p, token_str=clean_str[p],
                           score=float(agg[p - start]) if p >= start else 0.0) for p in range(len(clean_str))]
        for prompt, pattern in pats.items():
            pat = pattern[layer, head].float().cpu()
            weights += [dict(layer=layer, head=head, prompt=prompt, query=q, key=k, weight=float(pat[q, k]))
                         for q in range(pat.shape[0]) for k in range(q + 1)]

    top_heads = [dict(name=f"L{i // n_heads}H{i % n_heads}", layer=i // n_heads, head=i % n_heads,
                      patch=float(s.aggregate[i]), patch_std=float(s.std[i]), agreement=float(s.agreement[i]),
                      per_pair=[float(x) for x in s.per_pair[i]]) for i in top]
    layer, head = divmod(top[0], n_heads)
    error = max(decomposition_error(model, r.corrupted, th.W_O) for r in task.runs)
    for p, runs in enumerate(task.runs):
        slow = hooked_head_ld(bridge, runs, th.clean[p, layer, :, head], layer, head)
        error = max(error, abs(float(lds[layer, head, p]) - slow) / runs.ld_scale)
    return {"heads": heads,
            "head_positions": pa.Table.from_pylist(positions, schema=EXPERIMENT_SCHEMAS["head_positions"]),
            "patterns": pa.Table.from_pylist(weights, schema=EXPERIMENT_SCHEMAS["patterns"])}, error, top_heads
