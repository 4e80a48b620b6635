"""How the dataset pass runs the model: an engine runs a batch of token ids, calls back with every layer's MLP
activation (TransformerLens' `blocks.L.mlp.hook_post`: for a gated MLP the product act(gate)·up) and returns the
residual entering the final norm (`final_residual`), from which `head` computes the logits and, for `pred_post`, the
normalized residual (`ln_final.hook_normalized`: centred and scaled under LayerNorm, only scaled under RMSNorm).

- `HFEngine` (the default for every family of anneuron.architecture): the Hugging Face model itself with SDPA
  attention (flash/memory-efficient kernels; the bridge computes attention eagerly, materialising every (T x T)
  pattern; Gemma 2 eager, SDPA has no soft-capped attention scores), hooked with plain forward pre-hooks on each
  layer's MLP output projection (its input is hook_post) and, for `final_residual`, on the final norm (its input).
  GPT-2's gelu_new runs as one fused kernel (`gelu(approximate="tanh")`, the same function; the unfused one is ~8
  elementwise passes). Raw weights: hook_post is the same as in the processed model; GPT-2's logits differ by a
  per-position constant (docs/science.md) and every other family's not at all, so the argmax, the softmax and
  `pred_post` are the same (a LayerNorm's normalized residual has zero mean, so centring W_E does not change its dot
  products). GPT-2: 2.5-3x faster than the
  bridge at seq_len 1024 on CPU.
- `BridgeEngine`: any model TransformerLens' bridge supports (processed, as loaded by anneuron.models.load_model).

Precision (docs/science.md "Precision"). Float32 models run exactly as they are. A model whose body was cast to
bfloat16/float16 (anneuron.models.cast_body, as load_engine and load_model do for `dtype: bfloat16`) runs its
blocks in that precision, but its logits and normalized residual are computed in float32 from the float32 residual
before the final norm, through float32 copies of the final norm, the unembedding and W_E (anneuron.models.Head):
`logits` returns float32 logits and `W_E` a float32 matrix, whatever the body. (A low-precision unembedding of raw
GPT-2, whose logits sit near -60..-130, would round them to multiples of 0.25-0.5.) `final_residual` stops before
the unembedding: the dataset pass unembeds one row at a time from it (`head.logits`), so no (B, T, d_vocab) tensor
exists (8.6 GB in float32 for 8 rows of 1,024 tokens under Gemma's 262k vocabulary). The MLP activations passed to
`on_post` stay in the body's precision.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator

import torch
from torch import nn

from anneuron import architecture as A
from anneuron import models as M
from anneuron.resolve import ModelError, ModelSpec, resolve

PostHook = Callable[[torch.Tensor, int], None]  # (activation (B, T, d_mlp), layer)


class BridgeEngine:
    """A TransformerBridge (processed or raw) with TransformerLens hook names."""

    def __init__(self, bridge):
        self.bridge = bridge
        self.n_layers, self.d_mlp = bridge.cfg.n_layers, bridge.cfg.d_mlp
        self.device = next(bridge.parameters()).device
        self.dtype = M.body_dtype(bridge)
        self.head = M.float32_head(bridge)
        self._final = f"blocks.{self.n_layers - 1}.hook_resid_post"  # the final norm's input

    @property
    def W_E(self) -> torch.Tensor:
        """The embedding, float32 (for a float32 bridge: `bridge.W_E` itself)."""
        return self.head.W_E

    @contextlib.contextmanager
    def hooks(self, on_post: PostHook) -> Iterator[None]:
        fwd = [(f"blocks.{layer}.mlp.hook_post", lambda act, hook, layer=layer: on_post(act, layer))
               for layer in range(self.n_layers)]
        with self.bridge.hooks(fwd_hooks=fwd):
            yield

    def logits(self, tokens: torch.Tensor) -> torch.Tensor:
        if self.dtype == torch.float32:
            return self.bridge(tokens)
        return self.head.logits(self.final_residual(tokens))

    def final_residual(self, tokens: torch.Tensor) -> torch.Tensor:
        """The residual entering the final norm, (B, T, d_model) (the bridge still computes its logits)."""
        final: list[torch.Tensor] = []
        self.bridge.run_with_hooks(tokens, fwd_hooks=[(self._final, lambda x, hook: final.append(x))])
        return final[-1]


class FusedGeluNew(nn.Module):
    """gelu_new = 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))) as one kernel (max abs difference ~5e-7)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.gelu(x, approximate="tanh")


