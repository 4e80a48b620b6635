"""Neuron properties against brute force: moments of the recorded activations (numpy over the dense matrix) and
the weight norms and cosines from the raw weights, GPT-2 and Llama layouts."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from anneuron.dataset.engines import load_engine
from anneuron.stage_config import UniversalityPropertiesConfig
from anneuron.universality.properties import Moments, neuron_properties
from anneuron.universality.tiles import batches, layer_activations, token_rows


def test_moments_match_scipy_with_a_large_offset():
    rng = np.random.default_rng(0)
    x = 500.0 + rng.gamma(2.0, size=(3000, 6))
    x[:, 2] = rng.standard_normal(3000)  # crosses zero
    m = Moments(6)
    for s in range(0, 3000, 700):
        m.update(x[s:s + 700])
    r = m.result()
    np.testing.assert_allclose(r["act_mean"], x.mean(0), rtol=1e-12)
    np.testing.assert_allclose(r["act_skew"], stats.skew(x), rtol=1e-6)
    np.testing.assert_allclose(r["act_kurt"], stats.kurtosis(x, fisher=False), rtol=1e-6)
    np.testing.assert_allclose(r["act_frequency"], (x > 0).mean(0))


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_properties_against_dense_activations_and_raw_weights(kind, tmp_path):
    from transformers import AutoModelForCausalLM

    from anneuron.data import Row, write_shards

    if kind == "gpt2":
        from anneuron.demos.gpt2 import random_gpt2

        folder = random_gpt2(tmp_path / "m", n_layer=2, d_model=32, d_mlp=40, n_head=4, n_ctx=16, bias_noise=0.1)
    else:
        from anneuron.demos.llama import random_llama

        folder = random_llama(tmp_path / "m", n_layer=2, d_model=32, d_mlp=40, n_head=4, n_kv_head=2)
    rng = np.random.default_rng(1)
    shards = [tmp_path / "s0.parquet"]
    write_shards([Row([50256] + rng.integers(0, 50256, 15).tolist(), [r] * 16, None) for r in range(12)], shards)
    cfg = UniversalityPropertiesConfig(device="cpu", dtype="float32", engine="auto", batch_size=5, max_tokens=100)
    got = neuron_properties(str(folder), shards, cfg, progress=False).to_pydict()
    engine = load_engine(str(folder), device="cpu", dtype="float32", engine="auto")
    dense = np.concatenate([torch.cat([a[mask] for a in layer_activations(engine, toks, range(2)).values()], 1)
                            for toks, mask in batches(token_rows(shards, 100), 3)]).astype(np.float64)
    assert dense.shape == (100, 80)
    np.testing.assert_allclose(got["act_mean"], dense.mean(0), atol=1e-6)
    np.testing.assert_allclose(got["act_kurt"], stats.kurtosis(dense, fisher=False), rtol=1e-4)
    np.testing.assert_allclose(got["act_frequency"], (dense > 0).mean(0))
    model = AutoModelForCausalLM.from_pretrained(folder)
    mlp = (model.transformer.h if kind == "gpt2" else model.model.layers)[1].mlp
    w_in = (mlp.c_fc.weight.T if kind == "gpt2" else mlp.gate_proj.weight).detach()  # (d_mlp, d_model)
    w_out = (mlp.c_proj.weight if kind == "gpt2" else mlp.down_proj.weight.T).detach()
    n = 7
    assert got["w_in_norm"][40 + n] == pytest.approx(float(w_in[n].norm()), rel=1e-5)
    assert got["w_out_norm"][40 + n] == pytest.approx(float(w_out[n].norm()), rel=1e-5)
    want = float(torch.nn.functional.cosine_similarity(w_in[n], w_out[n], dim=0))
    assert got["in_out_cos"][40 + n] == pytest.approx(want, abs=1e-5)
