"""Activation patching of a clean/corrupted prompt pair (docs/science.md): layer × position, exact single neurons, top-k
neurons jointly, and attribution patching — with ONE fast engine underneath.

Every patch this module makes adds a difference to the corrupted run's residual stream at one point of one layer:
patching `resid_pre` / `attn_out` / `mlp_out` at (L, p) adds clean − corrupted at position p to the residual before
block L / after its attention / after its MLP; patching neuron n of layer L (its `hook_post` at every position)
adds Δact[p, n] · W_out[L, n] after block L's MLP. So one engine, `patched_logit_diff`, runs many such patched
copies of the corrupted prompt on the batch dimension, from that point of layer L on only, and only at the
positions from the first clean/corrupted difference on (earlier positions are the same in both runs: their keys
and values are taken from the cached corrupted run), and reads only the two logits LD needs. TransformerBridge
has no real `start_at_layer` (it still runs the blocks before), so `SuffixModel` runs the blocks itself with the
model's own modules (its norms and MLP projections, and, in every family, its own attention modules fed a cache of
the prefix) and is tested against a full hooked forward on every family of anneuron.architecture. Where a neuron's
write is not linear in it (a post-norm after the MLP: Gemma 2/3, OLMo-2), neuron patches move the neurons themselves
(point `act`) and the MLP's output projection and post-norm are rerun; head patches (anneuron.experiments.heads)
always move the heads' z themselves (point `z`, the attention output projection's input), and the projection, the
post-norm (if any) and the block's MLP (unless it is parallel) are rerun. The wrappers below only say which
differences to add.

Precision (docs/science.md "Precision"): float32 by default. A bridge whose body was cast to bfloat16/float16
(anneuron.models.load_model with that dtype) runs every forward pass (the cached runs, the backward of attribution,
the patched copies) in that precision, but every LD is read in float32: the final residual is upcast and goes
through float32 copies of the final norm and the unembedding (anneuron.models.float32_head), so the logits, LD,
softmax and `unembed_direction` never pass through low-precision logits. ENGINE_TOLERANCE is check_engine's limit
per body dtype.

Shapes: T prompt length, S = T − start (the recomputed suffix), B patched copies, L layers.
"""

from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass
from typing import Callable, Literal, Sequence

import torch
from jaxtyping import Float, Int
from torch import Tensor
from tqdm.auto import tqdm
from transformer_lens import ActivationCache

from anneuron import architecture as A
from anneuron import models as M

log = logging.getLogger(__name__)

Point = Literal["pre", "mid", "post", "act", "z"]
COMPONENTS: dict[str, Point] = {"resid_pre": "pre", "attn_out": "mid", "mlp_out": "post"}
HOOKS = {"resid_pre": "blocks.{l}.hook_resid_pre", "attn_out": "blocks.{l}.hook_attn_out",
         "mlp_out": "blocks.{l}.hook_mlp_out", "post": "blocks.{l}.mlp.hook_post", "z": "blocks.{l}.attn.hook_z"}

# check_engine's tolerance per dtype of the bridge's body: the largest |fast − full hooked forward| in LD, relative
# to PairRuns.ld_scale (rounding noise in LD scales with the logits, not with LD). Both sides compute the same LD in
# a different order, so they differ by rounding only. Measured (tests/experiments/test_precision.py; 4-layer demo and
# random models with a real model's logit scale): float32 <= 1.8e-7 (the bound: ~500x, still ~1e-4 x 20 = 2e-3 logits
# for GPT-2 Large, far below any wrong block); bfloat16 <= 2.9e-3 = 0.74u and float16 <= 3.8e-4 = 0.78u (u: unit
# roundoff, 2^-8 / 2^-11); a 36-layer model accumulates ~sqrt(36/4) = 3x that, and the bounds (5u, 10u) cover it
# twice.
ENGINE_TOLERANCE = {torch.float32: 1e-4, torch.bfloat16: 2e-2, torch.float16: 5e-3}


# --- the pair and its two cached runs -----------------------------------------------------------------------------

