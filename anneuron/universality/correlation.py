"""Pearson correlation of every neuron of one block of model A with every neuron of one block of model B, from running
sums over token chunks, without ever holding the full neurons x neurons matrix (docs/science.md "Universality").

One tile = (a block of A's flat neurons) x (a block of B's flat neurons); flat neuron = layer · d_mlp + neuron. A tile
keeps three cross-product sums, each (na, nb): A·B, A·rot(B) (A's baseline) and rot(A)·B (B's baseline), where
rot(X) is X's activations mixed by a random rotation per layer (anneuron.universality.baseline).

Numerics: every column is **shifted** by its mean over the first chunk before anything is summed (Σ(x−s),
Σ(x−s)², Σ(x−s)(y−t)). A Pearson correlation is unchanged by a shift, and with s near the mean the sums no longer
cancel catastrophically: cov = Σxy/n − x̄ȳ of raw activations whose mean is 10^3 times their spread loses every digit
in float32 (tests/universality/test_correlation.py has a neuron where the unshifted sums give |error| > 0.1 and
shifted ones < 1e-5). Each chunk's products go into a float32 accumulator by one in-place GEMM (addmm: no product
temporary, no extra pass), folded into the float64 sums every `fold_every` chunks; the column sums are float32 per
chunk (Σ(x−s)² from the chunk squared in place once its products are done), float64 across chunks. So a float32
sum never spans more than `fold_every` chunks (one rounding per chunk on top of the GEMM's own), whatever the token
count, while the float64 fold costs 1 / fold_every of a pass over the sums per chunk.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from jaxtyping import Float

# Chunk products summed in float32 before a fold into float64: 8 chunks of plan.CHUNK_TOKENS (4,096) tokens; folding
# every chunk (a float64 read and write of each sum) cost 5-15 % of the chunk's GEMMs on the bench's CPU
FOLD_EVERY = 8
_FOLD_ELEMENTS = 2**18  # elements cast to float64 at a time by the fold (2 MB)


@dataclass
class SideResult:
    """Per neuron of one side of a tile, against the other side's block: the max correlation, the other side's
    flat neuron that attains it (the lowest one on ties), the min correlation, and the max against the rotated
    other side (the baseline)."""

    max_corr: np.ndarray  # (n,) float64
    argmax: np.ndarray  # (n,) int64, flat index in the OTHER model
    min_corr: np.ndarray  # (n,) float64
    baseline_max: np.ndarray  # (n,) float64


def _column_sums(x: Float[torch.Tensor, "T n"]) -> Float[torch.Tensor, " n"]:
    """xᵀ·1 as one GEMV: twice the rate of x.sum(0) on the bench's CPU (anneuron.bench universality)."""
    return torch.mv(x.T, x.new_ones(x.shape[0]))


