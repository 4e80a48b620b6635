"""Per-layer statistics over the corpus (docs/science.md "Stages of inference"), one row per block `layer` (the
residual after that block):

- the logit lens of that residual in both conventions (`recomputed`: the final norm with the residual's own scale,
  i.e. what the unembedding would make of the stream if the model stopped there, the paper's reading; `post`: the
  final residual's scale, TransformerLens' apply_ln_to_stack): mean KL(final ‖ layer) and mean entropy, in nats;
- the mean ‖attn_out‖ and ‖mlp_out‖: what the attention and the MLP each add to the residual (after the
  post-norm in Gemma 2/3 and OLMo-2; in a parallel block, GPT-NeoX and Phi, both read the block's input);
- the mean attention mass a query puts on the five tokens before it (mean over heads), from the model's own
  pattern, so a sliding window (Gemma, Qwen3, Mistral) is respected: keys outside it carry weight 0.

One forward per batch of the Hugging Face model with eager attention (its modules return their patterns), hooked
on each layer's output, attention and the last module of each sublayer (anneuron.architecture.writers, so every
family of its table works). Norms and attention are read at every counted position (anneuron.stages.stream); the
full-vocabulary projection, L·d·V multiply-adds per position (5x a SmolLM2 forward), only at a seeded Bernoulli
sample of them, `lens_tokens` expected out of `max_tokens`, chosen per row from (seed, chunk) so it does not depend
on batching; the lens means come with row-clustered standard errors. Everything in float32; memory is bounded by
the batch (the B·H·T·T patterns of one layer at a time, the sampled residuals, `LENS_CHUNK` x V logits), not by the
corpus.

Both conventions from ONE product per layer: the final norm is norm(x) = β + g ⊙ c(x)/s(x), with c centring
(LayerNorm) or not (RMSNorm), s(x) = √(mean c(x)² + ε) and β = norm(0) (LayerNorm's bias, RMSNorm's 0). So with
z = W_U·(norm(x) − β): recomputed logits = z + W_U·β + b_U, post logits = (s(x)/s(x_final))·z + W_U·β + b_U.
The norm is the model's own module (Gemma's (1 + w) gain included), and Gemma 2's final soft-cap c·tanh(ℓ/c) is
applied to both (anneuron.models.Head, as the prompt experiments' logit lens). The residual after a block is already
in the model's coordinates (Gemma's √d embedding scale is inside the first one), so nothing else is rescaled.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import torch
from jaxtyping import Float
from torch import Tensor
from tqdm.auto import tqdm

from anneuron import architecture as A
from anneuron import models as M
from anneuron.contracts import STAGES_LAYERS
from anneuron.stages.stream import Batch, ClusteredMean, batches, take_rows

PREVIOUS = 5  # the attention statistic's window: the PREVIOUS tokens before each query (the paper's Figure 1)
LENS_CHUNK = 256  # sampled positions projected on the vocabulary at once (memory: a few LENS_CHUNK x V tensors)
LENS = ("kl_to_final", "entropy", "kl_to_final_post", "entropy_post")
OTHER = ("attn_out_norm", "mlp_out_norm", "prev5_attention")


def lens_sample(chunk: int, length: int, fraction: float, seed: int) -> np.ndarray:
    """(length,) bool: the positions of row `chunk` whose logit lens is computed, each with probability
    `fraction`, never position 0 (BOS); a prefix of the row gets the prefix of its sample."""
    pick = np.random.default_rng([seed, chunk]).random(length) < fraction
    pick[0] = False
    return pick


def previous_mass(pattern: Float[Tensor, "B H T T"], window: int = PREVIOUS) -> Float[Tensor, "B T"]:
    """Attention of each query t on keys t−window … t−1 (fewer near the start), mean over heads: the sum of the
    pattern's first `window` subdiagonals."""
    mass = torch.zeros(pattern.shape[:3], dtype=torch.float32, device=pattern.device)
    for k in range(1, min(window, pattern.shape[-1] - 1) + 1):
        mass[..., k:] += torch.diagonal(pattern, offset=-k, dim1=-2, dim2=-1).float()
    return mass.mean(1)


