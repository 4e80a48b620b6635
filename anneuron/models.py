"""Load a resolved model (anneuron.resolve) through TransformerBridge, TransformerLens-processed, on the configured
device and dtype. A folder saved with `save_pretrained` (config, weights AND tokenizer files) works wherever a hub
name does.

Precision (docs/science.md "Precision"): float32 by default, everywhere. `bfloat16` / `float16` are explicit opt-ins
for the forward passes of the body (the blocks). Whatever the body runs in, the model is loaded, processed and
checked in float32 first, and a float32 copy of its final norm, unembedding and embedding is kept (`float32_head`)
before the body is cast: every logit, LD, softmax, argmax and `pred_post` is read from the float32 residual through
those copies, never from low-precision logits (bf16 keeps ~3 significant digits: at GPT-2's logit scale, |logit|
16-128, its spacing is 0.125-0.5, so near-tied logits collapse and `argmax` then picks the lower token id).
"""

from __future__ import annotations

import copy
import logging
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import torch
from torch import nn

from anneuron.resolve import ModelError, ModelSpec, check_model_files, folder_tokenizer, resolve

# TransformerLens is imported only where a bridge boots: its import takes seconds, and the dataset pass's Hugging
# Face engine never needs it.
if TYPE_CHECKING:
    from transformer_lens.model_bridge import TransformerBridge
    from transformers import PreTrainedModel

log = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# load_model's check that weight processing left the logits unchanged, always computed in float32 (whatever dtype
# the body is cast to afterwards): the largest change of the probe's logits (beyond a per-position constant under
# LayerNorm) may be at most DRIFT_TOLERANCE x max(1, max |raw logit|). Measured: 3e-7 to 1.1e-6 of that scale
# (float32 rounding of the folded products) on random GPT-2s (3 layers x 64 up to 12 x 768, square MLPs), the
# planted demo and random Llamas; the bound leaves ~100x for deeper, wider real models (GPT-2 Large: 36 x 1280,
# raw logits ~-60..-130). A real processing error is far above it: the TransformerLens square-W_in bug this check
# caught moved LD by 7% (9.31 -> 8.63).
DRIFT_TOLERANCE = 1e-4


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ModelError("device: cuda requested but torch sees no CUDA device (set device: auto or cpu)")
    return device


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """The precision of the model's forward passes: `float32` (the default: everything measured is fp32), or the
    explicit opt-ins `bfloat16` / `float16` (the body only: see `float32_head`). The same on every device."""
    if isinstance(dtype, torch.dtype):
        if dtype in DTYPES.values():
            return dtype
    elif dtype in DTYPES:
        return DTYPES[dtype]
    raise ValueError(f"dtype {dtype!r}: expected one of {', '.join(DTYPES)}")


# --- the float32 head ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Head:
    """The final norm, the unembedding and the embedding in float32: `logits(resid)` is the model's own
    `unembed(norm(resid))` computed in float32 from the residual before the final norm (upcast).

    For a float32 model these ARE its modules (no copy); for a model whose body runs in bfloat16/float16 they are
    float32 copies taken before the cast (load_hf), or, for a model given already cast, upcast
    copies of its low-precision weights (float32 arithmetic on bf16-rounded weights)."""

    norm: nn.Module  # the final LayerNorm / RMSNorm (processed models: gain folded into the unembedding)
    unembed: nn.Linear  # weight (d_vocab, d_model), bias b_U or None
    W_E: torch.Tensor  # (d_vocab, d_model), the embedding (pred_post)
    kind: str  # "LN" (centres and scales) or "RMS" (scales only)
    eps: float
    softcap: float | None = None  # Gemma 2's final soft-cap c: logits = c·tanh(z / c)

    def capped(self, z: torch.Tensor) -> torch.Tensor:
        """The model's final soft-cap applied to unembedding outputs (identity for models without one)."""
        return z if self.softcap is None else self.softcap * torch.tanh(z / self.softcap)

    def scale(self, resid: torch.Tensor) -> torch.Tensor:
        """(..., d_model) -> (...): the final norm's divisor s(x) = √(mean c(x)² + ε), in float32, with c centring
        under LayerNorm only (the `post` logit lens divides every residual by the final one's)."""
        x = resid.float()
        if self.kind == "LN":
            x = x - x.mean(-1, keepdim=True)
        return (x.pow(2).mean(-1) + self.eps).sqrt()

    def logits(self, resid: torch.Tensor) -> torch.Tensor:
        """(..., d_model) residual before the final norm -> (..., d_vocab) float32 logits."""
        return self.capped(self.unembed(self.norm(resid.float())))

    def normalized(self, resid: torch.Tensor) -> torch.Tensor:
        """The final norm without its gain (TransformerLens' `ln_final.hook_normalized`), in float32."""
        from anneuron.architecture import normalize

        return normalize(resid.float(), self.kind, self.eps)

    def direction(self, answer: int, wrong: int) -> tuple[torch.Tensor, float]:
        """W_U[:, answer] − W_U[:, wrong] (float32) and b_U[answer] − b_U[wrong]."""
        w, b = self.unembed.weight, self.unembed.bias
        return (w[answer] - w[wrong]).detach().float(), float(b[answer] - b[wrong]) if b is not None else 0.0