class _Moments:
    """Shifted running sums of columns: Σ(x−s), Σ(x−s)² in float64; the shift s = the first chunk's mean."""

    def __init__(self, n_cols: int, device: torch.device):
        self.shift: torch.Tensor | None = None
        self.s1 = torch.zeros(n_cols, dtype=torch.float64, device=device)
        self.s2 = torch.zeros(n_cols, dtype=torch.float64, device=device)

    def centre_(self, x: Float[torch.Tensor, "T n"], shifted: bool) -> Float[torch.Tensor, "T n"]:
        """x float32, shifted IN PLACE (the chunk is the tile's to consume: no copy); Σ(x−s) added."""
        if self.shift is None:
            self.shift = x.mean(0) if shifted else torch.zeros_like(x[0])
        # per-chunk sums in float32 (of shifted values: no cancellation), accumulated in float64
        self.s1.add_(_column_sums(x.sub_(self.shift)))
        return x

    def add_squares_(self, x: Float[torch.Tensor, "T n"]) -> None:
        """Σ(x−s)² added, from the centred chunk x, which is squared IN PLACE (call it once the products are
        done: no chunk-sized temporary)."""
        self.s2.add_(_column_sums(x.square_()))

    def cov_terms(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean of the shifted column, its standard deviation · sqrt(n))."""
        mean = self.s1 / n
        ss = (self.s2 - self.s1 * mean).clamp_min(0)  # n · variance
        return mean, ss.sqrt()


class TileCorrelation:
    """Running sums for one tile. `update(xa, xb, ra, rb)` per token chunk (T rows each: A's block, B's block, and
    the same blocks of the rotated activations; consumed: centred in place); `result()` turns the sums into
    correlations in place and reduces them to per-neuron max, argmax, min and baseline max for both sides, and the
    tile's top-k pairs. Memory: 3 float64 and 3 float32 (na, nb) matrices (plan.BYTES_PER_PAIR), nothing more of
    that size in `update`, and in `result` (the float32 ones freed) only a bool mask.

    `shifted=False` sums raw activations (only to show in tests why the shift is there)."""

    def __init__(self, na: int, nb: int, a_offset: int = 0, b_offset: int = 0, *, baseline: bool = True,
                 device: str | torch.device = "cpu", shifted: bool = True, fold_every: int = FOLD_EVERY):
        self.na, self.nb, self.a_offset, self.b_offset = na, nb, a_offset, b_offset
        self.device = torch.device(device)
        self.shifted, self.baseline, self.fold_every = shifted, baseline, fold_every
        k = 3 if baseline else 1  # A·B, then A·rot(B) and rot(A)·B
        self._sums = [torch.zeros(na, nb, dtype=torch.float64, device=self.device) for _ in range(k)]
        self._acc: list[torch.Tensor] | None = [torch.zeros(na, nb, device=self.device) for _ in range(k)]
        self._pending = 0  # chunks in the float32 accumulators
        self.ma, self.mb = _Moments(na, self.device), _Moments(nb, self.device)
        self.mra, self.mrb = _Moments(na, self.device), _Moments(nb, self.device)
        self.n = 0

    def update(self, xa: Float[torch.Tensor, "T na"], xb: Float[torch.Tensor, "T nb"],
               ra: Float[torch.Tensor, "T na"] | None = None, rb: Float[torch.Tensor, "T nb"] | None = None) -> None:
        """One chunk (float32; ra, rb: the rotated blocks, with `baseline`). The tensors are centred in place."""
        if self._acc is None:
            raise RuntimeError("TileCorrelation.update after result()")
        if xa.shape[0] != xb.shape[0]:
            raise ValueError(f"token counts differ: {xa.shape[0]} vs {xb.shape[0]}")
        if xa.shape[0] == 0:
            return
        xa, xb = self.ma.centre_(xa.float(), self.shifted), self.mb.centre_(xb.float(), self.shifted)
        self._acc[0].addmm_(xa.T, xb)
        if self.baseline:
            ra, rb = self.mra.centre_(ra.float(), self.shifted), self.mrb.centre_(rb.float(), self.shifted)
            self._acc[1].addmm_(xa.T, rb)
            self._acc[2].addmm_(ra.T, xb)
            self.mra.add_squares_(ra)
            self.mrb.add_squares_(rb)
        self.ma.add_squares_(xa)
        self.mb.add_squares_(xb)
        self.n += xa.shape[0]
        self._pending += 1
        if self._pending == self.fold_every:
            self._fold()

    def _fold(self) -> None:
        """float64 sums += the float32 accumulators, which restart at 0; a block of rows at a time, as float64 +=
        float32 casts its whole operand to a float64 temporary."""
        step = max(1, _FOLD_ELEMENTS // self.nb)
        for total, acc in zip(self._sums, self._acc):
            for t, a in zip(total.split(step), acc.split(step)):
                t.add_(a)
            acc.zero_()
        self._pending = 0

    def _corr_(self, cross: torch.Tensor, ma: _Moments, mb: _Moments) -> Float[torch.Tensor, "na nb"]:
        """Pearson ρ from the shifted sums, IN PLACE of the cross sum `cross`; 0 where either neuron is constant."""
        mean_a, sa = ma.cov_terms(self.n)
        mean_b, sb = mb.cov_terms(self.n)
        # Σ(x−s)(y−t) − n·x̄·ȳ (shifted means) = n · covariance; a rank-1 GEMM in place (addr_ makes the outer product)
        cross.addmm_(mean_a[:, None], mean_b[None, :], alpha=-self.n)
        cross.div_(sa.clamp_min(1e-300)[:, None]).div_(sb.clamp_min(1e-300)[None, :])
        cross[sa == 0] = 0.0
        cross[:, sb == 0] = 0.0
        return cross

    def _check_n(self) -> None:
        if self.n < 2:
            raise ValueError(f"a correlation needs at least 2 tokens, got {self.n}")

    def correlation(self) -> Float[torch.Tensor, "na nb"]:
        """The tile's correlation matrix, a copy (tests; the stage keeps only the reductions of `result`)."""
        self._check_n()
        self._fold()
        return self._corr_(self._sums[0].clone(), self.ma, self.mb)

    def result(self, top_k: int) -> tuple[SideResult, SideResult, tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """(A side, B side, (a_flat, b_flat, corr) of the tile's top_k pairs by ρ, ties by (a, b)). Ends the tile:
        the sums become the correlations in place."""
        self._check_n()
        self._fold()
        self._acc = None  # the float32 accumulators are freed before the reductions
        rho = self._corr_(self._sums[0], self.ma, self.mb)
        amax, aarg = rho.max(1)  # torch returns the first index of the max on ties
        bmax, barg = rho.max(0)
        if self.baseline:
            base_a = self._corr_(self._sums[1], self.ma, self.mrb).max(1).values
            base_b = self._corr_(self._sums[2], self.mra, self.mb).max(0).values
        else:
            base_a = torch.full((self.na,), float("nan"), dtype=torch.float64)
            base_b = torch.full((self.nb,), float("nan"), dtype=torch.float64)
        np_ = lambda t: t.cpu().numpy()  # noqa: E731
        a = SideResult(np_(amax), np_(aarg) + self.b_offset, np_(rho.min(1).values), np_(base_a))
        b = SideResult(np_(bmax), np_(barg) + self.a_offset, np_(rho.min(0).values), np_(base_b))
        a_idx, b_idx, corr = top_pairs(rho, top_k)
        return a, b, (a_idx + self.a_offset, b_idx + self.b_offset, corr)


def top_pairs(rho: Float[torch.Tensor, "na nb"], k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row, column, ρ) of the k largest entries, value descending, then (row, column) ascending; with no (na, nb)
    temporary but a bool mask: the k-th largest value is found among each row's k largest."""
    k = min(k, rho.numel())
    kth = rho.topk(min(k, rho.shape[1]), dim=1).values.flatten().topk(k).values[-1]
    idx = torch.nonzero(rho >= kth)  # every tie of the k-th value, in (row, column) order
    vals = rho[idx[:, 0], idx[:, 1]].cpu().numpy()
    idx = idx.cpu().numpy()
    order = np.lexsort((np.arange(vals.size), -vals))[:k]  # stable: ties keep (row, column) order
    return idx[order, 0], idx[order, 1], vals[order]
