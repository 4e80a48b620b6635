"""The one place that knows, per decoder family, where the stages find what they need in a Hugging Face model.

Two families: `gpt2` (LayerNorm, learned absolute positions, MLP act(W_in x) → c_proj) and `llama` (RMSNorm,
RoPE, grouped-query attention, gated MLP act(gate x) · (up x) → down_proj: SwiGLU with `silu`, GeGLU with a gelu).
A neuron is always one input of the MLP's output projection (GPT-2's c_proj, Llama's down_proj), so one forward
pre-hook on that projection records every family's neurons (for Llama: the gated product, TransformerLens'
`blocks.L.mlp.hook_post`), and its weight gives W_out.

How the final norm enters the unembedding differs: under LayerNorm the TransformerLens processing (fold the gain,
centre W_out, W_E and W_U) is exact up to a per-position constant of the logits; under RMSNorm centring is not exact
(RMSNorm does not remove the mean), so `fold_rms_norms` only folds each gain into the linear layers that read its
output (diag(g)·W), which keeps the logits equal. Both run by hand, in place on the model's own tensors
(`fold_layer_norms` is TransformerLens' own processing of a GPT-2, redone without its copies of the state dict:
at GPT-2 Large's shape TransformerLens peaks at 3.6x the fp32 model, this at ~1x).

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
    # in a layer: the self-attention module, whose output is (attn_out, pattern or None); the pattern only under
    # eager attention (anneuron.stages reads both)
    attn: str = "self_attn"

    @property
    def centres(self) -> bool:
        """Whether the final norm removes the mean (so centring W_U, W_out and W_E is exact)."""
        return self.norm == "LN"


GPT2 = Family("gpt2", ("gpt2",), "LN", "transformer.h", "transformer.wte", "transformer.ln_f", "mlp.c_proj",
              attn="attn")
LLAMA = Family(
    "llama", ("llama", "mistral", "qwen2"), "RMS", "model.layers", "model.embed_tokens", "model.norm", "mlp.down_proj",
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


def attention(layer: nn.Module, fam: Family) -> nn.Module:
    """The layer's self-attention module: its output is (attn_out, pattern (B, H, T, T) or None)."""
    return module(layer, fam.attn)


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


# --- weight processing for LayerNorm (GPT-2) ----------------------------------------------------------------------