_HEADS: "weakref.WeakKeyDictionary[nn.Module, Head]" = weakref.WeakKeyDictionary()


def _parts(model) -> tuple[nn.Module, nn.Linear, torch.Tensor, str]:
    """(final norm, unembedding, embedding weight, norm kind) of a TransformerBridge or a Hugging Face model of a
    family anneuron.architecture knows."""
    from anneuron import architecture as A

    if hasattr(model, "original_model"):  # a bridge (any architecture it boots): its own components
        kind = "RMS" if str(getattr(model.cfg, "normalization_type", "LN")).startswith("RMS") else "LN"
        return (model.ln_final.original_component, model.unembed.original_component,
                model.embed.original_component.weight, kind)
    fam = A.family_of(model, "the float32 head")
    return A.module(model, fam.final_norm), A.module(model, fam.unembed), A.module(model, fam.embed).weight, fam.norm


def _make_head(model, copies: bool) -> Head:
    """The model's own head modules (copies=False), or float32 copies of them (copies=True: before a cast, or for a
    model already in low precision)."""
    from anneuron import architecture as A

    norm, unembed, W_E, kind = _parts(model)
    if copies:
        tied = W_E is unembed.weight
        norm, unembed = copy.deepcopy(norm).float(), copy.deepcopy(unembed).float()
        W_E = unembed.weight if tied else W_E.detach().float().clone()
        for p in (*norm.parameters(), *unembed.parameters()):
            p.requires_grad_(False)
    cap = getattr(A.hf_model(model).config, "final_logit_softcapping", None)
    return Head(norm, unembed, W_E.detach(), kind, A.eps_of(norm), float(cap) if cap else None)


def float32_head(model) -> Head:
    """The float32 head of a bridge or Hugging Face model (see Head), made once per model."""
    head = _HEADS.get(model)
    if head is None:
        head = _HEADS[model] = _make_head(model, copies=body_dtype(model) != torch.float32)
    return head


def body_dtype(model) -> torch.dtype:
    """The precision the model's blocks run in."""
    return next(model.parameters()).dtype


def cast_body(model, dtype: str | torch.dtype):
    """Keep float32 copies of a float32 model's head (`float32_head`), then cast its parameters to `dtype` in
    place. Rotary `inv_freq` buffers stay float32, as Hugging Face keeps them when it loads a model in low
    precision (rounded to bf16, RoPE angles would drift by ~position x 2^-9 rad). Returns the model."""
    dtype = resolve_dtype(dtype)
    if dtype == body_dtype(model):
        return model
    if body_dtype(model) != torch.float32:
        raise ValueError(f"cast_body: the model is already {body_dtype(model)}; load it in float32 and cast once")
    _HEADS[model] = _make_head(model, copies=True)
    keep = {(mod, name): buf for mod in model.modules() for name, buf in mod._buffers.items()
            if buf is not None and name.endswith("inv_freq")}
    if hasattr(model, "original_model"):
        model.to(dtype, print_details=False)  # (TransformerBridge: also sets cfg.dtype)
    else:
        model.to(dtype)
    for (mod, name), buf in keep.items():
        mod._buffers[name] = buf
    return model


# --- loading ------------------------------------------------------------------------------------------------------

def _source(spec: ModelSpec) -> str:
    """What Hugging Face loads a model from: its folder, or its hub name."""
    return str(spec.folder) if spec.local else spec.name


def load_hf(model: ModelSpec | str, device: str, dtype: str | torch.dtype, attn_implementation: str,
            prepare: Callable[[ModelSpec, PreTrainedModel], nn.Module] | None = None) -> nn.Module:
    """THE loader of every stage and engine: a model (a ModelSpec from anneuron.resolve, or a name to resolve) as
    its Hugging Face causal LM, read from its folder or from the local hub cache at its revision, in float32, in
    eval mode, on `device` (resolve_device); then `prepare(spec, model)` (in float32: booting the bridge, weight
    processing and its check, see load_model) and the body cast to `dtype` (cast_body: the float32 head kept).

    attn_implementation: `eager` for the bridge (its hooks read every attention pattern), `sdpa` for the dataset
    pass's engine (anneuron.dataset.engines). Weights missing offline are one ModelError line; a folder's damaged
    file (a truncated download) one InputError line naming it (check_model_files)."""
    check_model_files(model)
    spec = model if isinstance(model, ModelSpec) else resolve(model)
    device, torch_dtype = resolve_device(device), resolve_dtype(dtype)
    from transformers import AutoModelForCausalLM

    try:
        hf = AutoModelForCausalLM.from_pretrained(_source(spec), revision=spec.revision, dtype=torch.float32,
                                                  attn_implementation=attn_implementation)
    except OSError:
        raise ModelError(f"model {spec.name}: its weights are neither in a folder nor in the local Hugging Face hub "
                         "cache (offline or unreachable); fetch them once on a networked machine or give a folder "
                         "saved with save_pretrained") from None
    loaded = hf.to(device).eval()
    if prepare is not None:
        loaded = prepare(spec, loaded)
    return cast_body(loaded, torch_dtype)