@torch.no_grad()
def logit_lens(resid: Float[Tensor, "L n d"], head: M.Head) -> dict[str, Float[Tensor, "L n"]]:
    """KL(final ‖ layer) and entropy of every layer's lens distribution, both conventions, at n positions; the
    last layer's residual is the final norm's input (its recomputed lens is the model's own output).

    Few passes over the n x V logits ℓ of a layer (the cost): with p the final distribution, q = softmax(ℓ) and
    lse = log Σ exp ℓ, KL(p ‖ q) = Σ p log p − p·ℓ + lse and H(q) = lse − q·ℓ. Since ℓ = s·W_U(norm(x) − β) + W_U·β
    + b_U, p·ℓ = s·(W_Uᵀp)·(norm(x) − β) + p·(W_U·β + b_U): a d-dimensional dot, W_Uᵀp made once per position. So
    a layer and convention costs forming ℓ, its log-sum-exp, q and one dot (float32: KL to ~1e-5 nats). Under a
    final soft-cap (Gemma 2) ℓ is not linear in norm(x): p·ℓ is then one more pass over the n x V logits."""
    resid = resid.float()
    beta = head.norm(torch.zeros(resid.shape[-1], device=resid.device))
    w, offset = head.unembed.weight.float(), head.unembed(beta)  # (V, d), (V,) = W_U·β + b_U
    ratio = head.scale(resid) / head.scale(resid[-1])  # (L, n): s(x) / s(x_final)
    linear = head.softcap is None
    out = {k: torch.empty(resid.shape[:2]) for k in LENS}
    for lo in range(0, resid.shape[1], LENS_CHUNK):
        sl = slice(lo, lo + LENS_CHUNK)
        final = head.capped((head.norm(resid[-1, sl]) - beta) @ w.T + offset)
        lse_final = torch.logsumexp(final, -1)
        p = (final - lse_final[:, None]).exp_()
        p_log_p = torch.linalg.vecdot(p, final) - lse_final  # Σ p log p
        if linear:
            w_p, p_offset = p @ w, p @ offset  # W_Uᵀp (n, d), p·(W_U·β + b_U) (n,)
            del p
        del final
        for layer in range(resid.shape[0]):
            y = head.norm(resid[layer, sl]) - beta
            z = y @ w.T
            w_p_y = torch.linalg.vecdot(w_p, y) if linear else None
            for suffix, s in (("", None), ("_post", ratio[layer, sl, None])):
                logits = head.capped((z if s is None else z * s) + offset)
                lse = torch.logsumexp(logits, -1)
                q = (logits - lse[:, None]).exp_()
                if linear:
                    p_logits = (w_p_y if s is None else w_p_y * s[:, 0]) + p_offset
                else:
                    p_logits = torch.linalg.vecdot(p, logits)
                out[f"kl_to_final{suffix}"][layer, sl] = (p_log_p - p_logits + lse).cpu()
                out[f"entropy{suffix}"][layer, sl] = (lse - torch.linalg.vecdot(q, logits)).cpu()
    return out


def _first(out: Tensor | tuple) -> Tensor:
    """A module's main output: the tensor, or the first element of the tuple it returns (attention modules)."""
    return out[0] if isinstance(out, tuple) else out