@dataclass(frozen=True)
class PromptPair:
    """Token ids of a clean and a corrupted prompt of equal length (BOS first) and the two tokens LD compares."""

    clean: Int[Tensor, "1 T"]
    corrupted: Int[Tensor, "1 T"]
    answer: int
    wrong: int

    def __post_init__(self):
        if self.clean.shape != self.corrupted.shape:
            raise ValueError(f"clean {tuple(self.clean.shape)} and corrupted {tuple(self.corrupted.shape)} differ")
        if bool((self.clean == self.corrupted).all()):
            raise ValueError("clean and corrupted prompts are the same tokens: nothing to patch")

    @property
    def start(self) -> int:
        """First position where the prompts differ: every earlier position is identical in both runs."""
        return int((self.clean[0] != self.corrupted[0]).nonzero()[0])

    @property
    def n_pos(self) -> int:
        return int(self.clean.shape[1])


@dataclass
class Run:
    """What one forward of one prompt leaves behind (batch dimension dropped)."""

    ld: float  # from the float32 logits
    logits: Float[Tensor, "d_vocab"]  # at the last position, float32 (from the float32 head)
    acts: dict[str, Tensor]  # resid_pre/attn_out/mlp_out: [L, T, d_model]; post: [L, T, d_mlp]; z: [L, T, H, d_head]
    grad_post: Float[Tensor, "L T d_mlp"] | None = None  # ∂LD/∂hook_post (corrupted run only)
    cache: ActivationCache | None = None  # the clean run's, for the logit lens


def logit_diff(logits: Float[Tensor, "... T d_vocab"], answer: int, wrong: int) -> Float[Tensor, "..."]:
    """LD = logit(answer) − logit(wrong) at the last position."""
    return logits[..., -1, answer] - logits[..., -1, wrong]


def restored(ld_patched: Tensor, ld_clean: float, ld_corrupted: float) -> Tensor:
    """Patch score (LD_patched − LD_corr) / (LD_clean − LD_corr): 1 = fully restored, 0 = no effect."""
    return (ld_patched - ld_corrupted) / (ld_clean - ld_corrupted)


def unembed_direction(bridge, answer: int, wrong: int) -> tuple[Float[Tensor, "d_model"], float]:
    """W_U[:, answer] − W_U[:, wrong] (float32) and b_U[answer] − b_U[wrong], from the bridge's unembedding (its
    float32 copy when the body is low precision): LD = ln_final(resid) · direction + bias."""
    return M.float32_head(bridge).direction(answer, wrong)


def final_logits(bridge, resid: Float[Tensor, "... d_model"]) -> Float[Tensor, "... d_vocab"]:
    """Float32 logits from the residual before the final norm (anneuron.models.Head.logits)."""
    return M.float32_head(bridge).logits(resid)


def final_hook(n_layers: int) -> str:
    """The hook whose output is the final norm's input."""
    return f"blocks.{n_layers - 1}.hook_resid_post"


def hook_names(n_layers: int) -> dict[str, list[str]]:
    return {k: [h.format(l=l) for l in range(n_layers)] for k, h in HOOKS.items()}


def run_prompt(bridge, tokens: Int[Tensor, "1 T"], answer: int, wrong: int, grad: bool = False) -> Run:
    """One forward keeping every layer's resid_pre, attn_out, mlp_out and hook_post.

    grad=False: through `run_with_cache`, whose ActivationCache (with resid_mid, the final resid_post and
    ln_final's scale) also serves the logit lens. grad=True: through hooks, plus one backward of LD to every
    hook_post (all that attribution patching needs). Either way the logits at the last position, and LD, are
    computed in float32 from the final residual (final_logits), whatever the body's dtype."""
    n = bridge.cfg.n_layers
    names = hook_names(n)
    flat = [name for ns in names.values() for name in ns]
    final = final_hook(n)
    if not grad:
        wanted = set(flat) | {f"blocks.{l}.hook_resid_mid" for l in range(n)}
        wanted |= {final, "ln_final.hook_scale"}
        with torch.no_grad():
            _, cache = bridge.run_with_cache(tokens, names_filter=lambda name: name in wanted)
            logits = final_logits(bridge, cache[final][0, -1])
        acts = {k: torch.stack([cache[name][0] for name in ns]) for k, ns in names.items()}
        return Run(float(logits[answer] - logits[wrong]), logits, acts, None, cache)

    store: dict[str, Tensor] = {}

    def keep(act: Tensor, hook) -> None:
        store[hook.name] = act

    def leaf(act: Tensor, hook) -> Tensor:  # grads flow whatever the parameters' requires_grad says
        return act.detach().requires_grad_(True)

    absolute = getattr(bridge.cfg, "positional_embedding_type", "standard") == "standard"
    leaves = ["hook_embed"] + (["hook_pos_embed"] if absolute else [])  # (RoPE models: rotary_emb, not a leaf)
    hooks = [(name, leaf) for name in leaves] + [(name, keep) for name in flat + [final]]
    with torch.enable_grad():
        bridge.run_with_hooks(tokens, fwd_hooks=hooks)
        by_name = _canonical(store, flat + [final])
        logits = final_logits(bridge, by_name[final][0, -1])
        ld = logits[answer] - logits[wrong]
        grads = torch.autograd.grad(ld, [by_name[name] for name in names["post"]])
    acts = {k: torch.stack([by_name[name][0] for name in ns]).detach() for k, ns in names.items()}
    grad_post = torch.stack([g[0] for g in grads]).detach()
    return Run(float(ld.detach()), logits.detach(), acts, grad_post)


