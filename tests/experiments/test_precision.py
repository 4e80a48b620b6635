"""Precision (docs/science.md "Precision"): float32 unless asked; bfloat16 / float16 run the body only, with the final
norm and unembedding in float32; the experiments' pieces in low precision against float32 with a stated tolerance;
load_model's drift check is a float32 check with a meaningful tolerance.

The tolerance of the experiments, in LD units, is TOL[dtype] x PairRuns.ld_scale (max(1, |LD_clean|,
|LD_corrupted|, the clean prompt's largest |logit - mean|)). Why that scale: every LD here is read in float32 from
the final residual, so what low precision leaves is the body's rounding, and rounding error in a logit (hence in LD)
is proportional to the logits' magnitude, not to LD (GPT-2 Large's a/an LD_clean is ~1 while its logits reach
~20). Why that size: TOL = 4u, u the unit roundoff (bfloat16 2^-8 ≈ 0.0039: ~3 significant digits; float16
2^-11), 8u for attribution (a backward pass through the low-precision body too). Measured on the planted demo
(5 experiments) and on random models with a real model's logit scale (LD ≪ logits): LD, the logit lens, layer x
position and neuron patch scores (as patched LDs) differ from float32 by at most 0.9u (bf16) / 1.9u (fp16),
attribution by at most 1.8u / 2.2u; check_engine (fast vs full forward, both in low precision) by at most 0.74u /
0.78u. A patch score's error is that LD error divided by the gap |LD_clean - LD_corrupted|: on the demo
(gap ≈ ld_scale) ~0.002 measured, 0.016 allowed; for a GPT-2 Large-like pair (gap ~1 logit, logits ~20) ~0.07
measured-equivalent (0.9u x 20), 0.3 allowed: bf16 cannot resolve the post's "next best neuron 0.008" at all,
which is why the experiments are float32 by default.
"""

from __future__ import annotations

import pytest
import torch

from anneuron import models as M
from anneuron.experiments import patching as P
from anneuron.experiments.logit_lens import logit_lens
from anneuron.experiments.prompts import make_pair

LOW = {"bfloat16": torch.bfloat16, "float16": torch.float16}
UNIT_ROUNDOFF = {torch.bfloat16: 2.0**-8, torch.float16: 2.0**-11}
TOL = {dt: 4 * u for dt, u in UNIT_ROUNDOFF.items()}  # forward quantities, relative to ld_scale
ATTRIBUTION_TOL = {dt: 8 * u for dt, u in UNIT_ROUNDOFF.items()}


@pytest.fixture(scope="module", params=list(LOW))
def low_demo(request, demo_dir):
    """The planted demo loaded with a low-precision body."""
    return M.load_model(str(demo_dir), device="cpu", dtype=request.param)


def test_low_precision_body_keeps_the_float32_head(low_demo, demo_bridge):
    """Processed in float32, then cast: the head is a float32 copy equal to the float32 model's, bit for bit."""
    dtype = M.body_dtype(low_demo)
    assert dtype in LOW.values() and low_demo.cfg.dtype == dtype
    assert all(p.dtype == dtype for p in low_demo.blocks.parameters())
    head, ref = M.float32_head(low_demo), M.float32_head(demo_bridge)
    assert head.unembed is not ref.unembed  # a copy, not the float32 bridge's module
    for a, b in ((head.unembed.weight, ref.unembed.weight), (head.unembed.bias, ref.unembed.bias),
                 (head.W_E, ref.W_E), (head.norm.weight, ref.norm.weight), (head.norm.bias, ref.norm.bias)):
        assert a.dtype == torch.float32 and torch.equal(a, b)
    assert head.kind == "LN" and head.eps == ref.eps
    with pytest.raises(ValueError, match="already"):
        M.cast_body(low_demo, torch.float32 if dtype == torch.float16 else torch.float16)


