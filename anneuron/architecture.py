"""The one place that knows, per decoder family, where the stages find what they need in a Hugging Face model.

Two families: `gpt2` (LayerNorm, learned absolute positions, MLP act(W_in x) → c_proj) and `llama` (RMSNorm,
RoPE, grouped-query attention, gated MLP act(gate x) · (up x) → down_proj: SwiGLU with `silu`, GeGLU with a gelu).
A neuron is always one input of the MLP's output projection (GPT-2's c_proj, Llama's down_proj), so one forward
pre-hook on that projection records every family's neurons (for Llama: the gated product, TransformerLens'
`blocks.L.mlp.hook_post`), and its weight gives W_out.

How the final norm enters the unembedding differs: under LayerNorm the TransformerLens processing (fold the gain,
centre W_out, W_E and W_U) is exact up to a per-position constant of the logits; under RMSNorm centring is not exact
(RMSNorm does not remove the mean), so `fold_rms_norms` only folds each gain into the linear layers that read its
output (diag(g)·W), which keeps the logits equal.

Works on a plain Hugging Face model and on the model a TransformerBridge wraps (whose modules it has replaced by
bridge components that keep the original module as `original_component`). Importing this module does not import
torch (the Snakefile may ask `family_name` while it parses); the functions that touch modules do.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Literal

if TYPE_CHECKING:
    from jaxtyping import Float
    from torch import Tensor, nn
    from torch.utils.hooks import RemovableHandle


class ArchitectureError(NotImplementedError):
    """A model whose architecture a stage does not handle; the message is one line naming the type and the gap."""


@dataclass(frozen=True)
class Family:
    """Paths (dotted attributes from the causal-LM model, or from one decoder layer) of one decoder family."""

    name: Literal["gpt2", "llama"]
    model_types: tuple[str, ...]
    norm: Literal["LN", "RMS"]
    layers: str  # the decoder layers
    embed: str
    final_norm: str
    mlp_out: str  # in a layer: the projection reading the neurons
    # in a layer: each norm -> the linear layers reading its output (folded by fold_rms_norms)
    norm_readers: dict[str, tuple[str, ...]] = field(default_factory=dict)
    unembed: str = "lm_head"

    @property
    def centres(self) -> bool:
        """Whether the final norm removes the mean (so centring W_U, W_out and W_E is exact)."""
        return self.norm == "LN"


GPT2 = Family("gpt2", ("gpt2",), "LN", "transformer.h", "transformer.wte", "transformer.ln_f", "mlp.c_proj")
LLAMA = Family(
    "llama", ("llama",), "RMS", "model.layers", "model.embed_tokens", "model.norm", "mlp.down_proj",
    norm_readers={"input_layernorm": ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"),
                  "post_attention_layernorm": ("mlp.gate_proj", "mlp.up_proj")},
)
FAMILIES = (GPT2, LLAMA)


# --- which family -------------------------------------------------------------------------------------------------

def family_name(model_type: str) -> str | None:
    """`gpt2` / `llama` for a config.json `model_type` this module handles, else None (no torch needed)."""
    return next((f.name for f in FAMILIES if model_type in f.model_types), None)


def hf_model(model) -> nn.Module:
    """The Hugging Face causal-LM model: a bridge's wrapped model, or the model itself."""
    return getattr(model, "original_model", model)


def model_type(model) -> str:
    """`config.model_type` of a bridge, a Hugging Face model, or a config."""
    cfg = getattr(hf_model(model), "config", model)
    return str(getattr(cfg, "model_type", type(cfg).__name__))


def family_of(model_or_type, stage: str = "anneuron") -> Family:
    """The family of a model (or a model_type string); anything else is refused in one line."""
    t = model_or_type if isinstance(model_or_type, str) else model_type(model_or_type)
    for fam in FAMILIES:
        if t in fam.model_types:
            return fam
    known = ", ".join(m for f in FAMILIES for m in f.model_types)
    raise ArchitectureError(f"model type {t!r}: {stage} has no mapping of its norms, MLP and attention "
                            f"(anneuron.architecture knows {known})")


# --- modules ------------------------------------------------------------------------------------------------------

def unwrap(m: nn.Module) -> nn.Module:
    """The Hugging Face module behind a TransformerBridge component (itself if it is not one)."""
    inner = getattr(m, "original_component", None)
    return m if inner is None else inner


def module(root: nn.Module, path: str) -> nn.Module:
    """`root.a.b.c`, unwrapping bridge components at every step."""
    m = unwrap(root)
    for part in path.split("."):
        m = unwrap(m[int(part)] if part.isdigit() else getattr(m, part))
    return m


