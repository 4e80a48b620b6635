"""The weights pass (docs/science.md): how every MLP neuron's output weights line up with every token, in ONE streaming
pass over blocks of neurons that keeps only reductions (never the neurons x vocab matrix, unless asked).

Congruence C[n, t] = w_out[n] . b[t], with b the token basis: `we` = W_E[t] (the post's), `wu` = W_U[:, t],
`cosine` = cos(w_out[n], W_U[:, t]). From one pass it keeps, per token, the top-k neurons (-> d_tok); per neuron,
the top-k and bottom-k tokens (-> d_neu); and per neuron the population moments of its W_U-raw congruence row and of
its cosine row (Gurnee's classes), whatever the basis.

Per chunk of c neurons (rows of the stacked W_out), with V tokens:
    X = W_c @ W_U        (c, V)  raw W_U congruence; the cosine row is X * s / |w| with s[t] = 1 / |W_U[:, t]|
    Z = W_c @ W_E^T      (c, V)  the basis congruence (`we`); Z = X for `wu`; Z = X * s for `cosine`, whose rows
                                 are normalised before the product, so the cosine row costs no second product
Why it is fast (the products are the whole cost; the reductions must stay far below them):
- every reduction runs along the contiguous token axis, in fp32, on sub-blocks of a few rows, as one
  single-threaded stream per core (short multi-threaded regions stall on a shared CPU);
- moments are power sums (p = 2..4) of rows shifted by their mean, which a small product gives exactly (float64,
  so the first power sum needs no pass either): fp32 sums lose nothing to cancellation. On CPU they run on tiles of
  8192 tokens, so that a tile's shifted rows and their powers stay in cache between the few passes over them;
- per-neuron top-k: maxima of 128-token blocks, then an exact top-k over the k best blocks only;
- per-token top-k: only the entries above the token's current k-th value are merged, chunks without any are skipped.
"""

from __future__ import annotations

import contextlib
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import pyarrow as pa
import torch

from anneuron.contracts import NEURON_STATS, WEIGHTS_TOKENS

log = logging.getLogger(__name__)

BASES = ("we", "wu", "cosine")
MOMENTS = ("mean", "var", "skew", "kurt")
_BLOCK = 128  # tokens per block for the per-neuron top-k prefilter
_TILE = 8192  # tokens per power-sum tile on CPU: the 2 scratch tiles of a 16-row sub-block (2 MB) stay in cache


@dataclass
class Weights:
    """The processed weights the pass needs. `w_out` holds one (d_mlp, d_model) view per layer: the stacked W_out is
    never materialised (TransformerBridge's `W_out` property stacks a fresh copy on every access)."""

    w_out: Sequence[torch.Tensor]  # n_layers x (d_mlp, d_model)
    W_E: torch.Tensor  # (d_vocab, d_model)
    W_U: torch.Tensor  # (d_model, d_vocab)
    w_in: Sequence[torch.Tensor] | None = None  # n_layers x (d_model, d_mlp): the input side, for a figure only

    @property
    def n_layers(self) -> int:
        return len(self.w_out)

    @property
    def d_mlp(self) -> int:
        return self.w_out[0].shape[0]

    @property
    def d_vocab(self) -> int:
        return self.W_U.shape[1]

    @property
    def n_neurons(self) -> int:
        return self.n_layers * self.d_mlp

    def rows(self, start: int, stop: int) -> torch.Tensor:
        """Rows [start, stop) of the stacked W_out, (stop - start, d_model): a view inside one layer, a small copy
        across a layer boundary."""
        parts = []
        while start < stop:
            layer, i = divmod(start, self.d_mlp)
            j = min(self.d_mlp, i + stop - start)
            parts.append(self.w_out[layer][i:j])
            start += j - i
        return parts[0] if len(parts) == 1 else torch.cat(parts)