def _pieces(bridge, pair: P.PromptPair, layer: int) -> dict:
    runs = P.run_pair(bridge, pair)
    model = P.SuffixModel(bridge, runs.corrupted, pair.start, pair.answer, pair.wrong)
    neurons = P.neuron_scores(model, runs, layer, batch_size=64)
    best = int(neurons.argmax())
    return dict(runs=runs, lens=logit_lens(bridge, runs.clean.cache, pair.answer, pair.wrong),
                mlp_out=P.layer_position_scores(model, runs, "mlp_out", batch_size=64), neurons=neurons, best=best,
                attribution=P.attribution_scores(runs)[layer], check=P.check_engine(bridge, model, runs, layer, best))


def test_experiment_pieces_in_low_precision_agree_with_float32(low_demo, demo_bridge, ground_truth):
    """run_pair, the logit lens, mlp_out patching, exact neuron patching of the planted layer and attribution, in
    bf16/fp16 against float32, on every planted experiment: within TOL x ld_scale in LD units (module docstring);
    the planted neuron stays the top one; LD and the logits are float32; the engine check passes
    ENGINE_TOLERANCE of its dtype."""
    dtype = M.body_dtype(low_demo)
    worst = {}
    for exp in ground_truth["experiments"]:
        pair = make_pair(demo_bridge, exp["clean"], exp["corrupted"], exp["answer"], exp["wrong"])
        layer, neuron = (int(x) for x in exp["neuron"][1:].split("N"))
        ref, got = _pieces(demo_bridge, pair, layer), _pieces(low_demo, pair, layer)
        r, g = ref["runs"], got["runs"]
        scale, gap = r.ld_scale, r.ld_clean - r.ld_corrupted
        assert g.clean.logits.dtype == torch.float32
        assert not torch.equal(g.clean.logits, g.clean.logits.to(dtype).float())  # not low-precision logits
        rel = {
            "ld": max(abs(g.ld_clean - r.ld_clean), abs(g.ld_corrupted - r.ld_corrupted)) / scale,
            "lens": max(float((got["lens"].post - ref["lens"].post).abs().max()),
                        float((got["lens"].recomputed - ref["lens"].recomputed).abs().max())) / scale,
            "mlp_out": float((got["mlp_out"] - ref["mlp_out"]).abs().max()) * abs(gap) / scale,
            "neurons": float((got["neurons"] - ref["neurons"]).abs().max()) * abs(gap) / scale,
        }
        for key, value in rel.items():
            assert value <= TOL[dtype], (exp["name"], key, value)
            worst[key] = max(worst.get(key, 0.0), value)
        attribution = float((got["attribution"] - ref["attribution"]).abs().max()) * abs(gap) / scale
        assert attribution <= ATTRIBUTION_TOL[dtype], (exp["name"], attribution)
        assert ref["best"] == got["best"] == neuron, exp["name"]
        assert ref["check"] <= P.ENGINE_TOLERANCE[torch.float32], (exp["name"], ref["check"])
        assert got["check"] <= P.ENGINE_TOLERANCE[dtype], (exp["name"], got["check"])
    print(f"{dtype}: worst / u:", {k: round(v / UNIT_ROUNDOFF[dtype], 2) for k, v in worst.items()})


def test_engine_tolerance_orders_the_dtypes():
    """ENGINE_TOLERANCE (patching.py): float32 1e-4, bfloat16 2e-2 ≈ 5u, float16 5e-3 ≈ 10u (relative to
    ld_scale). check_engine compares two low-precision computations of the same LD (suffix-only vs a full
    forward), so it sees ~sqrt(2) x one computation's noise: measured at most 0.74u (bf16) and 0.78u (fp16) on
    4-layer models; a 36-layer model accumulates ~sqrt(36/4) = 3x more, which these bounds still cover twice."""
    tol = P.ENGINE_TOLERANCE
    assert tol[torch.float32] < tol[torch.float16] < tol[torch.bfloat16]
    assert tol[torch.bfloat16] <= 6 * UNIT_ROUNDOFF[torch.bfloat16]
    assert tol[torch.float16] <= 12 * UNIT_ROUNDOFF[torch.float16]


# --- load_model's drift check -------------------------------------------------------------------------------------

