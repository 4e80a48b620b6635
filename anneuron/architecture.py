"""The one place that knows, per decoder family, where the stages find what they need in a Hugging Face model.

Families (the table `FAMILIES`): `gpt2` (LayerNorm, learned absolute positions, MLP act(W_in x) → c_proj), `llama`
(RMSNorm, RoPE, grouped-query attention, gated MLP act(gate x) · (up x) → down_proj: SwiGLU with `silu`, GeGLU with
a gelu), `qwen3` (Llama plus q/k norms), `gpt_neox` (Pythia) and `phi` (LayerNorm, partial rotary, attention and MLP
in parallel from one residual, ungated GELU MLP), `gemma2` / `gemma3` (RMSNorm x (1 + w), post-norms after the
attention and the MLP, GeGLU, embeddings x sqrt(d_model); Gemma 2 soft-caps its logits) and `olmo2` (post-norms only,
q/k norms). Each is a row of data (its module paths and facts); the stages run the model's own modules.
A neuron is always one input of the MLP's output projection (GPT-2's c_proj, Llama's down_proj), so one forward
pre-hook on that projection records every family's neurons (for Llama: the gated product, TransformerLens'
`blocks.L.mlp.hook_post`), and its weight gives W_out. Likewise an attention head's z (`hook_z`) is one slice of
the input of the attention's output projection (`attn_out`: c_proj, o_proj, GPT-NeoX's and Phi's dense), whose
weight gives W_O.

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
    """Paths (dotted attributes from the causal-LM model, or from one decoder layer) and per-family facts of one
    decoder family. The stages read these facts; the modules themselves (attention, MLP, norms) are the model's."""

    name: str
    model_types: tuple[str, ...]
    norm: Literal["LN", "RMS"]
    layers: str  # the decoder layers
    embed: str
    final_norm: str
    mlp_out: str  # in a layer: the projection reading the neurons
    # in a layer: each norm -> the linear layers reading its output (folded by fold_norms)
    norm_readers: dict[str, tuple[str, ...]] = field(default_factory=dict)
    unembed: str = "lm_head"
    attn_norm: str | None = None  # in a layer: the norm the attention reads (None: the raw residual)
    mlp_norm: str | None = None  # in a layer: the norm the MLP reads (None: the raw residual)
    attn_post_norm: str | None = None  # in a layer: the norm between the attention and the residual
    mlp_post_norm: str | None = None  # in a layer: the norm between the MLP and the residual (Gemma 2/3, OLMo-2)
    # attention and MLP both read the block's input residual (GPT-NeoX, Phi); a string: the config key that says so
    parallel: bool | str = False
    gain_offset: float = 0.0  # an RMSNorm multiplies by (offset + weight): Gemma's (1 + w)
    cache_kwarg: str = "past_key_values"  # the attention module's keyword for a key/value cache
    sdpa: bool = True  # the Hugging Face model runs under SDPA attention (Gemma 2: soft-capped scores need eager)
    # in a layer: the self-attention module, whose output is (attn_out, pattern or None); the pattern only under
    # eager attention (anneuron.stages reads both)
    attn: str = "self_attn"
    attn_out: str = "self_attn.o_proj"  # in a layer: the attention's output projection, whose input is every head's z

    @property
    def centres(self) -> bool:
        """Whether the final norm removes the mean (so centring W_U over d_model is exact)."""
        return self.norm == "LN"

    @property
    def fast_attention(self) -> str:
        """The fastest exact `attn_implementation` of the family's Hugging Face model: SDPA, or eager where SDPA
        would drop something the model computes (Gemma 2's attention soft-cap)."""
        return "sdpa" if self.sdpa else "eager"

    def is_parallel(self, config) -> bool:
        """Whether attention and MLP read the same residual in a model of this family with this config."""
        return bool(getattr(config, self.parallel)) if isinstance(self.parallel, str) else self.parallel


GPT2 = Family("gpt2", ("gpt2",), "LN", "transformer.h", "transformer.wte", "transformer.ln_f", "mlp.c_proj",
              attn_norm="ln_1", mlp_norm="ln_2", attn="attn", attn_out="attn.c_proj")
_LLAMA_NORMS = dict(norm_readers={"input_layernorm": ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"),
                                  "post_attention_layernorm": ("mlp.gate_proj", "mlp.up_proj")},
                    attn_norm="input_layernorm", mlp_norm="post_attention_layernorm")
LLAMA = Family("llama", ("llama", "mistral", "qwen2"), "RMS", "model.layers", "model.embed_tokens", "model.norm",
               "mlp.down_proj", **_LLAMA_NORMS)
