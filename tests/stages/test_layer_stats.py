"""The per-layer statistics (anneuron.stages.layer_stats) against a brute force, position by position: each row run
alone (no padding) through the raw TransformerBridge, every quantity recomputed from its cache in float64 (the
logit lens by hand from the final norm's weights and W_U, the norms of hook_attn_out and hook_mlp_out, the
previous-five attention from hook_pattern), on a tiny GPT-2 with random LayerNorms and on the four tiny random
Llamas (RMSNorm, GQA, RoPE, gated MLPs, tied and untied)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from llama_models import *  # noqa: F401,F403 (session fixtures)

from anneuron import architecture as A
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


def _by_hand_lens(x: torch.Tensor, x_final: torch.Tensor, norm, W_U: torch.Tensor, b_U, kind: str, eps: float):
    """(recomputed, post) log-probabilities of one residual, float64, from the final norm's formula."""
    def centre(v):
        return v - v.mean() if kind == "LN" else v

    g = norm.weight.double()
    b = norm.bias.double() if getattr(norm, "bias", None) is not None else 0.0
    s, s_f = ((centre(v).pow(2).mean() + eps).sqrt() for v in (x, x_final))
    out = []
    for scale in (s, s_f):
        logits = W_U @ (centre(x) / scale * g + b) + b_U
        out.append(torch.log_softmax(logits, -1))
    return out


def brute_force(folder, shards) -> dict[str, np.ndarray]:
    bridge = load_model(str(folder), device="cpu", dtype="float32", processed=False)
    hf = A.hf_model(bridge)
    fam = A.family_of(hf)
    norm, head = A.module(hf, fam.final_norm), A.module(hf, fam.unembed)
    W_U = head.weight.double()
    b_U = head.bias.double() if head.bias is not None else torch.zeros(len(W_U), dtype=torch.float64)
    L = bridge.cfg.n_layers
    per_row = {k: [[] for _ in range(L)] for k in (*S.LENS, *S.OTHER)}  # [layer][row] -> list of values
    model_entropy = []
    fraction = LENS_TOKENS / MAX_TOKENS
    with torch.no_grad():
        for chunk, row in take_rows(shards, MAX_TOKENS):
            toks = torch.tensor([row.tokens])
            logits, cache = bridge.run_with_cache(toks)
            pick = S.lens_sample(chunk, len(row.tokens), fraction, SEED)
            for layer in range(L):
                vals = {k: [] for k in per_row}
                for t in range(1, len(row.tokens)):
                    vals["attn_out_norm"].append(cache[f"blocks.{layer}.hook_attn_out"][0, t].double().norm())
                    vals["mlp_out_norm"].append(cache[f"blocks.{layer}.hook_mlp_out"][0, t].double().norm())
                    if t >= 5:
                        pattern = cache[f"blocks.{layer}.attn.hook_pattern"][0].double()
                        vals["prev5_attention"].append(pattern[:, t, t - 5:t].sum(-1).mean())
                    if pick[t]:
                        x = cache[f"blocks.{layer}.hook_resid_post"][0, t].double()
                        x_f = cache[f"blocks.{L - 1}.hook_resid_post"][0, t].double()
                        final, _ = _by_hand_lens(x_f, x_f, norm, W_U, b_U, fam.norm, A.eps_of(norm))
                        rec, post = _by_hand_lens(x, x_f, norm, W_U, b_U, fam.norm, A.eps_of(norm))
                        for suffix, lp in (("", rec), ("_post", post)):
                            vals[f"kl_to_final{suffix}"].append((final.exp() * (final - lp)).sum())
                            vals[f"entropy{suffix}"].append(-(lp.exp() * lp).sum())
                        if layer == L - 1:
                            lp_model = torch.log_softmax(logits[0, t].double(), -1)
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


def check(folder, shards) -> None:
    model = load_hf(str(folder), "cpu", "float32", "eager")
    table = S.layer_stats(model, shards, max_tokens=MAX_TOKENS, lens_tokens=LENS_TOKENS, batch_size=3, seed=SEED,
                          progress=False).to_pydict()
    want = brute_force(folder, shards)
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


def test_gpt2_against_brute_force(tiny_dir, shards):
    check(tiny_dir, shards)


def test_llama_against_brute_force(llama_dir, shards):
    check(llama_dir, shards)