class HFEngine:
    """A Hugging Face causal LM of a family anneuron.architecture knows, hooked with plain PyTorch hooks: a forward
    pre-hook on each layer's MLP output projection (GPT-2's c_proj, Llama's down_proj; its input is hook_post) and
    one on the final norm (its input, normalized without the gain, is ln_final.hook_normalized). A low-precision
    body runs the base model only (no low-precision unembedding) and the float32 head on the final norm's input."""

    def __init__(self, model, fuse_gelu: bool = True):
        self.model = model.eval()
        self.family = A.family_of(model, "record.engine hf")
        self.layers = A.layers(model, self.family)
        self.n_layers = len(self.layers)
        self.d_mlp = A.neurons_to_model(A.mlp_out(self.layers[0], self.family)).shape[0]
        self.final_norm = A.module(model, self.family.final_norm)
        self.device = next(model.parameters()).device
        self.dtype = M.body_dtype(model)
        self.head = M.float32_head(model)
        if fuse_gelu and getattr(model.config, "activation_function", None) == "gelu_new":  # GPT-2
            for layer in self.layers:
                layer.mlp.act = FusedGeluNew()

    @property
    def W_E(self) -> torch.Tensor:
        """The embedding, float32 (for a float32 model: its own weight)."""
        return self.head.W_E

    @contextlib.contextmanager
    def hooks(self, on_post: PostHook) -> Iterator[None]:
        handles = [A.hook_neurons(layer, self.family, lambda act, l=l: on_post(act, l))
                   for l, layer in enumerate(self.layers)]
        try:
            yield
        finally:
            for h in handles:
                h.remove()

    def logits(self, tokens: torch.Tensor) -> torch.Tensor:
        if self.dtype == torch.float32:
            return self.model(input_ids=tokens, use_cache=False).logits
        return self.head.logits(self.final_residual(tokens))

    def final_residual(self, tokens: torch.Tensor) -> torch.Tensor:
        """The residual entering the final norm, (B, T, d_model): the base model only, no unembedding."""
        final: list[torch.Tensor] = []
        h = self.final_norm.register_forward_pre_hook(lambda mod, inp: final.append(inp[0]))
        try:
            self.model.base_model(input_ids=tokens, use_cache=False)
        finally:
            h.remove()
        return final[-1]


Engine = BridgeEngine | HFEngine


def as_engine(model) -> Engine:
    """An engine for a bridge, a Hugging Face model of a known family, or an engine."""
    if isinstance(model, (BridgeEngine, HFEngine)):
        return model
    from transformers import PreTrainedModel

    if isinstance(model, PreTrainedModel):  # (a bridge forwards attribute lookups to the model it wraps)
        return HFEngine(model)
    return BridgeEngine(model)


def load_engine(model: ModelSpec | str, *, device: str, dtype: str | torch.dtype, engine: str) -> Engine:
    """`auto`: the Hugging Face engine for the families anneuron.architecture knows, the bridge
    otherwise. Both load through anneuron.models.load_hf: in float32, then `bfloat16` / `float16` cast the body only
    (anneuron.models.cast_body: the final norm, unembedding and W_E stay float32)."""
    spec = model if isinstance(model, ModelSpec) else resolve(model)
    try:
        family = A.family_of(spec.model_type, "record.engine hf")
        unsupported = None
    except A.ArchitectureError as e:
        family, unsupported = None, e
    if engine == "auto":
        engine = "bridge" if unsupported else "hf"
    if engine == "bridge":
        return BridgeEngine(M.load_model(spec, device=device, dtype=dtype))
    if engine != "hf":
        raise ValueError(f"record.engine must be auto, hf or bridge, got {engine!r}")
    if unsupported:
        raise ModelError(f"model {spec.id}: {unsupported}; use record.engine: bridge")
    return HFEngine(M.load_hf(spec, device, dtype, family.fast_attention))