def fold_layer_norms(bridge) -> None:
    """TransformerLens' default processing of a GPT-2 (`enable_compatibility_mode()`: fold_ln, then
    center_writing_weights, center_unembed and fold_value_biases), done by hand, in place, in float32, on the
    tensors the bridge's forward reads. Call it on a bridge booted raw and switched to
    `enable_compatibility_mode(no_processing=True)`; the logits then equal the raw model's up to a per-position
    constant (anneuron.models.load_model checks it).

    Why by hand: TransformerLens copies the whole state dict at several steps (and keeps the bridge's own tensors
    meanwhile): at GPT-2 Large's shape it peaked at 11 GB RSS, 3.6x the 3.1 GB fp32 model. This works on the
    tensors themselves; the only new one is the untied unembedding (tied GPT-2s: 257 MB at Large's shape) and
    temporaries of at most one (d_model, d_mlp) matrix. It also folds ln_2 along the right axis when
    d_mlp == d_model, which TransformerLens 4.3 gets wrong (its layout test cannot tell the two axes apart).

    Per block (Linear q, k, v read ln_1 as (out, in); Conv1D c_fc reads ln_2 as (in, out)):
      b += W · ln.b;  W = W · diag(ln.w);  W -= mean over d_model (what reads a LayerNorm's output, which has
      zero mean);  ln = (1, 0).
    Final norm into the unembedding (Linear (d_vocab, d_model), whose bias buffer the bridge created):
      b_U += W_U · ln_f.b;  W_U = W_U · diag(ln_f.w);  W_U -= mean over d_model;  ln_f = (1, 0).
    center_writing_weights: W_E, W_pos, each attention output (c_proj) and MLP output (c_proj) minus their mean
      over d_model, their biases minus their mean (everything written to the residual is read by a LayerNorm).
    center_unembed: W_U minus its mean over the vocabulary, b_U minus its mean (a per-position constant).
    fold_value_biases: b_O += sum over heads of b_V · W_O, b_V = 0 (attention patterns sum to 1), b_O recentred.
    The steps, their order and their reductions are TransformerLens 4.3's (ProcessWeights.process_weights);
    tests/test_models.py checks every tensor and every activation against it on random GPT-2s.
    """
    import torch
    from torch import nn

    fam = family_of(bridge, "LayerNorm folding")
    if fam.norm != "LN" or not hasattr(bridge, "blocks"):
        raise ArchitectureError(f"model type {model_type(bridge)!r}: fold_layer_norms folds a GPT-2 bridge only")
    low = sorted({str(p.dtype) for p in bridge.parameters() if p.dtype != torch.float32})
    if low:
        raise ValueError(f"fold_layer_norms processes float32 weights only (found {', '.join(low)})")
    n_heads, d_head = bridge.cfg.n_heads, bridge.cfg.d_head
    embed, pos, ln_f, head = (unwrap(getattr(bridge, n)) for n in ("embed", "pos_embed", "ln_final", "unembed"))
    blocks = list(bridge.blocks)
    with torch.no_grad():
        if head.weight is embed.weight or head.weight.data_ptr() == embed.weight.data_ptr():
            head.weight = nn.Parameter(head.weight.detach().clone(), requires_grad=False)  # untie from W_E
            hf_model(bridge).config.tie_word_embeddings = False
        if head.bias is None:  # (the bridge gives GPT-2's lm_head a zero bias buffer)
            raise ArchitectureError("fold_layer_norms: the unembedding has no bias to fold ln_f's bias into")
        # fold_ln (with centring of the weights reading each norm)
        for block in blocks:
            ln1, ln2 = unwrap(block.ln1), unwrap(block.ln2)
            for lin in (unwrap(getattr(block.attn, n)) for n in ("q", "k", "v")):  # nn.Linear: (out, in)
                lin.bias += (lin.weight * ln1.bias[None, :]).sum(-1)
                lin.weight *= ln1.weight[None, :]
                lin.weight -= lin.weight.mean(1, keepdim=True)
            ln1.weight.fill_(1.0)
            ln1.bias.zero_()
            fc = unwrap(block.mlp.get_submodule("in"))  # Conv1D: (d_model, d_mlp)
            fc.bias += (fc.weight * ln2.bias[:, None]).sum(0)
            fc.weight *= ln2.weight[:, None]
            fc.weight -= fc.weight.mean(0, keepdim=True)
            ln2.weight.fill_(1.0)
            ln2.bias.zero_()
        head.bias += head.weight @ ln_f.bias  # (a matrix-vector product: no (d_vocab, d_model) temporary)
        ln_f.bias.zero_()
        head.weight *= ln_f.weight[None, :]
        ln_f.weight.fill_(1.0)
        head.weight -= head.weight.mean(1, keepdim=True)
        # center_writing_weights
        for emb in (embed, pos):
            emb.weight -= emb.weight.mean(-1, keepdim=True)
        for block in blocks:
            for proj in (unwrap(block.attn.o), unwrap(block.mlp.out)):  # Conv1D: (in, d_model)
                proj.weight -= proj.weight.mean(-1, keepdim=True)
                proj.bias -= proj.bias.mean()
        # center_unembed
        head.weight -= head.weight.mean(0, keepdim=True)
        head.bias -= head.bias.mean()
        # fold_value_biases (then b_O recentred, as TransformerLens does when it centres writing weights)
        for block in blocks:
            v, o = unwrap(block.attn.v), unwrap(block.attn.o)
            w_o = o.weight.reshape(n_heads, d_head, -1)
            o.bias += (v.bias.reshape(n_heads, d_head)[:, :, None] * w_o).sum((0, 1))
            v.bias.zero_()
            o.bias -= o.bias.mean()