def load_model(
    model: ModelSpec | str, *, device: str, dtype: str | torch.dtype, processed: bool = True
) -> TransformerBridge:
    """Boot a model (a ModelSpec from anneuron.resolve, or a name to resolve) through TransformerBridge, loaded by
    load_hf (eager attention).

    processed=True puts it in the post's coordinates (docs/science.md), per family (anneuron.architecture):
    GPT-2 gets TransformerLens' fold_ln, center_writing_weights, center_unembed and
    fold_value_biases, done by hand in place (anneuron.architecture.fold_layer_norms: ~1x the model's memory where
    TransformerLens' own pass peaks at 3.6x), and its logits must be unchanged up to a per-position constant;
    every other family (anneuron.architecture.fold_norms) gets the gain (and LayerNorm bias) of every norm reading
    the residual folded by hand into the layers reading it (W_U = diag(g)·W_U, untied from W_E; under LayerNorm W_U
    also centred over d_model, exact), post-norms left in place, no other centring (TransformerLens 4.3 would centre
    W_U over the vocabulary, which RMSNorm does not license), and its logits must be unchanged. processed=False keeps
    the raw
    weights (hooks and compatibility aliases still on), for any architecture the bridge boots.

    dtype: the model is always booted, processed and checked in float32 (the check is a float32 check whatever the
    dtype: DRIFT_TOLERANCE); `bfloat16` / `float16` then cast its body (cast_body), keeping a float32 copy of the
    final norm, unembedding and embedding (float32_head) from which every logit must be read.
    """
    return load_hf(model, device, dtype, "eager", lambda spec, hf: _bridge(spec, hf, processed))


def _bridge(spec: ModelSpec, hf: PreTrainedModel, processed: bool) -> TransformerBridge:
    """A float32 Hugging Face model booted through TransformerBridge (which wraps the model itself: no second
    copy), processed and checked as load_model says. fold_norms runs on the Hugging Face model BEFORE the bridge
    boots: the bridge splits some modules into copies at boot (GPT-NeoX's fused query_key_value into q, k, v), which
    must see the folded weights. GPT-2's processing runs on the bridge's own tensors, after."""
    tokenizer = folder_tokenizer(spec.folder) if spec.local else spec.tokenizer()
    from transformer_lens.model_bridge import TransformerBridge

    from anneuron import architecture as A

    family = None
    if processed:
        try:
            family = A.family_of(hf, "weight processing")
        except A.ArchitectureError as e:
            raise ModelError(f"model {spec.name}: {e}; load it with processed=False") from None
    tl = family is A.GPT2  # TransformerLens' processing (centring: a per-position constant); else fold_norms
    ids = tokenizer.encode("The quick brown fox jumps over the lazy dog, and then an apple.", add_special_tokens=False)
    bos = [] if tokenizer.bos_token_id is None else [tokenizer.bos_token_id]
    probe = torch.tensor([bos + ids], device=next(hf.parameters()).device)
    if processed and not tl:
        with torch.no_grad():
            raw = hf(input_ids=probe, use_cache=False).logits.float()
            A.fold_norms(hf)  # by hand, in place: ~1x the model
    bridge = TransformerBridge.boot_transformers(_source(spec), hf_model=hf, device=next(hf.parameters()).device,
                                                 dtype=torch.float32, tokenizer=tokenizer)
    bridge.eval()
    if not processed:
        bridge.enable_compatibility_mode(disable_warnings=True, no_processing=True)
        return bridge
    with torch.no_grad():
        if tl:
            raw = bridge(probe).float()
        bridge.enable_compatibility_mode(disable_warnings=True, no_processing=True)
        if tl:
            A.fold_layer_norms(bridge)  # by hand, in place: ~1x the model
        proc = bridge(probe).float()
    drift, scale = processing_drift(raw, proc, tl)
    if drift > DRIFT_TOLERANCE * max(1.0, scale):
        what = "beyond a per-position constant" if tl else "folding its norm gains"
        raise ModelError(
            f"model {spec.name}: weight processing changed its logits by {drift:.3g} ({what}; float32, "
            f"tolerance {DRIFT_TOLERANCE:g} x max(1, max |logit| = {scale:.3g})); refusing to analyse a changed model"
        )
    log.info("model %s: processing drift %.3g (%.2g of max |logit| %.3g)", spec.name, drift,
             drift / max(1.0, scale), scale)
    return bridge


def processing_drift(raw: torch.Tensor, proc: torch.Tensor, centres: bool) -> tuple[float, float]:
    """(largest change of the logits, max |raw logit|); under LayerNorm (centres=True) a per-position constant is
    allowed (centring W_U shifts each position's logits by one)."""
    diff = raw.double() - proc.double()
    if centres:
        diff = diff - diff.mean(-1, keepdim=True)
    return diff.abs().max().item(), raw.abs().max().item()