def layers(model, fam: Family | None = None) -> list[nn.Module]:
    """The decoder layers (Hugging Face modules) of a model or bridge."""
    hf = hf_model(model)
    fam = fam or family_of(hf)
    return [unwrap(layer) for layer in module(hf, fam.layers)]


def mlp_out(layer: nn.Module, fam: Family) -> nn.Module:
    """The projection whose input is the layer's neurons (c_proj, down_proj)."""
    return module(layer, fam.mlp_out)


def neurons_to_model(proj: nn.Module) -> Float[Tensor, "d_mlp d_model"]:
    """W_out of an MLP output projection as (d_mlp, d_model), a view: Conv1D stores it so, nn.Linear transposed."""
    from torch import nn

    w = proj.weight
    return w.T if isinstance(proj, nn.Linear) else w


def eps_of(norm: nn.Module) -> float:
    eps = getattr(norm, "eps", None)
    return float(eps if eps is not None else norm.variance_epsilon)


def normalize(x: Float[Tensor, "... d_model"], kind: str, eps: float) -> Float[Tensor, "... d_model"]:
    """The final norm without its gain (TransformerLens' `ln_final.hook_normalized`): LayerNorm centres then
    scales, RMSNorm only scales."""
    if kind == "LN":
        x = x - x.mean(-1, keepdim=True)
    return x / (x.pow(2).mean(-1, keepdim=True) + eps).sqrt()


def hook_neurons(layer: nn.Module, fam: Family, fn: Callable[[Tensor], None]) -> RemovableHandle:
    """Call fn(neurons (B, T, d_mlp)) on every forward of the layer's MLP: the input of its output projection."""
    return mlp_out(layer, fam).register_forward_pre_hook(lambda mod, inp: fn(inp[0]))


def bridge_mlp(block) -> tuple[Callable[[Tensor], Tensor], nn.Module]:
    """(neurons, out) of a TransformerBridge block's MLP, from the Hugging Face modules themselves: neurons(h) is
    hook_post for the normalized input h (act(in h), or act(gate h) · in h when the MLP is gated) and
    out(neurons) the MLP's output. TransformerLens names the projections `in`, `gate` and `out` in every family."""
    mlp = block.mlp
    parts = dict(mlp.named_children())
    inner = mlp.original_component
    up, out = parts["in"].original_component, parts["out"].original_component
    act = getattr(inner, "act", getattr(inner, "act_fn", None))
    if act is None:
        raise ArchitectureError(f"MLP {type(inner).__name__}: no activation module (act / act_fn)")
    if "gate" in parts:
        gate = parts["gate"].original_component
        return (lambda h: act(gate(h)) * up(h)), out
    return (lambda h: act(up(h))), out


# --- weight processing for RMSNorm --------------------------------------------------------------------------------

def _scale_inputs(linear: nn.Module, gain: Tensor) -> None:
    """linear(g ⊙ x) = linear'(x): scale the input columns (nn.Linear weight is (out, in))."""
    from torch import nn

    if not isinstance(linear, nn.Linear):
        raise ArchitectureError(f"cannot fold a norm into {type(linear).__name__} (expected nn.Linear)")
    linear.weight.copy_((linear.weight.float() * gain.float()).to(linear.weight.dtype))


def fold_rms_norms(model) -> None:
    """Fold every RMSNorm gain into the linear layers that read its output and set the gains to 1, in place.

    Exact (logits unchanged up to float rounding). The unembedding becomes diag(g_final)·W_U and is untied from the
    embedding first (a tied lm_head would otherwise scale W_E too). No centring: RMSNorm does not remove the mean.
    """
    import torch

    hf = hf_model(model)
    fam = family_of(hf, "RMSNorm folding")
    if fam.norm != "RMS":
        raise ArchitectureError(f"model type {model_type(hf)!r}: fold_rms_norms folds RMSNorm only")
    with torch.no_grad():
        for layer in layers(hf, fam):
            for norm_name, readers in fam.norm_readers.items():
                norm = module(layer, norm_name)
                for reader in readers:
                    _scale_inputs(module(layer, reader), norm.weight)
                norm.weight.fill_(1.0)
        final, head = module(hf, fam.final_norm), module(hf, fam.unembed)
        folded = (head.weight.float() * final.weight.float()).to(head.weight.dtype)
        head.weight = torch.nn.Parameter(folded, requires_grad=head.weight.requires_grad)  # new: untied from W_E
        hf.config.tie_word_embeddings = False
        final.weight.fill_(1.0)
