"""The per-layer statistics (anneuron.stages.layer_stats) against a brute force, position by position: each row run
alone (no padding), every quantity recomputed in float64 (the logit lens by hand from the raw final norm's weights,
W_U, b_U and the soft-cap; the norm of each sublayer's write; the previous-five attention from the pattern).
GPT-2 (random LayerNorms) and the four tiny random Llamas read the raw TransformerBridge's hooks (hook_attn_out,
hook_mlp_out, hook_pattern); every other family (tests/family_models.py) the Hugging Face model itself, the writes
taken as differences of the residual stream (capture_hf), which the GPT-2 bridge reference cross-checks.
Tolerances: rtol 2e-4, atol 5e-5 (float32, batched and padded, against float64 row by row)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch
from family_models import *  # noqa: F401,F403 (session fixtures)
from llama_models import *  # noqa: F401,F403 (session fixtures)

from anneuron import architecture as A
from anneuron.demos.families import FAMILY_MODELS, WINDOW
from anneuron.models import load_hf, load_model
from anneuron.stages import layer_stats as S
from anneuron.stages.stream import ClusteredMean, take_rows

TEXTS = ["The quick brown fox jumps over the lazy dog. " * 3, "An apple a day keeps the doctor away, they say.",
         "When John and Mary went to the store, Mary gave a drink to John. " * 2, "Paris is the capital of France.",
         "I climbed up the pear tree and picked a pear. I climbed up the apple tree and picked an apple. " * 2]
MAX_TOKENS, LENS_TOKENS, SEED = 110, 55, 3  # 110 cuts a row short; half the positions get the lens


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    from conftest import write_token_shards

    return write_token_shards(TEXTS, tmp_path_factory.mktemp("stages-shards"), n_shards=2, seq_len=24)


def test_rows_stop_at_max_tokens(shards):
    rows = list(take_rows(shards, MAX_TOKENS))
    assert sum(len(r.tokens) for _, r in rows) == MAX_TOKENS
    assert len({len(r.tokens) for _, r in rows}) > 1  # a short row: the batches are padded
    everything = list(take_rows(shards, 10**9))
    assert [c for c, _ in rows] == [c for c, _ in everything][:len(rows)]
    assert rows[-1][1].tokens == everything[len(rows) - 1][1].tokens[:len(rows[-1][1].tokens)]


def test_clustered_mean_against_numpy():
    """Ratio mean and row-clustered standard error against the textbook formula on ragged rows with a large mean."""
    rng = np.random.default_rng(0)
    rows = [1e4 + rng.normal(size=n) + rng.normal() for n in rng.integers(1, 9, size=40)]
    cm = ClusteredMean(1)
    for lo in range(0, 40, 7):  # in batches of rows, padded
        part = rows[lo:lo + 7]
        width = max(map(len, part))
        values = torch.zeros(len(part), width, dtype=torch.float64)
        mask = torch.zeros(len(part), width, dtype=torch.bool)
        for b, r in enumerate(part):
            values[b, :len(r)], mask[b, :len(r)] = torch.as_tensor(r), True
        cm.add(0, values, mask)
    S_r, n_r = np.array([r.sum() for r in rows]), np.array([len(r) for r in rows], float)
    m = S_r.sum() / n_r.sum()
    se = np.sqrt(len(rows) / (len(rows) - 1) * ((S_r - m * n_r) ** 2).sum()) / n_r.sum()
    assert cm.mean()[0] == pytest.approx(m, rel=1e-12)
    assert cm.se()[0] == pytest.approx(se, rel=1e-6)
    one = ClusteredMean(1)  # one position per row: the usual s / √n
    x = rng.normal(size=50)
    one.add(0, torch.as_tensor(x)[:, None], torch.ones(50, 1, dtype=torch.bool))
    assert one.se()[0] == pytest.approx(x.std(ddof=1) / np.sqrt(50), rel=1e-9)


def test_previous_mass_against_a_loop():
    pattern = torch.softmax(torch.randn(2, 3, 9, 9), -1)
    got = S.previous_mass(pattern)
    for t in range(9):
        want = pattern[:, :, t, max(0, t - 5):t].sum(-1).mean(1)
        assert torch.allclose(got[:, t], want, atol=1e-6), t


def _by_hand_lens(x: torch.Tensor, x_final: torch.Tensor, head: Head):
    """(recomputed, post) log-probabilities of one residual, float64, from the final norm's formula written out:
    gain (Gemma: 1 + w), bias, centring under LayerNorm only, then W_U, b_U and the final soft-cap."""
    def centre(v):
        return v - v.mean() if head.kind == "LN" else v

    s, s_f = ((centre(v).pow(2).mean() + head.eps).sqrt() for v in (x, x_final))
    out = []
    for scale in (s, s_f):
        logits = head.W_U @ (centre(x) / scale * head.gain + head.bias) + head.b_U
        if head.cap is not None:
            logits = head.cap * torch.tanh(logits / head.cap)
        out.append(torch.log_softmax(logits, -1))
    return out


@dataclass
class Head:
    """The raw model's final norm and unembedding in float64, and its soft-cap."""

    kind: str
    eps: float
    gain: torch.Tensor
    bias: torch.Tensor | float
    W_U: torch.Tensor
    b_U: torch.Tensor
    cap: float | None

    @classmethod
    def of(cls, hf) -> "Head":
        fam = A.family_of(hf)
        norm, head = A.module(hf, fam.final_norm), A.module(hf, fam.unembed)
        W_U = head.weight.double()
        cap = getattr(hf.config, "final_logit_softcapping", None)
        return cls(fam.norm, A.eps_of(norm), A.gain(norm, fam).double(),
                   norm.bias.double() if getattr(norm, "bias", None) is not None else 0.0, W_U,
                   head.bias.double() if head.bias is not None else torch.zeros(len(W_U), dtype=torch.float64), cap)