class LayerStats:
    """Hooks a Hugging Face model (eager attention, float32) and accumulates the per-layer statistics batch by
    batch (`add`), then gives the table (`table`)."""

    def __init__(self, model, *, lens_fraction: float, seed: int):
        self.model = model.eval()
        fam = A.family_of(model, "stages")
        self.layers = A.layers(model, fam)
        self.attn = [A.attention(layer, fam) for layer in self.layers]
        self.writers = [A.writers(layer, fam) for layer in self.layers]
        self.head = M.float32_head(model)
        self.device = next(model.parameters()).device
        self.n_layers = len(self.layers)
        self.lens_fraction, self.seed = lens_fraction, seed
        self.stats = {k: ClusteredMean(self.n_layers) for k in (*LENS, *OTHER)}

    @contextlib.contextmanager
    def _hooks(self, mask: Tensor, mask_prev: Tensor, sample: Tensor, resid: list) -> Iterator[None]:
        def on_layer(layer: int, out: Tensor) -> None:
            resid[layer] = _first(out)[sample].float()

        def on_pattern(layer: int, out: tuple) -> None:
            pattern = out[1]
            if pattern is None:
                raise A.ArchitectureError("stages: the attention module returned no pattern (load the model with "
                                          "attn_implementation='eager')")
            self.stats["prev5_attention"].add(layer, previous_mass(pattern), mask_prev)

        def on_write(key: str, layer: int, out: Tensor | tuple) -> None:
            self.stats[key].add(layer, _first(out).float().norm(dim=-1), mask)

        handles = []
        for layer in range(self.n_layers):
            attn_writer, mlp_writer = self.writers[layer]
            handles += [
                self.layers[layer].register_forward_hook(lambda m, i, o, k=layer: on_layer(k, o)),
                self.attn[layer].register_forward_hook(lambda m, i, o, k=layer: on_pattern(k, o)),
                attn_writer.register_forward_hook(lambda m, i, o, k=layer: on_write("attn_out_norm", k, o)),
                mlp_writer.register_forward_hook(lambda m, i, o, k=layer: on_write("mlp_out_norm", k, o)),
            ]
        try:
            yield
        finally:
            for h in handles:
                h.remove()

    @torch.no_grad()
    def add(self, batch: Batch) -> None:
        mask, mask_prev = batch.counted(1), batch.counted(PREVIOUS)
        pick = np.zeros(tuple(batch.tokens.shape), bool)
        for b, (chunk, n) in enumerate(zip(batch.chunks, batch.lengths.tolist())):
            pick[b, :n] = lens_sample(chunk, n, self.lens_fraction, self.seed)
        sample = torch.as_tensor(pick, device=self.device)
        resid: list = [None] * self.n_layers
        with self._hooks(mask, mask_prev, sample, resid):
            self.model.base_model(input_ids=batch.tokens, use_cache=False)
        if any(r is None for r in resid):
            raise RuntimeError("stages: a layer's hook did not fire")
        if not sample.any():
            return
        lens = logit_lens(torch.stack(resid), self.head)
        for key, values in lens.items():
            full = torch.zeros((self.n_layers, *sample.shape))
            full[:, sample.cpu()] = values
            for layer in range(self.n_layers):
                self.stats[key].add(layer, full[layer], sample.cpu())

    def table(self) -> pa.Table:
        L = self.n_layers
        cols: dict[str, object] = {"layer": np.arange(L), "relative_depth": (np.arange(L) + 1) / L}
        for key in LENS:
            cols[key], cols[f"{key}_se"] = self.stats[key].mean(), self.stats[key].se()
        for key in OTHER:
            cols[key] = self.stats[key].mean()
        cols["positions"] = self.stats["mlp_out_norm"].n
        cols["lens_positions"] = self.stats["kl_to_final"].n
        return pa.Table.from_pydict({f.name: pa.array(np.asarray(cols[f.name]), f.type) for f in STAGES_LAYERS},
                                    schema=STAGES_LAYERS)


def layer_stats(model, shards: list[str | Path], *, max_tokens: int, lens_tokens: int, batch_size: int, seed: int,
                progress: bool = True) -> pa.Table:
    """The `stages_layers` job: the first `max_tokens` positions of the shards through the model (eager
    attention, float32), the logit lens at `lens_tokens` of them in expectation. Returns layers.parquet's table."""
    stats = LayerStats(model, lens_fraction=min(1.0, lens_tokens / max_tokens), seed=seed)
    bar = tqdm(total=max_tokens, desc="stages: layer statistics", unit="tok", unit_scale=True, mininterval=2,
               disable=not progress)
    for batch in batches(take_rows(shards, max_tokens), batch_size, stats.device):
        stats.add(batch)
        bar.update(int(batch.lengths.sum()))
    bar.close()
    return stats.table()
