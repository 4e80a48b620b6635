"""Pearson correlation of every neuron of one block of model A with every neuron of one block of model B, from running
sums over token batches, without ever holding the full neurons x neurons matrix (docs/science.md "Universality").

One tile = (a block of A's flat neurons) x (a block of B's flat neurons); flat neuron = layer · d_mlp + neuron. A tile
keeps three cross-product accumulators, each (na, nb) float64: A·B, A·rot(B) (A's baseline) and rot(A)·B (B's
baseline), where rot(X) is X's activations mixed by a random rotation per layer (anneuron.universality.baseline).

Numerics: every column is **shifted** by its mean over the first batch before anything is summed (Σ(x−s),
Σ(x−s)², Σ(x−s)(y−t)), each batch's sums and products are float32 (one GEMM per product), and the running sums
across batches are float64. A
Pearson correlation is unchanged by a shift, and with s near the mean the sums no longer cancel catastrophically:
cov = Σxy/n − x̄ȳ of raw activations whose mean is 10^3 times their spread loses every digit in float32
(tests/universality/test_correlation.py has a neuron where the unshifted sums give |error| > 0.1 and shifted ones
< 1e-5).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class SideResult:
    """Per neuron of one side of a tile, against the other side's block: the max correlation, the other side's
    flat neuron that attains it (the lowest one on ties), the min correlation, and the max against the rotated
    other side (the baseline)."""

    max_corr: np.ndarray  # (n,) float64
    argmax: np.ndarray  # (n,) int64, flat index in the OTHER model
    min_corr: np.ndarray  # (n,) float64
    baseline_max: np.ndarray  # (n,) float64


class _Moments:
    """Shifted running sums of columns: n, Σ(x−s), Σ(x−s)² in float64; the shift s = the first batch's mean."""

    def __init__(self, n_cols: int, device: torch.device):
        self.shift: torch.Tensor | None = None
        self.s1 = torch.zeros(n_cols, dtype=torch.float64, device=device)
        self.s2 = torch.zeros(n_cols, dtype=torch.float64, device=device)

    def centred(self, x: torch.Tensor, shifted: bool) -> torch.Tensor:
        """x (T, n) float32, shifted; its sums added."""
        if self.shift is None:
            self.shift = x.mean(0) if shifted else torch.zeros_like(x[0])
        x = x - self.shift
        # per-batch sums in float32 (of shifted values: no cancellation), accumulated in float64 like the products;
        # converting the (T, n) batch to float64 instead cost as much as a GEMM (anneuron.bench universality)
        self.s1.add_(x.sum(0))  # (float64 += float32 in place: no float64 temporary)
        self.s2.add_((x * x).sum(0))
        return x

    def cov_terms(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean of the shifted column, its standard deviation · sqrt(n))."""
        mean = self.s1 / n
        ss = (self.s2 - self.s1 * mean).clamp_min(0)  # n · variance
        return mean, ss.sqrt()


class TileCorrelation:
    """Running sums for one tile. `update(xa, xb, ra, rb)` per token batch (T rows each: A's block, B's block, and
    the same blocks of the rotated activations); `result()` reduces the (na, nb) correlations to per-neuron max,
    argmax, min and baseline max for both sides, and the tile's top-k pairs.

    `shifted=False` sums raw activations (only to show in tests why the shift is there)."""

    def __init__(self, na: int, nb: int, a_offset: int = 0, b_offset: int = 0, *, baseline: bool = True,
                 device: str | torch.device = "cpu", shifted: bool = True):
        self.na, self.nb, self.a_offset, self.b_offset = na, nb, a_offset, b_offset
        self.device = torch.device(device)
        self.shifted = shifted
        self.baseline = baseline
        z = lambda: torch.zeros(na, nb, dtype=torch.float64, device=self.device)  # noqa: E731
        self.ab = z()
        self.a_rb = z() if baseline else None
        self.ra_b = z() if baseline else None
        self.ma, self.mb = _Moments(na, self.device), _Moments(nb, self.device)
        self.mra, self.mrb = _Moments(na, self.device), _Moments(nb, self.device)
        self.n = 0

    def update(self, xa: torch.Tensor, xb: torch.Tensor, ra: torch.Tensor | None = None,
               rb: torch.Tensor | None = None) -> None:
        """xa (T, na), xb (T, nb) float32 (ra, rb likewise: the rotated blocks, with `baseline`)."""
        if xa.shape[0] != xb.shape[0]:
            raise ValueError(f"token counts differ: {xa.shape[0]} vs {xb.shape[0]}")
        if xa.shape[0] == 0:
            return
        xa, xb = self.ma.centred(xa.float(), self.shifted), self.mb.centred(xb.float(), self.shifted)
        self.ab.add_(xa.T @ xb)  # one float32 GEMM per batch, accumulated in float64 (in place)
        if self.baseline:
            ra, rb = self.mra.centred(ra.float(), self.shifted), self.mrb.centred(rb.float(), self.shifted)
            self.a_rb.add_(xa.T @ rb)
            self.ra_b.add_(ra.T @ xb)
        self.n += xa.shape[0]

    def _corr(self, cross: torch.Tensor, ma: _Moments, mb: _Moments) -> torch.Tensor:
        """Pearson ρ (na, nb) from the shifted sums; 0 where either neuron is constant over the tokens."""
        mean_a, sa = ma.cov_terms(self.n)
        mean_b, sb = mb.cov_terms(self.n)
        # in place: two (na, nb) float64 temporaries at a time (plan.MATRICES_PER_TILE counts them)
        num = torch.outer(mean_a, mean_b).mul_(-self.n).add_(cross)
        den = torch.outer(sa, sb)
        constant = den == 0
        num.div_(den.clamp_min_(1e-300)).masked_fill_(constant, 0.0)
        return num

    def correlation(self) -> torch.Tensor:
        """The tile's (na, nb) correlation matrix (tests and the twin scatter; the stage keeps only reductions)."""
        if self.n < 2:
            raise ValueError(f"a correlation needs at least 2 tokens, got {self.n}")
        return self._corr(self.ab, self.ma, self.mb)

    def result(self, top_k: int) -> tuple[SideResult, SideResult, tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """(A side, B side, (a_flat, b_flat, corr) of the tile's top_k pairs by ρ, ties by (a, b))."""
        rho = self.correlation()
        amax, aarg = rho.max(1)  # torch returns the first index of the max on ties
        bmax, barg = rho.max(0)
        if self.baseline:
            base_a = self._corr(self.a_rb, self.ma, self.mrb).max(1).values
            base_b = self._corr(self.ra_b, self.mra, self.mb).max(0).values
        else:
            base_a = torch.full((self.na,), float("nan"), dtype=torch.float64)
            base_b = torch.full((self.nb,), float("nan"), dtype=torch.float64)
        np_ = lambda t: t.cpu().numpy()  # noqa: E731
        a = SideResult(np_(amax), np_(aarg) + self.b_offset, np_(rho.min(1).values), np_(base_a))
        b = SideResult(np_(bmax), np_(barg) + self.a_offset, np_(rho.min(0).values), np_(base_b))
        flat = np_(rho).ravel()
        k = min(top_k, flat.size)
        # deterministic top-k: value descending, then flat index ascending (a, then b)
        cand = np.argpartition(-flat, k - 1)[:k] if k < flat.size else np.arange(flat.size)
        kth = flat[cand].min()
        cand = np.flatnonzero(flat >= kth)  # every tie of the k-th value, so the order below decides
        order = cand[np.lexsort((cand, -flat[cand]))][:k]
        pairs = (order // self.nb + self.a_offset, order % self.nb + self.b_offset, flat[order])
        return a, b, pairs
