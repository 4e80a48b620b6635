"""Load a resolved model (anneuron.resolve) through TransformerBridge, TransformerLens-processed, on the configured
device and dtype. A folder saved with `save_pretrained` (config, weights AND tokenizer files) works wherever a hub
name does.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import torch

from anneuron.resolve import ModelError, ModelSpec, folder_tokenizer, resolve

if TYPE_CHECKING:  # imported where a model boots: the Snakefile imports this module, and every job parses it
    from transformer_lens.model_bridge import TransformerBridge

log = logging.getLogger(__name__)


def resolve_device(device: str = "auto") -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ModelError("device: cuda requested but torch sees no CUDA device (set device: auto or cpu)")
    return device


def resolve_dtype(dtype: str = "auto", device: str = "cpu") -> torch.dtype:
    """`auto` = bf16 on CUDA (the fast path for the real study), float32 on CPU."""
    if dtype == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]


def load_model(
    model: ModelSpec | str, device: str = "auto", dtype: str | torch.dtype = "auto", processed: bool = True
) -> TransformerBridge:
    """Boot a model (a ModelSpec from anneuron.resolve, or a name to resolve) through TransformerBridge.

    processed=True puts it in the post's coordinates (docs/science.md), per family (anneuron.architecture):
    LayerNorm models (GPT-2) get TransformerLens' fold_ln, center_writing_weights and center_unembed, and their
    logits must be unchanged up to a per-position constant; RMSNorm models (Llama) get every norm gain folded by hand
    into the layers reading it (W_U = diag(g)·W_U, untied from W_E) and no centring (TransformerLens 4.3 would
    centre W_U, which RMSNorm does not license), and their logits must be unchanged. processed=False keeps the raw
    weights (hooks and compatibility aliases still on), for any architecture the bridge boots.
    """
    spec = model if isinstance(model, ModelSpec) else resolve(model)
    name_or_dir = spec.name
    device = resolve_device(device)
    torch_dtype = dtype if isinstance(dtype, torch.dtype) else resolve_dtype(dtype, device)
    tokenizer = folder_tokenizer(spec.folder) if spec.local else spec.tokenizer()
    target = str(spec.folder) if spec.local else spec.name
    from transformer_lens.model_bridge import TransformerBridge

    try:
        bridge = TransformerBridge.boot_transformers(target, device=device, dtype=torch_dtype, tokenizer=tokenizer)
    except OSError:
        raise ModelError(f"model {name_or_dir}: its weights are neither in a folder nor in the local Hugging Face "
                         "hub cache (offline or unreachable); fetch them once on a networked machine or give a "
                         "folder saved with save_pretrained") from None
    bridge.eval()
    if not processed:
        bridge.enable_compatibility_mode(disable_warnings=True, no_processing=True)
        return bridge
    from anneuron import architecture as A

    try:
        family = A.family_of(bridge, "weight processing")
    except A.ArchitectureError as e:
        raise ModelError(f"model {name_or_dir}: {e}; load it with processed=False") from None
    probe = bridge.to_tokens("The quick brown fox jumps over the lazy dog, and then an apple.")
    with torch.no_grad():
        raw = bridge(probe).float()
        if family.centres:
            _fold_square_mlp_ln(bridge)
            bridge.enable_compatibility_mode(disable_warnings=True)
        else:
            bridge.enable_compatibility_mode(disable_warnings=True, no_processing=True)
            A.fold_rms_norms(bridge)
        proc = bridge(probe).float()
    diff = raw - proc
    if family.centres:  # centring W_U shifts each position's logits by a constant
        diff = diff - diff.mean(-1, keepdim=True)
    drift = diff.abs().max().item()
    scale = raw.abs().max().item()
    tol = 1e-3 if torch_dtype == torch.float32 else 5e-2
    if drift > tol * max(1.0, scale):
        what = "beyond a per-position constant" if family.centres else "folding its RMSNorm gains"
        raise ModelError(
            f"model {name_or_dir}: weight processing changed its logits by {drift:.3g} ({what}); "
            "refusing to analyse a changed model"
        )
    return bridge


@torch.no_grad()
def _fold_square_mlp_ln(bridge: TransformerBridge) -> None:
    """Fold each block's ln_2 into its MLP input by hand when d_mlp == d_model (exact), leaving ln_2 = (1, 0).

    TransformerLens 4.3 folds ln_2 into W_in along the wrong axis when W_in is square: its layout test
    (`W_in.shape[1] == d_model` in ProcessWeights._fold_mlp_layer_norm) cannot tell [d_model, d_mlp] from
    [d_mlp, d_model], so the processed model computes something else (demo-emergent has d_mlp = d_model = 128).
    An identity ln_2 folds to the same weights along either axis. Centring W_in is left to TransformerLens
    (its square-case fallback centres the right axis; the logit check below would catch it otherwise).
    """
    if bridge.cfg.d_mlp != bridge.cfg.d_model or bridge.cfg.normalization_type != "LN":
        return  # (RMSNorm models are folded by anneuron.architecture.fold_rms_norms)
    for block in bridge.original_model.transformer.h:  # GPT-2: c_fc is a Conv1D, weight (d_model, d_mlp)
        gamma, beta = block.ln_2.weight, block.ln_2.bias
        block.mlp.c_fc.bias += beta @ block.mlp.c_fc.weight
        block.mlp.c_fc.weight.mul_(gamma[:, None])
        block.ln_2.weight.fill_(1.0)
        block.ln_2.bias.zero_()
