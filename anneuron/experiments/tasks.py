"""Tasks: an experiment of many prompt pairs (docs/science.md "Tasks"), patched together.

One pair can win by noise; a task asks the same question of P pairs (a list, or a template with fills) and keeps
what holds over them. Every pair keeps a single pair's checks (equal token length, single-token answers, the
prompt check); the pairs of a task also share one token length (the config check), so that they stack.

`PairsModel` is patching.SuffixModel with the P pairs on the batch dimension: row c·P + p is patched copy c of
pair p, with pair p's corrupted residual, its own prefix keys/values and its own answer/wrong direction. The
suffix starts at the earliest first difference over the pairs (a pair's positions before its own first
difference are identical in its two prompts, so recomputing them is exact). The patching methods below build
the same differences as patching.py's, one per pair, and return LDs of shape [n, P]; `patched_logit_diff` (the
one engine) runs them unchanged.

Aggregate (`TaskRuns.aggregate`): the ratio of mean LDs, (mean_p LD_patched − mean_p LD_corr) / (mean_p LD_clean −
mean_p LD_corr) — TransformerLens' `logits_to_ave_logit_diff` applied to patching, and the gap-weighted mean of the
per-pair scores. It is chosen over the plain mean of per-pair scores because a pair with a small gap turns rounding
noise into a large per-pair score; weighted by its gap it counts for what it moves. Beside it: the spread (standard
deviation over pairs of the per-pair scores) and the sign agreement (fraction of pairs whose per-pair score has the
aggregate's sign). A neuron or head stands out in a task when its aggregate does by the single-pair rule AND its
agreement is at least the task's `min_agreement`.

Memory: the cached runs of every pair, 2P × L × T × (3·d_model + d_mlp + n_heads·d_head) values (the heads' z
last; SmolLM2, 12 pairs of 22 tokens: 61 M, 243 MB in float32), plus one forward of `patching.batch_size` rows (a
task's copy is P rows, so batch_size // P copies).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from jaxtyping import Float
from torch import Tensor

from anneuron.experiments import patching as P


@dataclass
class Scores:
    """A patch's effect over a task's pairs, for n patches."""

    per_pair: Float[Tensor, "n P"]  # LD-normalised, each by its own pair's gap
    aggregate: Float[Tensor, "n"]  # ratio of mean LDs
    std: Float[Tensor, "n"]  # over pairs, of per_pair (population: ddof 0)
    agreement: Float[Tensor, "n"]  # fraction of pairs with the aggregate's sign


@dataclass
class TaskRuns:
    """The clean and corrupted runs of every pair of a task."""

    runs: list[P.PairRuns]

    def __post_init__(self):
        lengths = {r.pair.n_pos for r in self.runs}
        if len(lengths) != 1:
            raise ValueError(f"a task's pairs must have one token length, got {sorted(lengths)}")

    @property
    def n_pairs(self) -> int:
        return len(self.runs)

    @property
    def ld_clean(self) -> Float[Tensor, "P"]:
        return torch.tensor([r.ld_clean for r in self.runs], dtype=torch.float64)

    @property
    def ld_corrupted(self) -> Float[Tensor, "P"]:
        return torch.tensor([r.ld_corrupted for r in self.runs], dtype=torch.float64)

    @property
    def gap(self) -> float:
        """Mean LD_clean − mean LD_corrupted: the denominator of every aggregate."""
        return float(self.ld_clean.mean() - self.ld_corrupted.mean())

    def scores(self, ld: Float[Tensor, "n P"]) -> Scores:
        """Per-pair and aggregate scores of n patches given each patched copy's LD."""
        ld = ld.double().cpu()
        corrupted = self.ld_corrupted
        per_pair = (ld - corrupted) / (self.ld_clean - corrupted)
        aggregate = (ld.mean(1) - corrupted.mean()) / self.gap
        return Scores(per_pair, aggregate, per_pair.std(1, correction=0), agreement(per_pair, aggregate))

    def combine(self, per_pair: Float[Tensor, "P ..."]) -> Float[Tensor, "..."]:
        """The aggregate of per-pair scores that are linear in LD (attribution, direct effects): the gap-weighted
        mean, which is the ratio of mean LDs."""
        gaps = (self.ld_clean - self.ld_corrupted).to(per_pair.dtype)
        return (per_pair * gaps.view(-1, *[1] * (per_pair.dim() - 1))).sum(0) / gaps.sum()