def weights_of(bridge) -> Weights:
    """The processed weights of a loaded bridge (anneuron.models.load_model), detached views: W_out is the MLP
    output projection per neuron (GPT-2's c_proj rows, centred; the other families' raw), W_U has the final norm's
    gain folded in (GPT-2: also centred; RMSNorm families: diag(g)·W_U only, RMSNorm licenses no centring). w_in is
    the MLP's input projection per neuron with the block's norm gain folded in (TransformerLens' W_in: for a gated
    MLP the up projection, the gate being W_gate).

    Where the MLP's write passes a post-norm (Gemma 2/3, OLMo-2: residual += g ⊙ m / rms(m), m = Σ_n act_n w_n),
    the write splits exactly into one term per neuron, act_n · (g ⊙ w_n) / rms(m), all sharing the positive factor
    1 / rms(m) that the whole MLP output sets at each token: W_out here is diag(g)·W_out (a new tensor per layer),
    the direction of each neuron's term. Congruence then ranks tokens as that term does, but cannot say how large
    the term is (that scale is data's), nor what changing one neuron does (it also rescales every other neuron's
    term through rms(m)): the experiments measure that (docs/science.md)."""
    from anneuron import architecture as A

    fam = A.family_of(bridge, "the weights pass")
    w_out = [b.mlp.W_out.detach() for b in bridge.blocks]
    if fam.mlp_post_norm is not None:
        posts = [A.post_norms(layer, fam)[1] for layer in A.layers(bridge, fam)]
        w_out = [w * A.gain(post, fam).detach().to(w.dtype) for w, post in zip(w_out, posts)]
    return Weights(w_out=w_out, W_E=bridge.W_E.detach(), W_U=bridge.W_U.detach(),
                   w_in=[b.mlp.W_in.detach() for b in bridge.blocks])


@dataclass
class Congruence:
    """What the pass keeps. N = n_layers * d_mlp neurons (flat id = layer * d_mlp + neuron), V tokens.

    Top lists are sorted best first (bottom lists most negative first); moments are (mean, var, skew, kurt),
    population, kurtosis not excess."""

    basis: str
    n_layers: int
    d_mlp: int
    token_top_ids: np.ndarray  # (V, k_tok) int64 flat neuron ids
    token_top_values: np.ndarray  # (V, k_tok) float32
    neuron_top_ids: np.ndarray  # (N, k) int64 token ids
    neuron_top_values: np.ndarray  # (N, k) float32
    neuron_bottom_ids: np.ndarray  # (N, k) int64
    neuron_bottom_values: np.ndarray  # (N, k) float32
    wu_moments: np.ndarray  # (N, 4) float64
    cos_moments: np.ndarray  # (N, 4) float64

    @property
    def d_tok(self) -> np.ndarray:
        """(V,) top-1 minus top-2 congruence over neurons, per token."""
        v = self.token_top_values.astype(np.float64)
        return v[:, 0] - v[:, 1]

    @property
    def d_neu(self) -> np.ndarray:
        """(N,) top-1 minus top-2 congruence over tokens, per neuron."""
        v = self.neuron_top_values.astype(np.float64)
        return v[:, 0] - v[:, 1]


# --- helpers -------------------------------------------------------------------------------------------------------


def moments_from_sums(sums: np.ndarray, shift: np.ndarray, n: int) -> np.ndarray:
    """(mean, var, skew, kurt) per row from the power sums S_p = sum_t (x_t - shift)^p, p = 1..4, of n values.

    sums: (R, 4) float64; shift: (R,) float64 (close to the row mean, so nothing cancels). Population moments,
    kurtosis not excess: scipy's skew(bias=True) and kurtosis(fisher=False, bias=True). Rows with zero variance get
    NaN skew and kurtosis."""
    e1, e2, e3, e4 = (sums[:, p] / n for p in range(4))
    var = e2 - e1**2
    m3 = e3 - 3 * e1 * e2 + 2 * e1**3
    m4 = e4 - 4 * e1 * e3 + 6 * e1**2 * e2 - 3 * e1**4
    with np.errstate(divide="ignore", invalid="ignore"):
        ok = var > 0
        skew = np.where(ok, m3 / np.where(ok, var, 1) ** 1.5, np.nan)
        kurt = np.where(ok, m4 / np.where(ok, var, 1) ** 2, np.nan)
    return np.stack([shift + e1, np.maximum(var, 0), skew, kurt], axis=1)


