"""The stage's input and its running means: the first `max_tokens` positions of the token shards, in shard then
chunk order (a row cut short is still exact: the model is causal), in right-padded batches; and per-layer means
whose standard errors treat each row as one cluster (positions of one row are not independent).

Which positions count: every real (not padded) position but the first of its row, which is always BOS
(anneuron.data.chunk_rows): its residual is an outlier that would dominate every mean (attention sinks).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import torch
from jaxtyping import Float, Int

from anneuron.data import Row
from anneuron.dataset.record import iter_shard


def take_rows(shards: Iterable[str | Path], max_tokens: int) -> Iterator[tuple[int, Row]]:
    """(chunk, row) of the shards in order until `max_tokens` tokens (BOS included); the last row cut to fit."""
    left = max_tokens
    for path in shards:
        for chunk, row in iter_shard(path):
            if left <= 0:
                return
            n = min(len(row.tokens), left)
            yield chunk, Row(row.tokens[:n], row.docs[:n], row.next_after if n == len(row.tokens) else None)
            left -= n


@dataclass(frozen=True)
class Batch:
    chunks: list[int]
    tokens: Int[torch.Tensor, "B T"]  # right-padded with each row's first token
    lengths: Int[torch.Tensor, "B"]

    def counted(self, first: int = 1) -> torch.Tensor:
        """(B, T) bool: the real positions t >= first (docs: position 0 is BOS)."""
        t = torch.arange(self.tokens.shape[1], device=self.tokens.device)
        return (t[None, :] >= first) & (t[None, :] < self.lengths[:, None].to(t.device))


def batches(rows: Iterable[tuple[int, Row]], batch_size: int, device: str | torch.device = "cpu") -> Iterator[Batch]:
    """Rows in batches of `batch_size`, right-padded without an attention mask: attention is causal and every row
    has positions 0, 1, ... so the real positions never see the padding (as the dataset pass runs them)."""
    buf: list[tuple[int, Row]] = []

    def make() -> Batch:
        width = max(len(r.tokens) for _, r in buf)
        toks = torch.full((len(buf), width), buf[0][1].tokens[0], dtype=torch.long)
        for b, (_, r) in enumerate(buf):
            toks[b, :len(r.tokens)] = torch.as_tensor(r.tokens)
        lengths = torch.tensor([len(r.tokens) for _, r in buf])
        return Batch([c for c, _ in buf], toks.to(device), lengths.to(device))

    for item in rows:
        buf.append(item)
        if len(buf) == batch_size:
            yield make()
            buf = []
    if buf:
        yield make()


@dataclass
class ClusteredMean:
    """Running per-layer means of a per-position quantity, and their standard errors with rows as clusters.

    Each row r contributes its sum S_r and count n_r per layer; the mean is ΣS/Σn (a ratio estimator) and its
    variance (R/(R−1))·Σ(S_r − m·n_r)²/(Σn)², expanded into running sums (float64) so memory does not grow with
    the corpus: Σ(S−mn)² = ΣS² − 2mΣSn + m²Σn². With one position per row it is the usual s/√n."""

    n_layers: int
    s: np.ndarray = field(init=False)
    ss: np.ndarray = field(init=False)
    sn: np.ndarray = field(init=False)
    n: np.ndarray = field(init=False)
    nn: np.ndarray = field(init=False)
    rows: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        for name in ("s", "ss", "sn", "n", "nn", "rows"):
            setattr(self, name, np.zeros(self.n_layers))

    def add(self, layer: int, values: Float[torch.Tensor, "B T"], mask: torch.Tensor) -> None:
        """Add one layer's values at the positions where mask (B, T) is True."""
        sums = torch.where(mask, values.double(), 0.0).sum(-1).cpu().numpy()
        counts = mask.sum(-1).double().cpu().numpy()
        keep = counts > 0
        sums, counts = sums[keep], counts[keep]
        self.s[layer] += sums.sum()
        self.ss[layer] += (sums ** 2).sum()
        self.sn[layer] += (sums * counts).sum()
        self.n[layer] += counts.sum()
        self.nn[layer] += (counts ** 2).sum()
        self.rows[layer] += keep.sum()

    def mean(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.s / self.n

    def se(self) -> np.ndarray:
        m = self.mean()
        with np.errstate(invalid="ignore", divide="ignore"):
            spread = np.maximum(self.ss - 2 * m * self.sn + m ** 2 * self.nn, 0.0)
            return np.sqrt(self.rows / (self.rows - 1) * spread) / self.n