def capture_bridge(bridge, toks: torch.Tensor) -> dict[str, torch.Tensor]:
    """One row through the raw TransformerBridge: its logits, and per layer (stacked) the residual after the
    block, hook_attn_out, hook_mlp_out and hook_pattern, in float64."""
    logits, cache = bridge.run_with_cache(toks)
    L = bridge.cfg.n_layers

    def stack(name):
        return torch.stack([cache[name.format(layer)][0] for layer in range(L)]).double()

    return dict(logits=logits[0].double(), resid=stack("blocks.{}.hook_resid_post"),
                attn=stack("blocks.{}.hook_attn_out"), mlp=stack("blocks.{}.hook_mlp_out"),
                pattern=stack("blocks.{}.attn.hook_pattern"))


def capture_hf(hf, toks: torch.Tensor) -> dict[str, torch.Tensor]:
    """One row through the raw Hugging Face model (eager): the same quantities as capture_bridge, with each
    sublayer's write read off the residual stream itself, not off the modules the stage hooks. Sequential blocks:
    attn = resid_mid − resid_pre and mlp = resid_post − resid_mid, resid_mid being what the MLP's pre-norm (OLMo-2:
    the MLP) reads; parallel blocks: mlp = the MLP module's output, attn = resid_post − resid_pre − mlp. Patterns:
    the model's `output_attentions`."""
    fam = A.family_of(hf)
    layers = A.layers(hf, fam)
    parallel = fam.is_parallel(hf.config)
    got: dict[str, list] = {k: [None] * len(layers) for k in ("pre", "mid", "post", "mlp")}

    def put(key, layer, value):
        got[key][layer] = (value[0] if isinstance(value, tuple) else value)[0].double()

    handles = []
    for k, layer in enumerate(layers):
        handles += [layer.register_forward_pre_hook(lambda m, a, kw, k=k: put("pre", k, a or (kw["hidden_states"],)),
                                                    with_kwargs=True),
                    layer.register_forward_hook(lambda m, a, o, k=k: put("post", k, o))]
        if parallel:
            handles.append(A.module(layer, "mlp").register_forward_hook(lambda m, a, o, k=k: put("mlp", k, o)))
        else:
            reader = A.module(layer, fam.mlp_norm or "mlp")
            handles.append(reader.register_forward_pre_hook(lambda m, a, k=k: put("mid", k, a)))
    try:
        out = hf(input_ids=toks, use_cache=False, output_attentions=True)
    finally:
        for h in handles:
            h.remove()
    pre, post = torch.stack(got["pre"]), torch.stack(got["post"])
    if parallel:
        mlp = torch.stack(got["mlp"])
        attn = post - pre - mlp
    else:
        mid = torch.stack(got["mid"])
        attn, mlp = mid - pre, post - mid
    pattern = torch.stack([a[0] for a in out.attentions]).double()
    return dict(logits=out.logits[0].double(), resid=post, attn=attn, mlp=mlp, pattern=pattern)


