"""Layer deletion and adjacent-layer swap (Lad et al. 2024, Figures 1 and 3; docs/science.md "Stages of
inference"): for every block ℓ the model with block ℓ skipped (`delete`), and with blocks ℓ and ℓ+1 run in the
order ℓ+1, ℓ (`swap`, ℓ < L−1); over the first `intervention_tokens` positions of the corpus, the mean
KL(intact ‖ intervened) of the next-token distributions and the share of positions whose top-1 is unchanged.

Batched, suffix-only: one intact forward per batch caches the residual entering every block (L·B·T·d floats:
the memory bound, with `LENS_CHUNK` x V logits), then each intervention at ℓ runs the model with its decoder-layer
list replaced by [replay of the residual entering ℓ] + the intervened suffix, so the prefix, which the intact model
shares, is not recomputed: one intervention costs at most one forward (the blocks after ℓ), whatever the number of
positions. Replacing the layer list (not hooking) works for every family of anneuron.architecture, parallel and
post-norm blocks alike (a block is one opaque call). Every block of the suffix is called with the very arguments it
got in the intact forward (`Moved`: attention mask, rotary embeddings, positions), not with those of the list index
it now sits at, since the model picks a layer's mask and rotary base by index (Gemma 2/3, Qwen3: sliding-window and
global layers): a moved block keeps its own window and rotary base. tests/stages/test_interventions.py checks it
against a hand-built hooked full forward (an identity hook on the deleted block; the swapped pair run by hand).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import torch
from jaxtyping import Float
from torch import Tensor, nn
from tqdm.auto import tqdm

from anneuron import architecture as A
from anneuron import models as M
from anneuron.contracts import STAGES_INTERVENTIONS
from anneuron.stages.layer_stats import LENS_CHUNK
from anneuron.stages.stream import Batch, ClusteredMean, batches, take_rows


def plan(n_layers: int) -> list[tuple[str, int, list[int]]]:
    """(intervention, layer ℓ, the blocks run after the shared prefix 0..ℓ−1, in order)."""
    out = [("delete", layer, list(range(layer + 1, n_layers))) for layer in range(n_layers)]
    out += [("swap", layer, [layer + 1, layer, *range(layer + 2, n_layers)]) for layer in range(n_layers - 1)]
    return out


Call = tuple[tuple, dict]  # a decoder layer's positional arguments after the residual, and its keyword arguments


class Moved(nn.Module):
    """A decoder layer called with the arguments it got in the intact forward (`call`), whatever list index it now
    runs at; only the residual is the one it is given."""

    def __init__(self, block: nn.Module, call: Call):
        super().__init__()
        self.block, self.call = block, call

    def forward(self, hidden_states: Tensor, *args, **kwargs) -> Tensor:
        rest, kw = self.call
        return self.block(hidden_states, *rest, **kw)


class Replay(nn.Module):
    """Stands in for the decoder layers of the shared prefix: returns the residual they produced, whatever it is
    given (a decoder layer's call returns its output residual)."""

    def __init__(self, resid: Tensor):
        super().__init__()
        self.resid = resid

    def forward(self, hidden_states: Tensor, *args, **kwargs) -> Tensor:
        return self.resid


@contextlib.contextmanager
def layer_list(model, fam: A.Family, new: list[nn.Module]) -> Iterator[None]:
    """The model's decoder-layer list holds `new` inside the block, its own layers again after."""
    container = A.module(A.hf_model(model), fam.layers)
    saved = dict(container._modules)
    container._modules.clear()
    container._modules.update({str(i): m for i, m in enumerate(new)})
    try:
        yield
    finally:
        container._modules.clear()
        container._modules.update(saved)


def compare(head: M.Head, intact: Float[Tensor, "n d"], other: Float[Tensor, "n d"]
            ) -> tuple[Float[Tensor, "n"], Float[Tensor, "n"]]:
    """KL(intact ‖ other) and top-1 agreement (1.0 / 0.0) per position, from final-normed residuals (the model's
    own logits: unembedding, then Gemma 2's soft-cap), in chunks."""
    kl, agree = torch.empty(len(intact)), torch.empty(len(intact))
    for lo in range(0, len(intact), LENS_CHUNK):
        sl = slice(lo, lo + LENS_CHUNK)
        p = torch.log_softmax(head.capped(head.unembed(intact[sl].float())), -1)
        q = torch.log_softmax(head.capped(head.unembed(other[sl].float())), -1)
        kl[sl] = (p.exp() * (p - q)).sum(-1).cpu()
        agree[sl] = (p.argmax(-1) == q.argmax(-1)).float().cpu()
    return kl, agree


class Interventions:
    """Accumulates every intervention's KL and top-1 agreement over batches (`add`), then the table (`table`)."""

    def __init__(self, model):
        self.model = model.eval()
        self.fam = A.family_of(model, "stages")
        self.layers = A.layers(model, self.fam)
        self.head = M.float32_head(model)
        self.plan = plan(len(self.layers))
        self.kl = ClusteredMean(len(self.plan))
        self.agree = ClusteredMean(len(self.plan))

    def _final(self, tokens: Tensor) -> Tensor:
        """The final norm's output (B, T, d): the model's own forward without the unembedding."""
        return self.model.base_model(input_ids=tokens, use_cache=False).last_hidden_state

    @torch.no_grad()
    def add(self, batch: Batch) -> None:
        entering: list = [None] * len(self.layers)
        calls: list[Call | None] = [None] * len(self.layers)

        def grab(layer: int, args: tuple, kwargs: dict) -> None:
            entering[layer] = args[0] if args else kwargs["hidden_states"]
            calls[layer] = (args[1:], {k: v for k, v in kwargs.items() if k != "hidden_states"})

        handles = [layer.register_forward_pre_hook(lambda m, a, kw, k=k: grab(k, a, kw), with_kwargs=True)
                   for k, layer in enumerate(self.layers)]
        try:
            intact = self._final(batch.tokens)
        finally:
            for h in handles:
                h.remove()
        mask = batch.counted(1)
        for i, (_, layer, suffix) in enumerate(self.plan):
            # no replay without a prefix: the list stays at most L long (Llama runs only its first L entries)
            prefix = [Replay(entering[layer])] if layer else []
            with layer_list(self.model, self.fam, [*prefix, *(Moved(self.layers[j], calls[j]) for j in suffix)]):
                final = self._final(batch.tokens)
            kl, agree = compare(self.head, intact[mask], final[mask])
            for stat, values in ((self.kl, kl), (self.agree, agree)):
                full = torch.zeros(mask.shape)
                full[mask.cpu()] = values
                stat.add(i, full, mask.cpu())

    def table(self) -> pa.Table:
        L = len(self.layers)
        kinds = [kind for kind, _, _ in self.plan]
        layer = np.array([ell for _, ell, _ in self.plan])
        cols = {"intervention": kinds, "layer": layer, "relative_depth": (layer + 1) / L,
                "kl": self.kl.mean(), "kl_se": self.kl.se(), "top1_agreement": self.agree.mean(),
                "top1_agreement_se": self.agree.se(), "positions": self.kl.n}
        return pa.Table.from_pydict({f.name: pa.array(np.asarray(cols[f.name]), f.type)
                                     for f in STAGES_INTERVENTIONS}, schema=STAGES_INTERVENTIONS)


def interventions(model, shards: list[str | Path], *, intervention_tokens: int, batch_size: int,
                  progress: bool = True) -> pa.Table:
    """The `stages_interventions` job: the first `intervention_tokens` positions of the shards, every deletion and
    swap (2L−1 suffix forwards per batch). Returns interventions.parquet's table."""
    runner = Interventions(model)
    bar = tqdm(total=intervention_tokens, desc="stages: interventions", unit="tok", unit_scale=True, mininterval=2,
               disable=not progress)
    device = next(model.parameters()).device
    for batch in batches(take_rows(shards, intervention_tokens), batch_size, device):
        runner.add(batch)
        bar.update(int(batch.lengths.sum()))
    bar.close()
    return runner.table()