# Qwen3: Llama's layout plus RMSNorms on each head's queries and keys (inside the attention module: nothing to fold)
QWEN3 = Family("qwen3", ("qwen3",), "RMS", "model.layers", "model.embed_tokens", "model.norm", "mlp.down_proj",
               **_LLAMA_NORMS)
# GPT-NeoX (Pythia): LayerNorm, partial rotary, fused qkv, parallel residual (config.use_parallel_residual), untied
NEOX = Family("gpt_neox", ("gpt_neox",), "LN", "gpt_neox.layers", "gpt_neox.embed_in", "gpt_neox.final_layer_norm",
              "mlp.dense_4h_to_h", {"input_layernorm": ("attention.query_key_value",),
                                    "post_attention_layernorm": ("mlp.dense_h_to_4h",)},
              attn_norm="input_layernorm", mlp_norm="post_attention_layernorm",
              parallel="use_parallel_residual", cache_kwarg="layer_past", attn="attention",
              attn_out="attention.dense")
# Phi (1, 1.5, 2): one LayerNorm read by both the attention and the MLP, parallel, partial rotary, lm_head with a bias
PHI = Family("phi", ("phi",), "LN", "model.layers", "model.embed_tokens", "model.final_layernorm", "mlp.fc2",
             {"input_layernorm": ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "mlp.fc1")},
             attn_norm="input_layernorm", mlp_norm="input_layernorm", parallel=True, attn_out="self_attn.dense")
# Gemma 2 / 3: RMSNorm x (1 + w), pre- AND post-norms around attention and MLP, embeddings x sqrt(d_model) (inside
# the model), GeGLU; Gemma 2 soft-caps attention scores and the final logits (config.final_logit_softcapping)
_GEMMA = dict(norm_readers={"input_layernorm": ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"),
                            "pre_feedforward_layernorm": ("mlp.gate_proj", "mlp.up_proj")},
              attn_norm="input_layernorm", mlp_norm="pre_feedforward_layernorm",
              attn_post_norm="post_attention_layernorm", mlp_post_norm="post_feedforward_layernorm", gain_offset=1.0)
GEMMA2 = Family("gemma2", ("gemma2",), "RMS", "model.layers", "model.embed_tokens", "model.norm", "mlp.down_proj",
                sdpa=False, **_GEMMA)
GEMMA3 = Family("gemma3", ("gemma3_text",), "RMS", "model.layers", "model.embed_tokens", "model.norm",
                "mlp.down_proj", **_GEMMA)
# OLMo-2: post-norms only (attention and MLP read the raw residual), RMSNorm on the whole query and key vectors
OLMO2 = Family("olmo2", ("olmo2",), "RMS", "model.layers", "model.embed_tokens", "model.norm", "mlp.down_proj",
               attn_post_norm="post_attention_layernorm", mlp_post_norm="post_feedforward_layernorm")
FAMILIES = (GPT2, LLAMA, QWEN3, NEOX, PHI, GEMMA2, GEMMA3, OLMO2)


# --- which family -------------------------------------------------------------------------------------------------

def family_name(model_type: str) -> str | None:
    """The family name (`gpt2`, `llama`, ...) of a config.json `model_type` this module handles, else None (no
    torch needed)."""
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


def writers(layer: nn.Module, fam: Family) -> tuple[nn.Module, nn.Module]:
    """(attention's, MLP's) last module before the residual: each one's output (the first element of a tuple) is
    exactly what that sublayer adds to the residual stream. The post-norm where the family has one (Gemma 2/3,
    OLMo-2), else the attention module and the MLP's output projection (the dropouts after them are the identity
    in eval mode)."""
    attn_post, mlp_post = post_norms(layer, fam)
    return (attention(layer, fam) if attn_post is None else attn_post,
            mlp_out(layer, fam) if mlp_post is None else mlp_post)


def attn_out(layer: nn.Module, fam: Family) -> nn.Module:
    """The attention's output projection (c_proj, o_proj, dense): its input is every head's z, side by side."""
    return module(layer, fam.attn_out)


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
    act = next((getattr(inner, n) for n in ("act", "act_fn", "activation_fn") if hasattr(inner, n)), None)
    if act is None:
        raise ArchitectureError(f"MLP {type(inner).__name__}: no activation module (act / act_fn / activation_fn)")
    if "gate" in parts:
        gate = parts["gate"].original_component
        return (lambda h: act(gate(h)) * up(h)), out
    return (lambda h: act(up(h))), out


# --- weight processing for every family but GPT-2 -----------------------------------------------------------------

