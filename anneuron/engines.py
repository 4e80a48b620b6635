"""How the dataset pass runs the model: an engine gives logits for a batch of token ids and calls back with every
layer's MLP activation (TransformerLens' `blocks.L.mlp.hook_post`) and, for `pred_post`, the final LayerNorm's
normalized residual (`ln_final.hook_normalized`).

- `HFGPT2Engine` (GPT-2 family, the default): the Hugging Face model itself with SDPA attention (flash/memory-
  efficient kernels; the bridge computes attention eagerly, materialising every (T x T) pattern) and gelu_new as
  one fused kernel (`gelu(approximate="tanh")`, the same function; the unfused one is ~8 elementwise passes).
  Raw weights: hook_post is the same as in the processed model, and logits differ by a per-position constant
  (docs/science.md), so the argmax, the softmax and `pred_post` are the same (the normalized residual has zero mean,
  so centring W_E does not change its dot products). 2.5-3x faster than the bridge at seq_len 1024 on CPU.
- `BridgeEngine`: any model TransformerLens' bridge supports (processed, as loaded by anneuron.models.load_model).
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Callable, Iterator

import torch
from torch import nn

from anneuron import models as M

PostHook = Callable[[torch.Tensor, int], None]  # (activation (B, T, d_mlp), layer)
NormHook = Callable[[torch.Tensor], None]  # normalized residual (B, T, d_model)


class BridgeEngine:
    """A TransformerBridge (processed or raw) with TransformerLens hook names."""

    def __init__(self, bridge):
        self.bridge = bridge
        self.n_layers, self.d_mlp = bridge.cfg.n_layers, bridge.cfg.d_mlp
        self.device = next(bridge.parameters()).device

    @property
    def W_E(self) -> torch.Tensor:
        return self.bridge.W_E.detach()

    @contextlib.contextmanager
    def hooks(self, on_post: PostHook, on_normalized: NormHook | None = None) -> Iterator[None]:
        fwd = [(f"blocks.{layer}.mlp.hook_post", lambda act, hook, layer=layer: on_post(act, layer))
               for layer in range(self.n_layers)]
        if on_normalized is not None:
            fwd.append(("ln_final.hook_normalized", lambda x, hook: on_normalized(x)))
        with self.bridge.hooks(fwd_hooks=fwd):
            yield

    def logits(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.bridge(tokens)


class FusedGeluNew(nn.Module):
    """gelu_new = 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))) as one kernel (max abs difference ~5e-7)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.gelu(x, approximate="tanh")


class HFGPT2Engine:
    """A Hugging Face GPT-2 (GPT2LMHeadModel) with SDPA attention and fused gelu_new, hooked with plain PyTorch
    forward hooks on each block's `mlp.act` (its output is hook_post) and on `ln_f`'s input."""

    def __init__(self, model, fuse_gelu: bool = True):
        self.model = model.eval()
        cfg = model.config
        self.n_layers, self.d_mlp = cfg.n_layer, cfg.n_inner or 4 * cfg.n_embd
        self.eps = cfg.layer_norm_epsilon
        self.device = next(model.parameters()).device
        if fuse_gelu and cfg.activation_function == "gelu_new":
            for block in model.transformer.h:
                block.mlp.act = FusedGeluNew()

    @property
    def W_E(self) -> torch.Tensor:
        return self.model.transformer.wte.weight.detach()

    @contextlib.contextmanager
    def hooks(self, on_post: PostHook, on_normalized: NormHook | None = None) -> Iterator[None]:
        handles = [block.mlp.act.register_forward_hook(lambda mod, inp, out, layer=layer: on_post(out, layer))
                   for layer, block in enumerate(self.model.transformer.h)]
        if on_normalized is not None:
            def pre(mod, inp):
                x = inp[0]
                x = x - x.mean(-1, keepdim=True)
                on_normalized(x / (x.pow(2).mean(-1, keepdim=True) + self.eps).sqrt())

            handles.append(self.model.transformer.ln_f.register_forward_pre_hook(pre))
        try:
            yield
        finally:
            for h in handles:
                h.remove()

    def logits(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=tokens, use_cache=False).logits


Engine = BridgeEngine | HFGPT2Engine


def as_engine(model) -> Engine:
    """An engine for a bridge, a Hugging Face GPT-2 model, or an engine."""
    if isinstance(model, (BridgeEngine, HFGPT2Engine)):
        return model
    from transformers import PreTrainedModel

    if isinstance(model, PreTrainedModel):  # (a bridge forwards attribute lookups to the model it wraps)
        return HFGPT2Engine(model)
    return BridgeEngine(model)


def _model_type(name_or_dir: str) -> str | None:
    if M.is_local(name_or_dir):
        cfg = Path(name_or_dir).expanduser() / "config.json"
        return json.loads(cfg.read_text()).get("model_type") if cfg.exists() else None
    if M.is_gpt2_family(name_or_dir):
        return "gpt2"
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(name_or_dir).model_type
    except OSError as e:
        raise M.ModelError(M._offline_message(name_or_dir)) from e


def load_engine(name_or_dir: str, device: str = "auto", dtype: str | torch.dtype = "auto",
                engine: str = "auto") -> Engine:
    """`auto`: the Hugging Face engine for GPT-2 models, the bridge otherwise."""
    if engine == "auto":
        engine = "hf" if _model_type(name_or_dir) == "gpt2" else "bridge"
    if engine == "bridge":
        return BridgeEngine(M.load_model(name_or_dir, device=device, dtype=dtype))
    if engine != "hf":
        raise ValueError(f"record.engine must be auto, hf or bridge, got {engine!r}")
    from transformers import AutoModelForCausalLM

    device = M.resolve_device(device)
    torch_dtype = dtype if isinstance(dtype, torch.dtype) else M.resolve_dtype(dtype, device)
    target = name_or_dir
    if M.is_local(name_or_dir):
        folder = Path(name_or_dir).expanduser()
        M.check_folder(folder)
        target = str(folder)
    try:
        model = AutoModelForCausalLM.from_pretrained(target, dtype=torch_dtype, attn_implementation="sdpa")
    except OSError as e:
        raise M.ModelError(M._offline_message(name_or_dir)) from e
    if model.config.model_type != "gpt2":
        raise M.ModelError(f"model {name_or_dir}: record.engine hf supports GPT-2 models only "
                           f"(this is {model.config.model_type}); use record.engine: bridge")
    return HFGPT2Engine(model.to(device))