def _inverse_norms(x: torch.Tensor, dim: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """1 / |x| along `dim` (fp32 unless asked), 0 where the norm is 0 (a zero vector has cosine 0 with everything)."""
    norm = torch.linalg.vector_norm(x.to(dtype), dim=dim)
    return torch.where(norm > 0, 1 / norm.clamp_min(torch.finfo(dtype).tiny), 0)


def auto_chunk(n_neurons: int, d_vocab: int, n_buffers: int, device: str, itemsize: int = 4) -> int:
    """Neurons per chunk from free memory: big chunks keep the products efficient, the chunk buffers
    (n_buffers x chunk x vocab) stay within ~1/4 of what is free (at most 1 GB on CPU)."""
    if str(device).startswith("cuda"):
        free, _ = torch.cuda.mem_get_info(torch.device(device))
        budget = 0.3 * free
    else:
        import psutil

        budget = min(0.25 * psutil.virtual_memory().available, 2**30)
    c = int(budget // (d_vocab * itemsize * n_buffers))
    c = max(64, min(4096 if str(device).startswith("cuda") else 2048, c // 64 * 64))
    return min(c, n_neurons)


def resolve_chunk(chunk_neurons: int | str, weights: Weights, basis: str, device: str, dtype: torch.dtype) -> int:
    if chunk_neurons == "auto":
        n_buffers = 2 if basis in ("we", "cosine") else 1
        itemsize = torch.finfo(dtype).bits // 8
        return auto_chunk(weights.n_neurons, weights.d_vocab, n_buffers, device, itemsize)
    return max(1, min(int(chunk_neurons), weights.n_neurons))


def resolve_congruence_dtype(dtype: str, device: str) -> torch.dtype:
    """The products' dtype (`congruence.dtype`; float32 by default): `auto` (an opt-in) = bf16 on CUDA, float32 on
    CPU. The reductions are float32 whatever it is."""
    if dtype == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    from anneuron.models import resolve_dtype

    return resolve_dtype(dtype)


def flops(weights: Weights, basis: str) -> float:
    """Multiply-adds x 2 of every product the pass performs (one with W_U, one more with W_E for `we`)."""
    d_model = weights.W_U.shape[0]
    products = 2 if basis == "we" else 1
    return 2.0 * products * weights.n_neurons * d_model * weights.d_vocab


# --- the running per-token top-k ------------------------------------------------------------------------------------


class _TokenTopK:
    """Per token, the k largest values over all neurons seen so far (and their flat ids).

    Until k neurons are seen every chunk is merged densely; after that only the entries above the token's current
    k-th value (the candidates) are merged, by one sort, and a chunk without candidates costs one column max."""

    def __init__(self, d_vocab: int, k: int, device: torch.device, dtype: torch.dtype):
        self.k = k
        self.values = torch.full((d_vocab, k), -math.inf, device=device, dtype=dtype)
        self.ids = torch.full((d_vocab, k), -1, device=device, dtype=torch.int64)
        self.seen = 0
        self._cand: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []

    @property
    def dense(self) -> bool:
        return self.seen < self.k

    @property
    def threshold(self) -> torch.Tensor:
        return self.values[:, -1]

    def merge_dense(self, z: torch.Tensor, start: int) -> None:
        """z: (c, V) values of neurons start..start+c-1, merged by blocks of tokens, each transposed first (top-k
        along a strided axis is slow; a transposed copy of the whole chunk would cost as much memory as the chunk)."""
        for j in range(0, z.shape[1], _TILE):
            zt = z[:, j:j + _TILE].t().to(self.values.dtype).contiguous()  # (w, c)
            top, pos = zt.topk(min(self.k, zt.shape[1]), dim=1)
            vals = torch.cat([self.values[j:j + _TILE], top], dim=1)
            ids = torch.cat([self.ids[j:j + _TILE], start + pos], dim=1)
            best, pos = vals.topk(self.k, dim=1)
            self.values[j:j + _TILE], self.ids[j:j + _TILE] = best, ids.gather(1, pos)
        self.seen += z.shape[0]

    def collect(self, z: torch.Tensor, start: int, thr: torch.Tensor) -> None:
        """Record the entries of z (r, V) (neurons start..start+r-1) above the threshold of their token."""
        hit = torch.nonzero(z.amax(0) > thr).squeeze(1)
        if hit.numel():
            sub = z[:, hit]
            rows, cols = torch.nonzero(sub > thr[hit], as_tuple=True)
            self._cand.append((hit[cols], start + rows, sub[rows, cols].to(self.values.dtype)))

    def merge_candidates(self, n_rows: int) -> None:
        """Merge what `collect` recorded over the last chunk of n_rows neurons: per affected token, the k best of
        its current top-k and its candidates (one sort by token, then value descending)."""
        self.seen += n_rows
        if not self._cand:
            return
        tok, nid, val = (torch.cat(x) for x in zip(*self._cand))
        self._cand = []
        mask = torch.zeros(self.values.shape[0], dtype=torch.bool, device=tok.device)
        mask[tok] = True
        aff = torch.nonzero(mask).squeeze(1)
        k = self.k
        tok = torch.cat([aff.repeat_interleave(k), tok])
        nid = torch.cat([self.ids[aff].reshape(-1), nid])
        val = torch.cat([self.values[aff].reshape(-1), val])
        order = torch.argsort(_token_value_key(tok, val))
        tok, nid, val = tok[order], nid[order], val[order]
        first = torch.searchsorted(tok, aff)
        counts = torch.diff(first, append=torch.tensor([tok.numel()], device=tok.device))
        rank = torch.arange(tok.numel(), device=tok.device) - first.repeat_interleave(counts)
        keep = rank < k
        self.values[tok[keep], rank[keep]] = val[keep]
        self.ids[tok[keep], rank[keep]] = nid[keep]


def _token_value_key(tok: torch.Tensor, val: torch.Tensor) -> torch.Tensor:
    """int64 sort keys ordering by token ascending, then value descending (one sort instead of two)."""
    if val.dtype != torch.float32:  # float64 reference mode: two stable sorts
        order = torch.argsort(val, descending=True, stable=True)
        key = torch.empty_like(order)
        key[order[torch.argsort(tok[order], stable=True)]] = torch.arange(order.numel(), device=order.device)
        return key
    bits = val.contiguous().view(torch.int32)
    ordered = bits ^ ((bits >> 31) & 0x7FFFFFFF)  # int32 with the floats' order
    # ~ordered: int32 in descending order; + 2^31 maps it onto [0, 2^32) keeping that order (masking the sign bit
    # instead would put negative values before positive ones)
    return (tok << 32) | ((~ordered).to(torch.int64) + 2**31)


def _row_topk(z: torch.Tensor, block_ext: torch.Tensor | None, k: int, largest: bool
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact top-k (largest) or bottom-k per row of z (c, V), values sorted, token ids.

    block_ext: (c, V // _BLOCK) maxima (or minima) of the full token blocks. The k best values lie in the k best
    blocks or in the tail after the last full block, so only those k * _BLOCK + tail entries are sorted."""
    if block_ext is None:
        return z.topk(k, dim=1, largest=largest)
    c, v = z.shape
    nb = block_ext.shape[1]
    v0 = nb * _BLOCK
    bidx = block_ext.topk(k, dim=1, largest=largest).indices  # (c, k)
    blocks = z[:, :v0].unflatten(1, (nb, _BLOCK))
    cand = torch.gather(blocks, 1, bidx[:, :, None].expand(-1, -1, _BLOCK)).flatten(1)  # (c, k * _BLOCK)
    cand = torch.cat([cand, z[:, v0:]], dim=1)
    val, pos = cand.topk(k, dim=1, largest=largest)
    in_block = pos < k * _BLOCK
    block_tok = bidx.gather(1, (pos // _BLOCK).clamp_max(k - 1)) * _BLOCK + pos % _BLOCK
    return val, torch.where(in_block, block_tok, v0 + pos - k * _BLOCK)


@contextlib.contextmanager
def _matrix_writer(matrix_dir: str | Path | None, weights: Weights) -> Iterator:
    """Per-layer fp16 .npy files L{l}.npy (d_mlp, V) of the basis congruence, written as the pass goes and
    swapped in atomically at the end; yields write(start, z) or None."""
    if matrix_dir is None:
        yield None
        return
    from anneuron.io import atomic_dir

    with atomic_dir(matrix_dir) as tmp:
        maps = [np.lib.format.open_memmap(Path(tmp) / f"L{l}.npy", mode="w+", dtype=np.float16,
                                          shape=(weights.d_mlp, weights.d_vocab)) for l in range(weights.n_layers)]

        def write(start: int, z: torch.Tensor) -> None:
            zz = z.to("cpu", torch.float16).numpy()
            done = 0
            while done < zz.shape[0]:
                layer, i = divmod(start + done, weights.d_mlp)
                j = min(weights.d_mlp, i + zz.shape[0] - done)
                maps[layer][i:j] = zz[done:done + j - i]
                done += j - i

        yield write
        for m in maps:
            m.flush()
        maps.clear()  # close the memmaps before the folder is renamed


# --- the pass --------------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _row_workers(device: torch.device) -> Iterator:
    """Run the row reductions of a chunk as independent single-threaded streams, one per core, instead of short
    two-thread OpenMP regions: on a shared CPU, a region waits for its slowest (descheduled) thread every few
    hundred microseconds, which made the reductions cost as much as the products. Yields map(fn, ranges).

    torch's OpenMP threads are set per OS thread at its first parallel op, from the global count: the workers are
    started (and each run) while the global count is 1, and the products get the caller's count back."""
    n_threads = torch.get_num_threads()
    if device.type != "cpu" or n_threads == 1:
        yield lambda fn, ranges: [fn(*r) for r in ranges], 1
        return
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(n_threads, thread_name_prefix="congruence") as pool:
        def run(fn, ranges):
            torch.set_num_threads(1)
            try:
                return list(pool.map(lambda r: fn(*r), ranges))
            finally:
                torch.set_num_threads(n_threads)

        yield run, n_threads


class _Chunk:
    """The reductions of one chunk of c neurons (rows start..start+c-1), given its products x (raw W_U) and z
    (basis). Rows are processed in sub-blocks of `sub` rows, the power sums in token tiles of the scratch buffers'
    width; `rows(i0, i1, scratch)` handles one range of rows and may run in a worker thread (disjoint outputs)."""

    def __init__(self, run: "_Pass", start: int, x: torch.Tensor, z: torch.Tensor, mu_x: torch.Tensor,
                 mu_y: torch.Tensor, thr: torch.Tensor | None):
        self.run, self.start, self.x, self.z, self.mu_x, self.mu_y, self.thr = run, start, x, z, mu_x, mu_y, thr

    def rows(self, i0: int, i1: int, scratch: tuple[torch.Tensor, ...]) -> None:
        p, x, z = self.run, self.x, self.z
        A, A2 = scratch  # (2 sub, tile) each
        tile = A.shape[1]
        for i in range(i0, i1, p.sub):
            r = min(p.sub, i1 - i)
            mu_x, mu_y = self.mu_x[i:i + r, None], self.mu_y[i:i + r, None]
            if p.basis == "cosine":
                torch.mul(x[i:i + r], p.s, out=z[i:i + r])
            parts = []
            for j in range(0, p.v, tile):
                w = min(tile, p.v - j)
                xs, a1, a2 = x[i:i + r, j:j + w], A[:2 * r, :w], A2[:2 * r, :w]
                torch.sub(xs, mu_x, out=a1[:r])  # shifted wu rows
                if p.basis == "cosine":
                    torch.sub(z[i:i + r, j:j + w], mu_y, out=a1[r:])  # shifted cosine rows (x |w|)
                else:
                    torch.addcmul(-mu_y, xs, p.s[j:j + w], out=a1[r:])
                torch.mul(a1, a1, out=a2)
                s2 = a2.sum(1)
                s4 = torch.linalg.vector_norm(a2, dim=1).square()
                parts.append(torch.stack([s2, a1.mul_(a2).sum(1), s4], dim=1))
            ps = torch.stack(parts).sum(0).double().cpu()  # (2r, 3): powers 2..4 (power 1: see _Pass.products)
            g = self.start + i
            p.sums[g:g + r, :, 1:] = ps.view(2, r, 3).transpose(0, 1)
            zs = z[i:i + r]
            if p.bmax is not None:
                blocks = zs[:, :p.nb * _BLOCK].unflatten(1, (p.nb, _BLOCK))
                torch.amax(blocks, dim=2, out=p.bmax[i:i + r])
                torch.amin(blocks, dim=2, out=p.bmin[i:i + r])
            if self.thr is not None:
                p.tok.collect(zs, g, self.thr)
        # per-neuron top-k and bottom-k of this range
        zr = z[i0:i1]
        g0, g1 = self.start + i0, self.start + i1
        tv, ti = _row_topk(zr, None if p.bmax is None else p.bmax[i0:i1], p.k_neu, largest=True)
        bv, bi = _row_topk(zr, None if p.bmin is None else p.bmin[i0:i1], p.k_neu, largest=False)
        p.top_v[g0:g1], p.top_i[g0:g1] = tv.float().cpu(), ti.cpu()
        p.bot_v[g0:g1], p.bot_i[g0:g1] = bv.float().cpu(), bi.cpu()


class _Pass:
    """State of one pass: basis vectors, chunk buffers and the running reductions (see congruence_pass)."""

    def __init__(self, weights: Weights, basis: str, top_k: int, chunk: int, sub: int, dev: torch.device,
                 dtype: torch.dtype, n_workers: int):
        self.weights, self.basis, self.chunk, self.sub, self.dev, self.dtype = weights, basis, chunk, sub, dev, dtype
        self.rdtype = torch.float64 if dtype == torch.float64 else torch.float32
        n, v = weights.n_neurons, weights.d_vocab
        self.n, self.v = n, v
        self.k_neu, k_tok = min(top_k, v), min(top_k, n)

        self.U = weights.W_U.to(dev, dtype)  # (d, V); a transposed view stays a view
        self.ET = weights.W_E.to(dev, dtype).t() if basis == "we" else None  # (d, V)
        U32 = self.U.to(self.rdtype)
        self.s = _inverse_norms(U32, 0, self.rdtype)  # (V,) 1 / |W_U[:, t]|
        self.u_mean = U32.mean(1)  # (d,) mean over tokens: rows are shifted to their mean before the power sums
        self.us_mean = (U32 @ self.s) / v  # (d,) mean over tokens of W_U[:, t] * s[t]
        del U32
        # the same means in float64 (token slices: no float64 copy of W_U): the rows' exact means, so the residual
        # mean of the shifted rows needs no pass over them
        s64 = self.s.double()
        self.u_mean64 = torch.zeros(self.U.shape[0], dtype=torch.float64, device=dev)
        self.us_mean64 = torch.zeros_like(self.u_mean64)
        for j in range(0, v, 4096):
            u = self.U[:, j:j + 4096].double()
            self.u_mean64 += u.sum(1)
            self.us_mean64 += u @ s64[j:j + 4096]
        self.u_mean64 /= v
        self.us_mean64 /= v

        self.X = torch.empty(chunk, v, device=dev, dtype=dtype)
        if basis == "wu":
            self.Z = self.X
        else:
            self.Z = torch.empty(chunk, v, device=dev, dtype=dtype if basis == "we" else self.rdtype)
        self.nb = v // _BLOCK
        use_blocks = self.k_neu * _BLOCK * 2 <= v
        self.bmax = torch.empty(chunk, self.nb, device=dev, dtype=self.Z.dtype) if use_blocks else None
        self.bmin = torch.empty_like(self.bmax) if use_blocks else None
        tile = v if dev.type == "cuda" else min(v, _TILE)
        self.scratch = [tuple(torch.empty(2 * sub, tile, device=dev, dtype=self.rdtype) for _ in range(2))
                        for _ in range(n_workers)]

        self.tok = _TokenTopK(v, k_tok, dev, self.rdtype)
        self.top_v = torch.empty(n, self.k_neu, dtype=torch.float32)
        self.top_i = torch.empty(n, self.k_neu, dtype=torch.int64)
        self.bot_v, self.bot_i = torch.empty_like(self.top_v), torch.empty_like(self.top_i)
        self.sums = torch.empty(n, 2, 4, dtype=torch.float64)  # (wu, cos) x power 1..4 of the shifted rows
        self.shift = torch.empty(n, 2, dtype=torch.float64)  # the shifts (row means) of the computed rows
        self.scale = torch.empty(n, 2, dtype=torch.float64)  # computed rows -> wu row, cosine row

    def products(self, start: int, c: int) -> tuple[torch.Tensor, _Chunk]:
        """The chunk's products and per-row constants; returns the rows as multiplied and the chunk to reduce."""
        W = self.weights.rows(start, start + c).to(self.dev, self.rdtype)
        w_inv = _inverse_norms(W, 1, self.rdtype)  # (c,)
        # rows scaled by a before the products: unit rows for `cosine` (a zero row stays as it is)
        a = torch.where(w_inv > 0, w_inv, 1) if self.basis == "cosine" else torch.ones_like(w_inv)
        Wa = (W * a[:, None]).to(self.dtype)
        x, z = self.X[:c], self.Z[:c]
        torch.mm(Wa, self.U, out=x)
        if self.basis == "we":
            torch.mm(Wa, self.ET, out=z)
        Wr = Wa.to(self.rdtype)
        mu_x, mu_y = Wr @ self.u_mean, Wr @ self.us_mean  # (c,) exact row means of x and of x * s
        sl = slice(start, start + c)
        self.shift[sl, 0], self.shift[sl, 1] = mu_x.double().cpu(), mu_y.double().cpu()
        W64 = Wa.double()
        self.sums[sl, 0, 0] = self.v * (W64 @ self.u_mean64 - mu_x.double()).cpu()  # sum of the shifted wu row
        self.sums[sl, 1, 0] = self.v * (W64 @ self.us_mean64 - mu_y.double()).cpu()  # ... of the shifted cos row
        self.scale[sl, 0] = (1 / a).double().cpu()  # x = a (w . u)
        self.scale[sl, 1] = torch.where(w_inv > 0, w_inv / a, 0).double().cpu()  # cos = x s / (a |w|)
        thr = None if self.tok.dense else self.tok.threshold.clone()
        return Wa, _Chunk(self, start, x, z, mu_x, mu_y, thr)

    def ranges(self, c: int, n_workers: int) -> list[tuple[int, int, tuple]]:
        """Split c rows into one contiguous range per worker, on sub-block boundaries."""
        n_sub = -(-c // self.sub)
        cuts = [min(c, round(j * n_sub / n_workers) * self.sub) for j in range(n_workers + 1)]
        return [(cuts[j], cuts[j + 1], self.scratch[j]) for j in range(n_workers) if cuts[j + 1] > cuts[j]]

    def finish_chunk(self, ch: _Chunk, c: int) -> None:
        if ch.thr is None:
            self.tok.merge_dense(ch.z, ch.start)
        else:
            self.tok.merge_candidates(c)

    def result(self) -> Congruence:
        sums, shift, scale = self.sums.numpy(), self.shift.numpy(), self.scale.numpy()
        moments = []
        for j in range(2):
            m = moments_from_sums(sums[:, j], shift[:, j], self.v)
            m[:, 0] *= scale[:, j]
            m[:, 1] *= scale[:, j] ** 2
            moments.append(m)
        w = self.weights
        return Congruence(
            basis=self.basis, n_layers=w.n_layers, d_mlp=w.d_mlp,
            token_top_ids=self.tok.ids.cpu().numpy(), token_top_values=self.tok.values.float().cpu().numpy(),
            neuron_top_ids=self.top_i.numpy(), neuron_top_values=self.top_v.numpy(),
            neuron_bottom_ids=self.bot_i.numpy(), neuron_bottom_values=self.bot_v.numpy(),
            wu_moments=moments[0], cos_moments=moments[1],
        )


@torch.no_grad()
def congruence_pass(
    weights: Weights,
    basis: str,
    top_k: int,
    *,
    chunk_neurons: int | str,  # `congruence.*` values come from the config: the schema holds their defaults
    device: str,
    dtype: torch.dtype,
    matrix_dir: str | Path | None = None,
    sub_rows: int | None = None,
    progress: bool = True,
    on_chunk: Callable[[torch.Tensor, int], None] | None = None,
) -> Congruence:
    """Stream every neuron once against the token basis and keep the reductions (module docstring).

    dtype is the products' dtype (float32; bfloat16 for speed on GPUs); reductions run in fp32 (float64 if dtype
    is float64, for exact reference checks). matrix_dir, if given, receives the basis congruence per layer in fp16.
    sub_rows: rows per reduction block (default 16 on CPU, 512 on CUDA).
    on_chunk(rows, start): called after each chunk with its (c, d_model) weights as multiplied (the benchmark times
    raw products of the same shape there, interleaved with the pass)."""
    if basis not in BASES:
        raise ValueError(f"basis {basis!r}: must be one of {BASES}")
    from tqdm.auto import tqdm

    dev = torch.device(device)
    chunk = resolve_chunk(chunk_neurons, weights, basis, str(device), dtype)
    sub = sub_rows or (min(chunk, 512) if dev.type == "cuda" else 16)
    log.info("congruence: %d neurons x %d tokens, basis %s, chunks of %d, %s on %s",
             weights.n_neurons, weights.d_vocab, basis, chunk, dtype, dev)
    bar = tqdm(total=weights.n_neurons, unit="neuron", unit_scale=True, desc="congruence", disable=not progress,
               mininterval=2)
    with _row_workers(dev) as (run_rows, n_workers), _matrix_writer(matrix_dir, weights) as write_matrix:
        p = _Pass(weights, basis, top_k, chunk, sub, dev, dtype, n_workers)
        for start in range(0, p.n, chunk):
            c = min(chunk, p.n - start)
            rows, ch = p.products(start, c)
            run_rows(ch.rows, p.ranges(c, n_workers))
            p.finish_chunk(ch, c)
            if write_matrix is not None:
                write_matrix(start, ch.z)
            bar.update(c)
            if on_chunk is not None:
                on_chunk(rows, start)
    bar.close()
    return p.result()


# --- single rows and columns, for the "vs all" figures -------------------------------------------------------------


@torch.no_grad()
def congruence_row(weights: Weights, flat_id: int, basis: str) -> np.ndarray:
    """(V,) float32: C[n, :] for one neuron, computed directly (one small product)."""
    w = weights.rows(flat_id, flat_id + 1)[0].float()
    U = weights.W_U.float()
    if basis == "we":
        return (weights.W_E.float() @ w).cpu().numpy()
    row = w @ U
    if basis == "cosine":
        row = row * _inverse_norms(U, dim=0) * _inverse_norms(w[None], dim=1)
    return row.cpu().numpy()


@torch.no_grad()
def congruence_column(weights: Weights, token_id: int, basis: str) -> np.ndarray:
    """(N,) float32: C[:, t] for one token over all neurons (flat ids), computed directly layer by layer."""
    if basis == "we":
        b = weights.W_E[token_id].float()
    else:
        b = weights.W_U[:, token_id].float()
        if basis == "cosine":
            b = b * _inverse_norms(b[None], dim=1)
    cols = []
    for w in weights.w_out:
        col = w.float() @ b
        if basis == "cosine":
            col = col * _inverse_norms(w, dim=1)
        cols.append(col)
    return torch.cat(cols).cpu().numpy()


def moments_dense(rows: np.ndarray) -> np.ndarray:
    """(R, 4) (mean, var, skew, kurt) of each row of a dense (R, V) array, float64, same definitions as the pass."""
    rows = np.asarray(rows, dtype=np.float64)
    mean = rows.mean(axis=1)
    c = rows - mean[:, None]
    sums = np.stack([c.sum(1), (c**2).sum(1), (c**3).sum(1), (c**4).sum(1)], axis=1)
    return moments_from_sums(sums, mean, rows.shape[1])


# --- tables (docs/contracts.md) ----------------------------------------------------------------------------------


def token_strings(tokenizer, n: int) -> list[str]:
    """Each token id decoded on its own (" an", not "Ġan"); bytes that are not valid UTF-8 on their own show as �."""
    return tokenizer.batch_decode([[i] for i in range(n)])


def _list_column(values: np.ndarray, type_: pa.DataType) -> pa.Array:
    """(R, k) numpy -> list<type> column of R lists of k."""
    r, k = values.shape
    offsets = pa.array(np.arange(0, (r + 1) * k, k, dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, pa.array(values.reshape(-1), type_))


def tokens_table(res: Congruence, token_strs: Sequence[str]) -> pa.Table:
    """tokens.parquet: one row per token: token_id, token_str, top_neurons (flat ids), top_values, d_tok."""
    v = res.token_top_ids.shape[0]
    return pa.table({
        "token_id": pa.array(np.arange(v), pa.int64()),
        "token_str": pa.array(list(token_strs), pa.string()),
        "top_neurons": _list_column(res.token_top_ids, pa.int64()),
        "top_values": _list_column(res.token_top_values, pa.float32()),
        "d_tok": pa.array(res.d_tok, pa.float64()),
    }, schema=WEIGHTS_TOKENS)


def neurons_table(res: Congruence, entropy: dict[str, np.ndarray]) -> pa.Table:
    """The neuron columns of neurons.parquet (all but neuron_class, which anneuron.weights.neuron_classes adds), in
    flat-id order. Bottom lists are most negative first. `entropy`: anneuron.weights.entropy.entropy_columns."""
    n = res.neuron_top_ids.shape[0]
    flat = np.arange(n)
    cols = {
        "layer": pa.array(flat // res.d_mlp, pa.int64()),
        "neuron": pa.array(flat % res.d_mlp, pa.int64()),
        "top_token_ids": _list_column(res.neuron_top_ids, pa.int64()),
        "top_values": _list_column(res.neuron_top_values, pa.float32()),
        "bottom_token_ids": _list_column(res.neuron_bottom_ids, pa.int64()),
        "bottom_values": _list_column(res.neuron_bottom_values, pa.float32()),
        "d_neu": pa.array(res.d_neu, pa.float64()),
    }
    for prefix, m in (("wu", res.wu_moments), ("cos", res.cos_moments)):
        for j, name in enumerate(MOMENTS):
            cols[f"{prefix}_{name}"] = pa.array(m[:, j], pa.float64())
    for name in ("w_out_norm", "null_share"):
        cols[name] = pa.array(entropy[name], pa.float64())
    return pa.table(cols, schema=NEURON_STATS)