def gain(norm: nn.Module, fam: Family) -> Tensor:
    """What a norm multiplies its normalized input by: weight, or offset + weight (Gemma's 1 + w)."""
    return norm.weight.float() + fam.gain_offset


def post_norms(layer: nn.Module, fam: Family) -> tuple[nn.Module | None, nn.Module | None]:
    """(attention's, MLP's) post-norm of a layer: the norms between each sublayer and the residual, or None."""
    return tuple(None if path is None else module(layer, path) for path in (fam.attn_post_norm, fam.mlp_post_norm))


def frozen_post_norm(norm: nn.Module, fam: Family, x: Float[Tensor, "... d_model"]) -> Float[Tensor, "... d_model"]:
    """What a post-norm (RMSNorm) multiplies each component of its input by when its scale is frozen at input x's:
    gain / sqrt(mean(x²) + eps). Then norm(x) = factor ⊙ x, and the norm is linear in any split of x (the direct
    effects' convention, docs/science.md "Direct effect")."""
    if fam.norm != "RMS":
        raise ArchitectureError(f"{fam.name}: a frozen post-norm is defined for RMSNorm only")
    x = x.float()
    return gain(norm, fam).to(x.device) / (x.pow(2).mean(-1, keepdim=True) + eps_of(norm)).sqrt()


def _fold_into(linear: nn.Module, g: Tensor, b: Tensor | None) -> None:
    """linear(g ⊙ x + b) = linear'(x): W' = W·diag(g), b' = bias + W·b (nn.Linear weight is (out, in))."""
    from torch import nn

    if not isinstance(linear, nn.Linear):
        raise ArchitectureError(f"cannot fold a norm into {type(linear).__name__} (expected nn.Linear)")
    if b is not None and bool(b.any()):
        shift = (linear.weight.float() @ b.float()).to(linear.weight.dtype)
        if linear.bias is None:
            linear.bias = nn.Parameter(shift, requires_grad=False)
        else:
            linear.bias += shift
    linear.weight.copy_((linear.weight.float() * g).to(linear.weight.dtype))


def _unit_norm(norm: nn.Module, fam: Family) -> None:
    """Make a norm's affine part the identity: gain 1 (weight 1 − offset), bias 0."""
    norm.weight.fill_(1.0 - fam.gain_offset)
    if getattr(norm, "bias", None) is not None:
        norm.bias.zero_()


def fold_norms(model) -> None:
    """Fold the gain (and LayerNorm's bias) of every norm that READS the residual into the linear layers reading its
    output, and the final norm's into the unembedding, in place; the norms become the identity map after
    normalising. Exact: the logits are unchanged up to float rounding. The unembedding is untied from the embedding
    first; under LayerNorm (GPT-NeoX, Phi) W_U is also centred over d_model, exact because the final norm's output
    has zero mean, and the final bias goes into b_U (created if the unembedding has none).

    Not folded: post-norms (Gemma 2/3, OLMo-2), which sit between a sublayer and the residual (their output's scale
    is their input's RMS, whatever the projection before them: no gain can move into a weight), and the q/k norms
    inside the attention modules (Qwen3, Gemma 3, OLMo-2), which act on queries and keys, not on the residual.
    GPT-2 gets TransformerLens' processing instead (fold_layer_norms)."""
    import torch

    hf = hf_model(model)
    fam = family_of(hf, "norm folding")
    with torch.no_grad():
        for layer in layers(hf, fam):
            for norm_name, readers in fam.norm_readers.items():
                norm = module(layer, norm_name)
                g, b = gain(norm, fam), getattr(norm, "bias", None)
                for reader in readers:
                    _fold_into(module(layer, reader), g, b)
                _unit_norm(norm, fam)
        final, head = module(hf, fam.final_norm), module(hf, fam.unembed)
        w = head.weight.float()
        bias = getattr(final, "bias", None)
        if bias is not None:
            shift = w @ bias.float()
            head.bias = torch.nn.Parameter(shift if head.bias is None else head.bias.float() + shift,
                                           requires_grad=False)
        w = w * gain(final, fam)
        if fam.centres:
            w = w - w.mean(1, keepdim=True)
        head.weight = torch.nn.Parameter(w.to(head.weight.dtype), requires_grad=head.weight.requires_grad)  # untied
        hf.config.tie_word_embeddings = False
        _unit_norm(final, fam)


def fold_rms_norms(model) -> None:
    """fold_norms for an RMSNorm model (kept for callers that name it)."""
    fam = family_of(hf_model(model), "RMSNorm folding")
    if fam.norm != "RMS":
        raise ArchitectureError(f"model type {model_type(model)!r}: fold_rms_norms folds RMSNorm only")
    fold_norms(model)


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