def brute_force(folder, shards, *, bridge: bool) -> dict[str, np.ndarray]:
    """Every statistic position by position, each row alone, from capture_bridge (GPT-2, Llama) or capture_hf
    (every family); the lens from the raw final norm's weights (Head)."""
    if bridge:
        model = load_model(str(folder), device="cpu", dtype="float32", processed=False)
        capture = capture_bridge
    else:
        model = load_hf(str(folder), "cpu", "float32", "eager")
        capture = capture_hf
    head = Head.of(A.hf_model(model))
    L = len(A.layers(model))
    per_row = {k: [[] for _ in range(L)] for k in (*S.LENS, *S.OTHER)}  # [layer][row] -> list of values
    model_entropy = []
    fraction = LENS_TOKENS / MAX_TOKENS
    with torch.no_grad():
        for chunk, row in take_rows(shards, MAX_TOKENS):
            got = capture(model, torch.tensor([row.tokens]))
            pick = S.lens_sample(chunk, len(row.tokens), fraction, SEED)
            for layer in range(L):
                vals = {k: [] for k in per_row}
                for t in range(1, len(row.tokens)):
                    vals["attn_out_norm"].append(got["attn"][layer, t].norm())
                    vals["mlp_out_norm"].append(got["mlp"][layer, t].norm())
                    if t >= 5:
                        vals["prev5_attention"].append(got["pattern"][layer, :, t, t - 5:t].sum(-1).mean())
                    if pick[t]:
                        x, x_f = got["resid"][layer, t], got["resid"][L - 1, t]
                        final, _ = _by_hand_lens(x_f, x_f, head)
                        rec, post = _by_hand_lens(x, x_f, head)
                        for suffix, lp in (("", rec), ("_post", post)):
                            vals[f"kl_to_final{suffix}"].append((final.exp() * (final - lp)).sum())
                            vals[f"entropy{suffix}"].append(-(lp.exp() * lp).sum())
                        if layer == L - 1:
                            lp_model = torch.log_softmax(got["logits"][t], -1)
                            model_entropy.append(float(-(lp_model.exp() * lp_model).sum()))
                for k, v in vals.items():
                    if v:
                        per_row[k][layer].append(np.array([float(a) for a in v]))
    out = {}
    for k, layers in per_row.items():
        out[k] = np.array([np.concatenate(rows).mean() for rows in layers])
        if k in S.LENS:
            se = []
            for rows in layers:
                S_r, n_r = np.array([r.sum() for r in rows]), np.array([len(r) for r in rows], float)
                m = S_r.sum() / n_r.sum()
                se.append(np.sqrt(len(rows) / (len(rows) - 1) * ((S_r - m * n_r) ** 2).sum()) / n_r.sum())
            out[f"{k}_se"] = np.array(se)
    out["lens_positions"] = np.array([sum(len(r) for r in rows) for rows in per_row["kl_to_final"]])
    out["model_entropy"] = np.mean(model_entropy)
    return out


def check(folder, shards, *, bridge: bool = True) -> dict:
    model = load_hf(str(folder), "cpu", "float32", "eager")
    table = S.layer_stats(model, shards, max_tokens=MAX_TOKENS, lens_tokens=LENS_TOKENS, batch_size=3, seed=SEED,
                          progress=False).to_pydict()
    want = brute_force(folder, shards, bridge=bridge)
    L = len(table["layer"])
    assert table["layer"] == list(range(L)) and table["relative_depth"][-1] == 1.0
    assert table["positions"] == [MAX_TOKENS - len(list(take_rows(shards, MAX_TOKENS)))] * L  # BOS left out
    assert table["lens_positions"] == want["lens_positions"].tolist() and 0 < table["lens_positions"][0] < MAX_TOKENS
    for key in (*S.LENS, *(f"{k}_se" for k in S.LENS), *S.OTHER):
        np.testing.assert_allclose(table[key], want[key], rtol=2e-4, atol=5e-5, err_msg=key)
    # the last residual's recomputed lens is the model itself: KL 0, the model's own entropy
    assert abs(table["kl_to_final"][-1]) < 5e-5 and abs(table["kl_to_final_post"][-1]) < 5e-5
    assert table["entropy"][-1] == pytest.approx(want["model_entropy"], rel=1e-4)
    assert max(table["kl_to_final"][:-1]) > 0.01  # the lens of earlier layers is not the final distribution
    assert not np.allclose(table["kl_to_final"][:-1], table["kl_to_final_post"][:-1])  # the conventions differ
    return table


def test_gpt2_against_brute_force(tiny_dir, shards):
    check(tiny_dir, shards)


def test_llama_against_brute_force(llama_dir, shards):
    check(llama_dir, shards)


def test_hf_reference_agrees_with_the_bridge_one(tiny_dir, shards):
    """The residual-difference reference of the other families (capture_hf) gives GPT-2's bridge-hook numbers."""
    a, b = brute_force(tiny_dir, shards, bridge=True), brute_force(tiny_dir, shards, bridge=False)
    for key in (*S.LENS, *S.OTHER):
        np.testing.assert_allclose(a[key], b[key], rtol=1e-5, err_msg=key)


def test_family_against_brute_force(family, family_dir, shards):
    """GPT-NeoX (parallel and sequential), Phi (parallel, one norm), Gemma 2 (post-norms, (1 + w) gains, √d
    embedding scale, final soft-cap 5, sliding window 4), Gemma 3, Qwen3 (sliding window 4 on layers 1-2), OLMo-2
    (post-norms only) against the residual-difference brute force."""
    check(family_dir, shards, bridge=False)
    hf = load_hf(str(family_dir), "cpu", "float32", "eager")
    sliding = [i for i, t in enumerate(getattr(hf.config, "layer_types", None) or []) if t == "sliding_attention"]
    if "sliding_window" in FAMILY_MODELS[family][2]:
        # the window (4 keys, the query's own included) is in the pattern the mass is read from: a sliding layer's
        # previous-5 mass is over 3 keys, the pattern beyond them exactly 0
        assert sliding, family
        toks = torch.tensor([next(take_rows(shards, MAX_TOKENS))[1].tokens])
        pattern = capture_hf(hf, toks)["pattern"]
        T = pattern.shape[-1]
        outside = torch.ones(T, T).tril(-WINDOW).bool()
        for layer in range(len(pattern)):
            assert (pattern[layer][:, outside].abs().max() == 0) == (layer in sliding), layer