def test_processing_drift_is_far_below_the_tolerance(tiny_dir, demo_dir):
    """What load_model checks, measured: float32 processing moves the logits (beyond a per-position constant) by
    ~1e-7..1e-6 of max |logit|; DRIFT_TOLERANCE leaves ~100x headroom for deeper, wider real models."""
    probe = "The quick brown fox jumps over the lazy dog, and then an apple."
    for folder in (tiny_dir, demo_dir):
        raw = M.load_model(str(folder), device="cpu", dtype="float32", processed=False)
        proc = M.load_model(str(folder), device="cpu", dtype="float32")
        toks = raw.to_tokens(probe)
        with torch.no_grad():
            drift, scale = M.processing_drift(raw(toks), proc(toks), centres=True)
        assert drift / max(1.0, scale) < M.DRIFT_TOLERANCE / 50, (folder.name, drift, scale)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_drift_check_refuses_a_small_change_in_any_dtype(tiny_dir, monkeypatch, dtype):
    """A processing step that moves the logits by 3.4x DRIFT_TOLERANCE (1.4e-3 at max |logit| 4.2) is refused, also
    when the model is asked in bfloat16: the check is always float32. (The previous tolerances let it through: 1e-3
    of max |logit| in float32, 5e-2 in bfloat16, 150x this change.)"""
    from anneuron import architecture as A

    fold = A.fold_layer_norms

    def nudge_and_fold(bridge):
        ln_f = bridge.original_model.transformer.ln_f
        g = torch.Generator().manual_seed(0)
        ln_f.bias += 4e-4 * torch.randn(ln_f.bias.shape, generator=g)  # token-specific: not a per-position constant
        fold(bridge)

    monkeypatch.setattr(A, "fold_layer_norms", nudge_and_fold)
    with pytest.raises(M.ModelError, match="weight processing changed its logits") as e:
        M.load_model(str(tiny_dir), device="cpu", dtype=dtype)
    assert "\n" not in str(e.value) and "float32" in str(e.value)


# --- rotary models ------------------------------------------------------------------------------------------------

def test_low_precision_llama_keeps_rotary_frequencies_and_head_float32(tmp_path):
    """cast_body casts parameters, not RoPE's inv_freq (as Hugging Face loads a model in low precision), in the
    record engine and in the bridge; both give float32 logits close to float32's."""
    from anneuron.dataset.engines import load_engine
    from anneuron.demos.llama import random_llama

    folder = random_llama(tmp_path / "llama", n_layer=2, d_model=64, d_mlp=128, n_head=4, n_kv_head=2, seed=7,
                          tied=True, act="silu", norm_noise=0.1, weight_scale=1.0)
    toks = torch.tensor([[50256, 464, 2068, 7586, 21831, 18045, 625, 262, 16931, 3290, 13]])
    ref = load_engine(str(folder), device="cpu", dtype="float32", engine="auto")
    with torch.no_grad():
        want = ref.logits(toks)
    for engine in (load_engine(str(folder), device="cpu", dtype="bfloat16", engine="auto"),
                   load_engine(str(folder), device="cpu", dtype="bfloat16", engine="bridge")):
        model = getattr(engine, "model", None) or engine.bridge
        freqs = [b for n, b in model.named_buffers() if n.endswith("inv_freq")]
        assert freqs and all(b.dtype == torch.float32 for b in freqs)
        assert M.body_dtype(model) == torch.bfloat16 and engine.W_E.dtype == torch.float32
        with torch.no_grad():
            got = engine.logits(toks)
        assert got.dtype == torch.float32
        centred = lambda x: x - x.mean(-1, keepdim=True)  # noqa: E731 (the bridge's W_U is centred: Llama's is not)
        spread = float(centred(want).abs().max())
        err = float((centred(got) - centred(want)).abs().max()) / spread
        print(f"{type(engine).__name__} bf16 llama: max logit error {err / UNIT_ROUNDOFF[torch.bfloat16]:.2f}u")
        assert err <= TOL[torch.bfloat16]