def _canonical(store: dict[str, Tensor], names: list[str]) -> dict[str, Tensor]:
    """Inside a hook the bridge reports canonical names (hook_mlp_out fires as blocks.L.mlp.hook_out)."""
    aliases = {"hook_resid_pre": "hook_in", "hook_attn_out": "attn.hook_out", "hook_mlp_out": "mlp.hook_out",
               "hook_resid_post": "hook_out"}
    out = {}
    for n in names:
        if n in store:
            out[n] = store[n]
            continue
        prefix, last = n.split(".", 2)[:2], n.split(".", 2)[2]
        canon = ".".join(prefix + [aliases.get(last, last)])
        if canon not in store:
            raise KeyError(f"hook {n} (as {canon}) did not fire; got {sorted(store)[:8]}...")
        out[n] = store[canon]
    return out


@dataclass
class PairRuns:
    """The clean and corrupted runs of a pair: everything every patching method below starts from."""

    pair: PromptPair
    clean: Run
    corrupted: Run

    @property
    def ld_clean(self) -> float:
        return self.clean.ld

    @property
    def ld_corrupted(self) -> float:
        return self.corrupted.ld

    def score(self, ld_patched: Tensor) -> Tensor:
        return restored(ld_patched, self.ld_clean, self.ld_corrupted)

    @property
    def ld_scale(self) -> float:
        """What an LD difference is judged against: max(1, |LD_clean|, |LD_corrupted|, the clean prompt's largest
        |logit − mean logit| at the last position). Rounding noise in LD is proportional to the logits' magnitude,
        not to LD: GPT-2 Large's a/an LD_clean is ~1 while its logits reach ~20."""
        logits = self.clean.logits.float()
        spread = float((logits - logits.mean()).abs().max())
        return max(1.0, abs(self.ld_clean), abs(self.ld_corrupted), spread)


def run_pair(bridge, pair: PromptPair, grad: bool = True) -> PairRuns:
    """One clean forward, one corrupted forward (and backward, for attribution)."""
    return PairRuns(pair, run_prompt(bridge, pair.clean, pair.answer, pair.wrong),
                    run_prompt(bridge, pair.corrupted, pair.answer, pair.wrong, grad=grad))


# --- the engine ---------------------------------------------------------------------------------------------------

