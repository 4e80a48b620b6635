"""What universal neurons are like (the paper's property comparison): per neuron, over the same tokens as the
correlations, its activation frequency (share of positions > 0), mean, skew and kurtosis; from its weights, ‖w_in‖,
‖w_out‖ and cos(w_in, w_out). docs/science.md "Universality".

Moments come from shifted float64 power sums (shift = the first batch's mean, as in the correlations), one pass
over the tokens; memory: one batch's activations of one layer at a time plus 5 float64 vectors per layer.
Weights are the raw Hugging Face ones (no LayerNorm folding): w_in = the neuron's input row (GPT-2's c_fc column;
for a gated MLP the gate's row, which decides whether it fires), w_out = its row of the output projection.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pyarrow as pa
import torch
from tqdm.auto import tqdm

from anneuron import architecture as A
from anneuron.contracts import UNIVERSALITY_PROPERTIES
from anneuron.dataset.engines import load_engine
from anneuron.io import write_parquet
from anneuron.stage_config import UniversalityPropertiesConfig
from anneuron.universality.tiles import batches, layer_activations, token_rows


class Moments:
    """Running shifted power sums of (T, n) columns: frequency of x > 0, mean, skew, kurtosis (3 for a Gaussian)."""

    def __init__(self, n: int):
        self.shift: np.ndarray | None = None
        self.s = np.zeros((4, n))  # Σ d, Σ d², Σ d³, Σ d⁴ with d = x − shift
        self.positive = np.zeros(n)
        self.n = 0

    def update(self, x: np.ndarray) -> None:
        x = x.astype(np.float64)
        if self.shift is None:
            self.shift = x.mean(0)
        d = x - self.shift
        p = d.copy()
        for k in range(4):
            self.s[k] += p.sum(0)
            p *= d
        self.positive += (x > 0).sum(0)
        self.n += len(x)

    def result(self) -> dict[str, np.ndarray]:
        m1, m2, m3, m4 = self.s / self.n
        var = np.maximum(m2 - m1**2, 0)
        c3 = m3 - 3 * m1 * m2 + 2 * m1**3
        c4 = m4 - 4 * m1 * m3 + 6 * m1**2 * m2 - 3 * m1**4
        with np.errstate(invalid="ignore", divide="ignore"):
            skew, kurt = c3 / var**1.5, c4 / var**2
        return dict(act_frequency=self.positive / self.n, act_mean=m1 + self.shift,
                    act_skew=np.where(var > 0, skew, np.nan), act_kurt=np.where(var > 0, kurt, np.nan))


def weight_properties(model) -> dict[str, np.ndarray]:
    """‖w_in‖, ‖w_out‖, cos(w_in, w_out) per flat neuron, (n_layers · d_mlp,) each."""
    fam = A.family_of(model, "universality")
    w_in_norm, w_out_norm, cos = [], [], []
    with torch.no_grad():
        for layer in A.layers(model, fam):
            w_out = A.neurons_to_model(A.mlp_out(layer, fam)).float()  # (d_mlp, d_model)
            mlp = layer.mlp
            # Llama's gate_proj is an nn.Linear, (d_mlp, d_model); GPT-2's c_fc a Conv1D, (d_model, d_mlp)
            w_in = (mlp.gate_proj.weight if fam.name == "llama" else mlp.c_fc.weight.T).float()
            ni, no = w_in.norm(dim=1), w_out.norm(dim=1)
            w_in_norm.append(ni)
            w_out_norm.append(no)
            cos.append((w_in * w_out).sum(1) / (ni * no).clamp_min(1e-30))
    return {k: torch.cat(v).numpy().astype(np.float64)
            for k, v in (("w_in_norm", w_in_norm), ("w_out_norm", w_out_norm), ("in_out_cos", cos))}


def neuron_properties(model: str, shards: Sequence[str | Path], cfg: UniversalityPropertiesConfig,
                      progress: bool = True) -> pa.Table:
    """The `universality_properties` table of one model."""
    engine = load_engine(model, device=cfg.device, dtype=cfg.dtype, engine="hf")  # the family's exact attention
    moments = [Moments(engine.d_mlp) for _ in range(engine.n_layers)]
    bar = tqdm(total=cfg.max_tokens, desc="properties", unit="tok", unit_scale=True, mininterval=2,
               disable=not progress)
    for toks, mask in batches(token_rows(shards, cfg.max_tokens), cfg.batch_size):
        acts = layer_activations(engine, toks, range(engine.n_layers))
        for layer, m in enumerate(moments):
            m.update(acts[layer][mask.to(acts[layer].device)].cpu().numpy())
        bar.update(int(mask.sum()))
    bar.close()
    res = [m.result() for m in moments]
    n = engine.n_layers * engine.d_mlp
    flat = np.arange(n)
    cols = dict(layer=(flat // engine.d_mlp).astype(np.int32), neuron=(flat % engine.d_mlp).astype(np.int32),
                **{k: np.concatenate([r[k] for r in res]) for k in res[0]}, **weight_properties(engine.model))
    return pa.Table.from_pydict(cols, schema=UNIVERSALITY_PROPERTIES)


def properties_job(model: str, shards: Sequence[str | Path], cfg: UniversalityPropertiesConfig,
                   out: str | Path) -> None:
    write_parquet(out, neuron_properties(model, shards, cfg))