def agreement(per_pair: Float[Tensor, "n P"], aggregate: Float[Tensor, "n"]) -> Float[Tensor, "n"]:
    """Fraction of pairs whose score has the aggregate's sign (a zero counts as agreeing only with a zero)."""
    return (per_pair.sign() == aggregate.sign()[:, None]).double().mean(1)


class PairsModel(P.SuffixModel):
    """SuffixModel over all pairs of a task at once (module docstring): residuals [b, P, S, d_model] in, LD
    [b, P] out."""

    def __init__(self, bridge, task: TaskRuns):
        runs = task.runs
        start = min(r.pair.start for r in runs)
        super().__init__(bridge, runs[0].corrupted, start, runs[0].pair.answer, runs[0].pair.wrong)
        self.n_pairs = len(runs)
        with torch.no_grad():
            for l, cache in enumerate(self.caches):
                if start:
                    kvs = [self.attention.cache(l, r.corrupted.acts["resid_pre"][l, :start][None]).kv for r in runs]
                    cache.kv = (torch.cat([k for k, _ in kvs]), torch.cat([v for _, v in kvs]))
        bases = [P.suffix_base(r.corrupted, start) for r in runs]
        self.base = {point: torch.stack([b[point] for b in bases], dim=1) for point in bases[0]}  # [L, P, S, d]
        self.mlp_base = torch.stack([r.corrupted.acts["mlp_out"][:, start:] for r in runs], dim=1)
        directions = [P.unembed_direction(bridge, r.pair.answer, r.pair.wrong) for r in runs]
        self.direction = torch.stack([d for d, _ in directions])  # [P, d_model]
        self.bias = torch.tensor([b for _, b in directions], device=self.direction.device)
        self.columns, self.column_bias = self.answer_columns([r.pair.answer for r in runs],
                                                             [r.pair.wrong for r in runs])  # [P, 2, d], [P, 2]

    def _unpatched(self, key: str, l: int, x: Tensor) -> Tensor:
        """x holds b copies of the P pairs, pair-minor (resid [b, P, ...] flattened): the pairs' own base, tiled."""
        src = (self.mlp_base if key == "mlp" else self.base[key])[l][:, -x.shape[1]:]  # [P, n, d]
        return src.repeat(x.shape[0] // self.n_pairs, *[1] * (src.dim() - 1))

    @torch.no_grad()
    def logit_diff(self, resid: Float[Tensor, "b P S d_model"], layer: int, point: P.Point) -> Float[Tensor, "b P"]:
        b = resid.shape[0]
        final = self.ln_final(self.final_resid(resid.flatten(0, 1), layer, point)).view(b, self.n_pairs, -1)
        if self.head.softcap is None:
            return (final * self.direction).sum(-1) + self.bias
        z = self.head.capped(torch.einsum("bpd,pkd->bpk", final, self.columns) + self.column_bias)
        return z[..., 0] - z[..., 1]


def copies_per_forward(batch_size: int, n_pairs: int) -> int:
    """`patching.batch_size` counts rows of a forward; a task's copy is P rows."""
    return max(1, batch_size // n_pairs)


def pair_stack(task: TaskRuns, run: str, key: str, start: int) -> Tensor:
    """One cached activation of every pair's clean or corrupted run on the suffix: [P, L, S, ...]."""
    return torch.stack([getattr(r, run).acts[key][:, start:] for r in task.runs])


# --- the batched patching methods: LDs [n, P] ---------------------------------------------------------------------

def layer_position_lds(model: PairsModel, task: TaskRuns, component: str, *, batch_size: int
                       ) -> Float[Tensor, "L T P"]:
    """patching.layer_position_scores for every pair at once: LD with `component` at (layer, position) set to its
    clean value. Positions before the suffix are the same in both prompts: LD_corrupted there."""
    start, n_pos = model.start, task.runs[0].pair.n_pos
    s = n_pos - start
    diff = pair_stack(task, "clean", component, start) - pair_stack(task, "corrupted", component, start)  # P L S d
    lds = task.ld_corrupted.float().expand(model.n_layers, n_pos, -1).clone()
    for layer in range(model.n_layers):
        def delta(sl: slice, layer=layer) -> Tensor:
            pos = torch.arange(sl.start, sl.stop, device=diff.device)
            d = torch.zeros(len(pos), task.n_pairs, s, diff.shape[-1], dtype=diff.dtype, device=diff.device)
            d[torch.arange(len(pos), device=diff.device), :, pos] = diff[:, layer, pos].transpose(0, 1)
            return d

        lds[layer, start:] = P.patched_logit_diff(model, layer, P.COMPONENTS[component], s, delta,
                                                  batch_size=copies_per_forward(batch_size, task.n_pairs)).cpu()
    return lds


def neuron_delta(task: TaskRuns, layer: int, start: int) -> Float[Tensor, "P S d_mlp"]:
    return torch.stack([P.neuron_delta(r, layer, start) for r in task.runs])


def neuron_lds(model: PairsModel, task: TaskRuns, layer: int, neurons: Sequence[int] | Tensor | None = None, *,
               batch_size: int) -> Float[Tensor, "n P"]:
    """patching.neuron_scores for every pair at once (LDs): each neuron's hook_post set to its clean value at every
    position. A neuron whose activations are equal in every pair's two prompts is not run (LD_corrupted)."""
    d_act = neuron_delta(task, layer, model.start)  # [P, S, d_mlp]
    neurons = torch.arange(d_act.shape[-1]) if neurons is None else torch.as_tensor(neurons, dtype=torch.long)
    lds = task.ld_corrupted.float().expand(len(neurons), -1).clone()
    moved = (d_act[:, :, neurons] != 0).flatten(0, 1).any(0).cpu()
    todo = neurons[moved].to(d_act.device)
    w_out = model.w_out(layer)

    def delta(sl: slice) -> Tensor:
        idx = todo[sl]
        if model.nonlinear_write:  # the neurons themselves, run through the MLP's projection and post-norm
            d = torch.zeros(len(idx), *d_act.shape, dtype=d_act.dtype, device=d_act.device)  # [b, P, S, d_mlp]
            d[torch.arange(len(idx), device=d.device), :, :, idx] = d_act[:, :, idx].permute(2, 0, 1)
            return d
        return d_act[:, :, idx].permute(2, 0, 1)[..., None] * w_out[idx][:, None, None, :]  # [b, P, S, d]

    lds[moved] = P.patched_logit_diff(model, layer, _neuron_point(model), len(todo), delta, desc=f"neurons L{layer}",
                                      batch_size=copies_per_forward(batch_size, task.n_pairs)).cpu()
    return lds


def _neuron_point(model: PairsModel) -> P.Point:
    """Where a neuron patch enters (SuffixModel.neuron_patches): its write after the MLP, or under a post-norm the
    neurons themselves."""
    return "act" if model.nonlinear_write else "post"


def joint_lds(model: PairsModel, task: TaskRuns, layer: int, groups: Sequence[Sequence[int]], *, batch_size: int
              ) -> Float[Tensor, "n_groups P"]:
    """patching.joint_scores for every pair at once (LDs)."""
    d_act = neuron_delta(task, layer, model.start)
    w_out = model.w_out(layer)

    def delta(sl: slice) -> Tensor:
        out = []
        for g in groups[sl]:
            idx = torch.as_tensor(list(g), dtype=torch.long, device=d_act.device)
            if model.nonlinear_write:
                d = torch.zeros_like(d_act)
                d[..., idx] = d_act[..., idx]
                out.append(d)  # [P, S, d_mlp]
            else:
                out.append(d_act[:, :, idx] @ w_out[idx])  # [P, S, d_model]
        return torch.stack(out)

    return P.patched_logit_diff(model, layer, _neuron_point(model), len(groups), delta,
                                batch_size=copies_per_forward(batch_size, task.n_pairs)).cpu()


def check_engine(bridge, model: PairsModel, task: TaskRuns, layer: int, neuron: int) -> float:
    """patching.check_engine for a task: the unpatched copies and one neuron patched, each pair against a full
    hooked forward, the largest difference relative to that pair's ld_scale."""
    base = model.logit_diff(model.base["pre"][0][None], 0, "pre")[0]
    fast = neuron_lds(model, task, layer, [neuron], batch_size=task.n_pairs)[0]
    worst = 0.0
    for p, runs in enumerate(task.runs):
        pair = runs.pair
        hook = P.set_neurons_hook(runs.clean.acts["post"][layer], [neuron])
        slow = P.hooked_logit_diff(bridge, pair.corrupted, pair.answer, pair.wrong,
                                   [(P.HOOKS["post"].format(l=layer), hook)])
        err = max(abs(float(base[p]) - runs.ld_corrupted), abs(float(fast[p]) - slow)) / runs.ld_scale
        worst = max(worst, err)
    return worst