class _PrefixCache:
    """The cache protocol Hugging Face attention modules call (`update(k, v, layer_idx)` -> every key and value),
    for one layer: the keys/values of the prefix positions (after RoPE, for rotary models), [1, H_kv, P, d_head]
    each, held once and put before each patched copy's suffix keys/values. While `recording`, it keeps what it is
    given instead (computing the prefix); with no prefix (start = 0) it adds nothing."""

    def __init__(self):
        self.kv: tuple[Tensor, Tensor] | None = None
        self.recording = False

    def update(self, k: Tensor, v: Tensor, *args, **kwargs) -> tuple[Tensor, Tensor]:
        if self.recording:
            self.kv = (k, v)
        if self.recording or self.kv is None:
            return k, v
        kp, vp = self.kv
        b = k.shape[0]
        if kp.shape[0] > 1:  # one prefix per pair (anneuron.experiments.tasks): copies are copy-major, pair-minor
            kp, vp = kp.repeat(b // kp.shape[0], 1, 1, 1), vp.repeat(b // vp.shape[0], 1, 1, 1)
        return (torch.cat([kp.expand(b, -1, -1, -1), k], dim=2), torch.cat([vp.expand(b, -1, -1, -1), v], dim=2))


def sliding_window(config, layer: int) -> int | None:
    """The number of keys a query of this layer sees (itself included), or None for full causal attention: the
    config's `sliding_window` on the layers `layer_types` marks `sliding_attention` (Gemma 2/3, Qwen2/3), on every
    layer when it has no `layer_types` (Mistral). Hugging Face's rule: key j is visible from query i iff
    i − window < j <= i."""
    window = getattr(config, "sliding_window", None)
    types = getattr(config, "layer_types", None)
    if window is None or (types is not None and types[layer] != "sliding_attention"):
        return None
    return int(window)


class _CachedAttention:
    """Every family's attention, through the model's own attention modules (the Hugging Face modules the bridge
    wraps, GPT2Attention, LlamaAttention, GPTNeoXAttention, Gemma2Attention, ..., with whatever they do: scaling,
    (partial) RoPE, grouped-query heads, q/k norms, soft-capped scores), run on the S suffix positions with a causal
    mask over prefix + suffix keys (narrowed to the layer's sliding window, if it has one) and a cache holding the
    prefix keys/values, computed once from the corrupted run. Rotary models get the position ids start..T−1 (and
    Gemma 3 its per-layer-type rotary frequencies); absolute positions (GPT-2) are already in the residual. The
    family's pre-norm (if any) is applied first, its post-norm (if any) after."""

    def __init__(self, bridge, start: int, n_suffix: int):
        fam = A.family_of(bridge)
        config = A.hf_model(bridge).config
        self.start = start
        self.norm = [_optional(layer, fam.attn_norm) for layer in A.layers(bridge, fam)]
        self.post = [A.post_norms(layer, fam)[0] for layer in A.layers(bridge, fam)]
        self.attn = [blk.attn.original_component for blk in bridge.blocks]
        self.out = [A.attn_out(layer, fam) for layer in A.layers(bridge, fam)]
        self.cache_kwarg = fam.cache_kwarg
        rotary = getattr(bridge.cfg, "positional_embedding_type", "standard") == "rotary"
        self.rotary = bridge.rotary_emb.original_component if rotary else None
        typed = self.rotary is not None and "layer_type" in inspect.signature(self.rotary.forward).parameters
        self.layer_types = config.layer_types if typed else None
        dtype, device = M.body_dtype(bridge), next(bridge.parameters()).device
        q = torch.arange(start, start + n_suffix, device=device)[:, None]  # absolute query positions
        k = torch.arange(start + n_suffix, device=device)[None, :]
        masks: dict[int | None, Tensor] = {}
        self.masks = []
        for l in range(len(self.attn)):
            window = sliding_window(config, l)
            if window not in masks:
                hidden = (k > q) if window is None else (k > q) | (k <= q - window)
                masks[window] = torch.zeros(1, 1, n_suffix, start + n_suffix, dtype=dtype,
                                            device=device).masked_fill(hidden, torch.finfo(dtype).min)  # additive
            self.masks.append(masks[window])

    def _run(self, l: int, x: Tensor, first: int, cache: _PrefixCache, mask: Tensor | None) -> Tensor:
        kwargs = {self.cache_kwarg: cache}
        if self.rotary is not None:
            pos = torch.arange(first, first + x.shape[1], device=x.device)[None]
            typed = () if self.layer_types is None else (self.layer_types[l],)
            kwargs["position_embeddings"] = self.rotary(x, pos, *typed)
        h = x if self.norm[l] is None else self.norm[l](x)
        out = self.attn[l](h, attention_mask=mask, **kwargs)[0]
        return out if self.post[l] is None else self.post[l](out)

    def cache(self, l: int, resid: Float[Tensor, "1 P d_model"]) -> _PrefixCache:
        """Layer l's cache of the prefix positions, whose residual before block l is `resid`."""
        cache = _PrefixCache()
        if resid.shape[1]:
            cache.recording = True
            self._run(l, resid, 0, cache, None)  # (its output is not needed: only what reaches the cache)
            cache.recording = False
        return cache

    def __call__(self, l: int, x: Float[Tensor, "B S d_model"], cache: _PrefixCache) -> Float[Tensor, "B S d_model"]:
        """What the attention of block l writes to the residual (after its post-norm, if any)."""
        return self._run(l, x, self.start, cache, self.masks[l])

    def write(self, l: int, z: Float[Tensor, "B S d_z"]) -> Float[Tensor, "B S d_model"]:
        """What the attention of block l writes to the residual given its heads' z side by side (the output
        projection's input, d_z = H · d_head): the projection, then the post-norm, if any."""
        out = self.out[l](z)
        return out if self.post[l] is None else self.post[l](out)


def _optional(layer, path: str | None):
    """A module of a layer, or None where the family has none there."""
    return None if path is None else A.module(layer, path)


def suffix_base(run: Run, start: int) -> dict[Point, Float[Tensor, "L S _"]]:
    """A run's value on the suffix positions at each point of each layer: the residual (pre, mid, post), the
    neurons (act) and the heads' z side by side (z, as the attention output projection reads them)."""
    pre, attn, mlp = (run.acts[k][:, start:] for k in ("resid_pre", "attn_out", "mlp_out"))
    return {"pre": pre, "mid": pre + attn, "post": pre + attn + mlp, "act": run.acts["post"][:, start:],
            "z": run.acts["z"][:, start:].flatten(-2)}


class SuffixModel:
    """Blocks L.. of the bridge's model, run on the suffix positions start..T−1 of many copies of the corrupted
    prompt, ending in the two unembedding columns of LD.

    Keys and values of the earlier positions come from the cached corrupted residual (they are the same in every
    patched copy); the last block runs its MLP at the last position only, and LD is read in float32 (the final
    residual upcast, the float32 final norm and unembedding, the final soft-cap where the family has one). What a
    block does is the family's (anneuron.architecture.Family): its pre-norms (or none: OLMo-2), its post-norms
    (Gemma 2/3, OLMo-2), attention and MLP in sequence or in parallel from one residual (GPT-NeoX, Phi); attention
    and MLP are the model's own modules (_CachedAttention, architecture.bridge_mlp). A family anneuron.architecture
    does not know is refused in one line rather than computed wrongly.

    Points: `pre` / `mid` / `post` are the residual before block L, after its attention, after its MLP (a parallel
    block's `mid` = resid_pre + attn_out, the MLP's input being resid_pre); `act` is the MLP's neurons (hook_post):
    a copy's neurons are run through the rest of the MLP (output projection, post-norm) and on, which stays exact
    where the write is not linear in one neuron (a post-norm rescales it by the whole MLP output's RMS); `z` is the
    heads' z (hook_z, heads side by side: the input of the attention's output projection), run through the
    projection and post-norm onto the unpatched resid_pre, then as `mid`.
    """

    def __init__(self, bridge, corrupted: Run, start: int, answer: int, wrong: int):
        fam = A.family_of(bridge, "exact patching (SuffixModel: blocks, attention, MLP)")
        layers = A.layers(bridge, fam)
        self.n_layers = bridge.cfg.n_layers
        self.start = start
        self.family = fam
        self.parallel = fam.is_parallel(A.hf_model(bridge).config)
        self.nonlinear_write = fam.mlp_post_norm is not None  # a neuron's write passes a norm of the MLP output
        self.attention = _CachedAttention(bridge, start, corrupted.acts["resid_pre"].shape[1] - start)
        self.blocks = list(bridge.blocks)
        self.mlps = [A.bridge_mlp(blk) for blk in self.blocks]
        self.mlp_norms = [_optional(layer, fam.mlp_norm) for layer in layers]
        self.mlp_posts = [A.post_norms(layer, fam)[1] for layer in layers]
        self.head = M.float32_head(bridge)
        self.ln_final = self.head.norm  # float32
        self.direction, self.bias = unembed_direction(bridge, answer, wrong)
        self.columns, self.column_bias = self.answer_columns([answer], [wrong])  # [1, 2, d_model], [1, 2]
        with torch.no_grad():
            self.caches = [self.attention.cache(l, corrupted.acts["resid_pre"][l, :start][None])
                           for l in range(self.n_layers)]
        self.base = suffix_base(corrupted, start)
        self.mlp_base = corrupted.acts["mlp_out"][:, start:]  # a parallel block's MLP write, unchanged at `mid`

    def answer_columns(self, answers: Sequence[int], wrongs: Sequence[int]
                       ) -> tuple[Float[Tensor, "P 2 d_model"], Float[Tensor, "P 2"]]:
        """The float32 unembedding columns (and biases) of each pair's answer and wrong token: a soft-capped LD needs
        both logits, the cap not being linear."""
        unembed = self.head.unembed
        ids = torch.tensor([list(aw) for aw in zip(answers, wrongs)], device=unembed.weight.device)
        bias = unembed.bias[ids].detach().float() if unembed.bias is not None else torch.zeros(ids.shape,
                                                                                              device=ids.device)
        return unembed.weight[ids].detach().float(), bias

    def _unpatched(self, key: str, l: int, x: Tensor) -> Tensor:
        """The corrupted run's residual at point `key` of block l (or its MLP write, `mlp`) on x's positions, to
        add to x (PairsModel: one per pair)."""
        return (self.mlp_base if key == "mlp" else self.base[key])[l][-x.shape[1]:]

    def w_out(self, layer: int) -> Float[Tensor, "d_mlp d_model"]:
        """What each neuron of the layer writes per unit of activation (a view of the output projection; before
        the post-norm, where there is one)."""
        return A.neurons_to_model(self.mlps[layer][1])

    def _write(self, l: int, neurons: Float[Tensor, "B Q d_mlp"]) -> Float[Tensor, "B Q d_model"]:
        """What block l's MLP adds to the residual, from its neurons."""
        out = self.mlps[l][1](neurons)
        return out if self.mlp_posts[l] is None else self.mlp_posts[l](out)

    def _mlp(self, l: int, x: Float[Tensor, "B Q d_model"]) -> Float[Tensor, "B Q d_model"]:
        h = x if self.mlp_norms[l] is None else self.mlp_norms[l](x)
        return self._write(l, self.mlps[l][0](h))

    def _block(self, l: int, x: Tensor, point: Point) -> Tensor:
        """Residual (neurons at `act`, z at `z`) at `point` of block l (suffix positions) -> residual after block
        l."""
        last = l == self.n_layers - 1  # only the last position reaches LD
        if point == "z":  # the attention's write from the heads' z, then on as from `mid`
            x, point = self._unpatched("pre", l, x) + self.attention.write(l, x), "mid"
        if point == "act":
            x = x[:, -1:] if last else x
            return self._unpatched("mid", l, x) + self._write(l, x)
        h = x  # the block's input: what a parallel block's MLP reads
        if point == "pre":
            x = x + self.attention(l, x, self.caches[l])
        if last:
            x, h = x[:, -1:], h[:, -1:]
        if point == "pre":
            x = x + self._mlp(l, h if self.parallel else x)
        elif point == "mid":
            x = x + (self._unpatched("mlp", l, x) if self.parallel else self._mlp(l, x))
        return x

    def _ld(self, x: Float[Tensor, "B d_model"]) -> Float[Tensor, "B"]:
        h = self.ln_final(x.float())
        if self.head.softcap is None:
            return h @ self.direction + self.bias
        z = self.head.capped(h @ self.columns[0].T + self.column_bias[0])
        return z[:, 0] - z[:, 1]

    @torch.no_grad()
    def final_resid(self, resid: Float[Tensor, "B S d_model"], layer: int, point: Point) -> Float[Tensor, "B d_model"]:
        """Each copy's final residual at the last position (float32), given its residual (neurons at `act`, z at
        `z`) on the suffix at `point` of `layer`."""
        x = self._block(layer, resid, point)
        for l in range(layer + 1, self.n_layers):
            x = self._block(l, x, "pre")
        return x[:, -1].float()

    @torch.no_grad()
    def logit_diff(self, resid: Float[Tensor, "B S d"], layer: int, point: Point) -> Float[Tensor, "B"]:
        """LD of each copy, given its residual (neurons at `act`, z at `z`) on the suffix at `point` of `layer`."""
        return self._ld(self.final_resid(resid, layer, point))

    def neuron_patches(self, layer: int, d_act: Float[Tensor, "S d_mlp"],
                       idx: Int[Tensor, "n"]) -> tuple[Point, Callable[[slice], Tensor]]:
        """(point, delta) for patched_logit_diff: copy i has neuron idx[i] moved by d_act. A linear write adds
        Δact·W_out after the MLP (`post`); a nonlinear one (post-norm) moves the neuron itself (`act`), and the MLP's
        output projection and post-norm are rerun."""
        if not self.nonlinear_write:
            w_out = self.w_out(layer)
            return "post", lambda sl: _neuron_deltas(d_act, w_out, idx[sl])

        def delta(sl: slice) -> Tensor:
            i = idx[sl]
            d = torch.zeros(len(i), *d_act.shape, dtype=d_act.dtype, device=d_act.device)
            d[torch.arange(len(i), device=d.device), :, i] = d_act[:, i].T
            return d

        return "act", delta

    def group_patches(self, layer: int, d_act: Float[Tensor, "S d_mlp"],
                      groups: Sequence[Sequence[int]]) -> tuple[Point, Callable[[slice], Tensor]]:
        """(point, delta) for patched_logit_diff: copy i has the neurons of groups[i] moved together."""
        index = [torch.as_tensor(list(g), dtype=torch.long, device=d_act.device) for g in groups]
        if not self.nonlinear_write:
            w_out = self.w_out(layer)
            return "post", lambda sl: torch.stack([d_act[:, g] @ w_out[g] for g in index[sl]])

        def delta(sl: slice) -> Tensor:
            d = torch.zeros(len(index[sl]), *d_act.shape, dtype=d_act.dtype, device=d_act.device)
            for i, g in enumerate(index[sl]):
                d[i][:, g] = d_act[:, g]
            return d

        return "act", delta


def patched_logit_diff(
    model: SuffixModel,
    layer: int,
    point: Point,
    n: int,
    delta: Callable[[slice], Float[Tensor, "b S d_model"]],
    *,
    batch_size: int,
    desc: str | None = None,
) -> Float[Tensor, "n"]:
    """THE engine: LD of n patched copies of the corrupted prompt, copy i having `delta(slice)[i]` added to its
    value at `point` of `layer` (residual, neurons or z; suffix positions), `batch_size` copies per forward."""
    base = model.base[point][layer]
    out = []
    steps = range(0, n, batch_size)
    for i in tqdm(steps, desc=desc, disable=desc is None or len(steps) < 4, leave=False):
        d = delta(slice(i, min(i + batch_size, n)))
        out.append(model.logit_diff(base + d.to(base.dtype), layer, point))
    return torch.cat(out).float() if out else torch.zeros(0)


# --- what to add: the named patching methods ----------------------------------------------------------------------

def layer_position_scores(
    model: SuffixModel, runs: PairRuns, component: str, *, batch_size: int
) -> Float[Tensor, "L T"]:
    """Patch `component` (resid_pre/attn_out/mlp_out) at each (layer, position) with its clean value. Positions
    before the first difference are identical in both runs and score 0."""
    start, n_pos = model.start, runs.pair.n_pos
    s = n_pos - start
    diff = runs.clean.acts[component][:, start:] - runs.corrupted.acts[component][:, start:]  # [L, S, d]
    scores = torch.zeros(model.n_layers, n_pos)
    for layer in range(model.n_layers):
        def delta(sl: slice, layer=layer) -> Tensor:
            pos = torch.arange(sl.start, sl.stop, device=diff.device)
            d = torch.zeros(len(pos), s, diff.shape[-1], dtype=diff.dtype, device=diff.device)
            d[torch.arange(len(pos), device=diff.device), pos] = diff[layer, pos]
            return d

        ld = patched_logit_diff(model, layer, COMPONENTS[component], s, delta, batch_size=batch_size)
        scores[layer, start:] = runs.score(ld).cpu()
    return scores


def neuron_delta(runs: PairRuns, layer: int, start: int) -> Float[Tensor, "S d_mlp"]:
    """Clean − corrupted hook_post of one layer on the positions start..T−1."""
    return runs.clean.acts["post"][layer, start:] - runs.corrupted.acts["post"][layer, start:]


def _neuron_deltas(d_act: Float[Tensor, "S d_mlp"], w_out: Float[Tensor, "d_mlp d_model"],
                   idx: Int[Tensor, "b"]) -> Float[Tensor, "b S d_model"]:
    """What patching each neuron alone adds after its layer's MLP: Δact[:, n] ⊗ W_out[n]."""
    return d_act[:, idx].T[:, :, None] * w_out[idx][:, None, :]


def neuron_scores(
    model: SuffixModel,
    runs: PairRuns,
    layer: int,
    neurons: Sequence[int] | Tensor | None = None,
    *,
    batch_size: int,
) -> Float[Tensor, "n"]:
    """Exact patch score of each neuron (default: all of the layer): its hook_post at every position set to its
    clean value. Neurons whose clean and corrupted activations are equal score exactly 0 and are not run."""
    d_act = neuron_delta(runs, layer, model.start)  # [S, d_mlp]
    neurons = torch.arange(d_act.shape[1]) if neurons is None else torch.as_tensor(neurons, dtype=torch.long)
    scores = torch.zeros(len(neurons))
    moved = (d_act[:, neurons] != 0).any(0).cpu()
    todo = neurons[moved].to(d_act.device)
    point, delta = model.neuron_patches(layer, d_act, todo)
    ld = patched_logit_diff(model, layer, point, len(todo), delta, batch_size=batch_size, desc=f"neurons L{layer}")
    scores[moved] = runs.score(ld).cpu()
    return scores


def joint_scores(
    model: SuffixModel, runs: PairRuns, layer: int, groups: Sequence[Sequence[int]], *, batch_size: int
) -> Float[Tensor, "n_groups"]:
    """Patch score of each group of neurons of one layer patched together (every position, clean values)."""
    point, delta = model.group_patches(layer, neuron_delta(runs, layer, model.start), groups)
    return runs.score(patched_logit_diff(model, layer, point, len(groups), delta, batch_size=batch_size)).cpu()


def attribution_scores(runs: PairRuns) -> Float[Tensor, "L d_mlp"]:
    """Attribution patching: Σ_pos (clean − corrupted hook_post) · ∂LD/∂hook_post (corrupted run), as a fraction
    of LD_clean − LD_corrupted — the first-order estimate of every neuron's exact score at once."""
    if runs.corrupted.grad_post is None:
        raise ValueError("attribution needs the corrupted run's gradients (run_pair(..., grad=True))")
    d = runs.clean.acts["post"].float() - runs.corrupted.acts["post"].float()
    return ((d * runs.corrupted.grad_post.float()).sum(1) / (runs.ld_clean - runs.ld_corrupted)).cpu()


# --- references: the slow, obviously right way -------------------------------------------------------------------

def hooked_logit_diff(bridge, tokens: Int[Tensor, "1 T"], answer: int, wrong: int, hooks: list) -> float:
    """LD of one full forward with hooks (what TransformerLens' patching helpers do for every single patch), read
    in float32 from the final residual as every LD here (final_logits)."""
    final: list[Tensor] = []
    with torch.no_grad():
        bridge.run_with_hooks(tokens, fwd_hooks=[*hooks, (final_hook(bridge.cfg.n_layers),
                                                          lambda x, hook: final.append(x))])
        logits = final_logits(bridge, final[-1][0, -1])
    return float(logits[answer] - logits[wrong])


def set_neurons_hook(clean_post: Float[Tensor, "T d_mlp"], neurons: Sequence[int]):
    """A hook_post hook setting these neurons to their clean values at every position."""
    idx = torch.as_tensor(list(neurons), dtype=torch.long)

    def hook(act: Tensor, hook) -> Tensor:
        act, i = act.clone(), idx.to(act.device)
        act[0, :, i] = clean_post[:, i].to(act.dtype)
        return act

    return hook


def naive_neuron_scores(bridge, runs: PairRuns, layer: int, neurons: Sequence[int]) -> Float[Tensor, "n"]:
    """One full forward per neuron (as the post and TransformerLens' helpers do): the reference and the baseline
    of the benchmark."""
    pair, name = runs.pair, HOOKS["post"].format(l=layer)
    lds = [hooked_logit_diff(bridge, pair.corrupted, pair.answer, pair.wrong,
                             [(name, set_neurons_hook(runs.clean.acts["post"][layer], [n]))]) for n in neurons]
    return runs.score(torch.tensor(lds, dtype=torch.float64)).float()


def check_engine(bridge, model: SuffixModel, runs: PairRuns, layer: int, neuron: int) -> float:
    """Largest difference between the engine and a full hooked forward, in LD relative to `runs.ld_scale`: the
    unpatched corrupted run, and one neuron patched. Cheap (one forward); run on every real model, where the
    tests cannot reach. Compare it with ENGINE_TOLERANCE[body dtype]."""
    pair = runs.pair
    base = float(model.logit_diff(model.base["pre"][0][None], 0, "pre")[0])
    d_act = neuron_delta(runs, layer, model.start)
    point, delta = model.neuron_patches(layer, d_act, torch.tensor([neuron], device=d_act.device))
    fast = float(patched_logit_diff(model, layer, point, 1, delta, batch_size=1)[0])
    hook = set_neurons_hook(runs.clean.acts["post"][layer], [neuron])
    slow = hooked_logit_diff(bridge, pair.corrupted, pair.answer, pair.wrong, [(HOOKS["post"].format(l=layer), hook)])
    return max(abs(base - runs.ld_corrupted), abs(fast - slow)) / runs.ld_scale
