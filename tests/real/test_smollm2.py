"""Correctness on a real model, not only on toys: SmolLM2-135M (30 layers, 1,536 gated neurons each, RoPE, GQA,
RMSNorm, tied embeddings), as the pipeline loads it, against references computed the slow, obviously right way.

- the conversion: the facts the converted model must reproduce (docs/demos.md), and processed logits = raw logits;
- exact neuron patching (the batched suffix engine) = one full hooked forward per neuron, for a sample of neurons in
  every fifth layer plus the best neurons of the post's a/an pair, on three prompt pairs whose first difference is
  near the end, in the middle and near the start;
- the logit lens = a hand computation from the raw Hugging Face weights (its final RMSNorm and lm_head), in float64,
  every entry of both conventions;
- the weights pass on a sample of 240 neurons (8 per layer) = a dense float64 product from the raw weights, for all
  three bases: top tokens both ways, top neurons per token, d_tok, d_neu, vocabulary moments.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from anneuron.experiments import patching as P
from anneuron.experiments.logit_lens import logit_lens
from anneuron.tokenizer import single_token

LD_TOL = 1e-4  # absolute, in logits: fp32 through 30 layers, batched vs one forward per patch

PAIRS = {  # name: clean, corrupted, answer, wrong (all in workflow/configs/smollm2-wiki.yaml or config.yaml)
    "an_a": ("I climbed up the pear tree and picked a pear. I climbed up the apple tree and picked",
             "I climbed up the pear tree and picked a pear. I climbed up the lemon tree and picked", " an", " a"),
    "ioi": ("When John and Mary went to the shops, Mary gave the bag to",
            "When John and Mary went to the shops, John gave the bag to", " John", " Mary"),
    "capital": ("The capital of France is", "The capital of Italy is", " Paris", " Rome"),
}
SAMPLE_LAYERS = (0, 5, 10, 15, 20, 25, 29)
PER_LAYER = 6
# The best single neurons of an_a (measured by the demo; README "smollm2-wiki"): checked by the naive reference too
AN_A_BEST = ((25, 1527), (23, 1468), (19, 28))


def _pair(bridge, name: str) -> P.PromptPair:
    clean, corrupted, answer, wrong = PAIRS[name]
    tok = bridge.tokenizer
    return P.PromptPair(bridge.to_tokens(clean), bridge.to_tokens(corrupted), single_token(tok, answer),
                        single_token(tok, wrong))


@pytest.fixture(scope="module", params=list(PAIRS))
def case(request, smollm2_bridge):
    pair = _pair(smollm2_bridge, request.param)
    runs = P.run_pair(smollm2_bridge, pair)
    return request.param, runs, P.SuffixModel(smollm2_bridge, runs.corrupted, pair.start, pair.answer, pair.wrong)


# --- the converted model ------------------------------------------------------------------------------------------

def test_the_config_checks_token_counts_equal_the_models_tokenizer(smollm2_dir):
    """The config check counts tokens from tokenizer.json alone (no torch while the Snakefile parses): the same
    counts as the model's own tokenizer for every prompt and token of the demo's config."""
    from pathlib import Path

    import yaml

    from anneuron import resolve

    cfg = yaml.safe_load((Path(__file__).resolve().parents[2] / "workflow/configs/smollm2-wiki.yaml").read_text())
    texts = [t for e in cfg["experiments"].values() for t in (e["clean"], e["corrupted"], e["answer"], e["wrong"])]
    texts += [t for p in PAIRS.values() for t in p]
    spec = resolve.resolve(str(smollm2_dir))
    count, tok = spec.token_counter(), spec.tokenizer()
    assert len(texts) > 20
    assert [count(t) for t in texts] == [len(tok.encode(t, add_special_tokens=False)) for t in texts]


def test_conversion_facts(smollm2_dir, smollm2_hf):
    """What docs/demos.md says the converted model does: " Paris" (p > 0.5), and the post's prompt pair on the
    right side of " an" vs " a"; the shapes of anneuron.demos.specs.SMOLLM2."""
    from transformers import AutoTokenizer

    from anneuron.demos.specs import SMOLLM2

    tok = AutoTokenizer.from_pretrained(str(smollm2_dir))
    cfg = smollm2_hf.config
    assert (cfg.num_hidden_layers, cfg.hidden_size, cfg.intermediate_size, cfg.max_position_embeddings,
            cfg.vocab_size) == (SMOLLM2.n_layers, SMOLLM2.d_model, SMOLLM2.d_mlp, SMOLLM2.n_ctx, SMOLLM2.d_vocab)
    assert tok.bos_token == "<|endoftext|>" and tok.bos_token_id == 0 and len(tok) == 49152
    assert [single_token(tok, s) for s in (" an", " a")] == [354, 253]

    def last(text: str) -> torch.Tensor:
        with torch.no_grad():
            return smollm2_hf(torch.tensor([[0] + tok(text, add_special_tokens=False)["input_ids"]])).logits[0, -1]

    probs = last("The capital of France is").softmax(-1)
    assert tok.decode([int(probs.argmax())]) == " Paris" and probs.max() > 0.5
    clean, corrupted = last(PAIRS["an_a"][0]), last(PAIRS["an_a"][1])
    assert clean[354] > clean[253] and corrupted[354] < corrupted[253]


def test_processed_logits_equal_raw_logits(smollm2_bridge, smollm2_hf):
    """Folding the 61 RMSNorm gains (anneuron.architecture.fold_rms_norms) changes no logit beyond fp32 rounding."""
    toks = smollm2_bridge.to_tokens("Paris is the capital and largest city of France. It is an important centre "
                                    "of finance, diplomacy, commerce, culture, fashion and gastronomy.")
    with torch.no_grad():
        raw, ours = smollm2_hf(toks).logits, smollm2_bridge(toks)
    diff = float((raw - ours).abs().max())
    print(f"max |processed - raw| logit: {diff:.3g} (logits up to {float(raw.abs().max()):.3g})")
    assert diff < 1e-3


# --- exact neuron patching ----------------------------------------------------------------------------------------

def _sample(name: str, d_mlp: int) -> dict[int, list[int]]:
    g = torch.Generator().manual_seed(0)
    out = {layer: torch.randperm(d_mlp, generator=g)[:PER_LAYER].tolist() for layer in SAMPLE_LAYERS}
    if name == "an_a":
        for layer, neuron in AN_A_BEST:
            out.setdefault(layer, []).append(neuron)
    return out


def test_exact_patching_equals_one_full_forward_per_neuron(smollm2_bridge, case):
    """Every sampled neuron: the suffix engine's patched LD (batched, from its layer on, the positions from the first
    difference on, keys and values of the earlier positions from the cache) = one full hooked forward of the
    corrupted prompt with that neuron set to its clean value at every position."""
    name, runs, model = case
    gap = runs.ld_clean - runs.ld_corrupted
    assert gap > 0.5, f"{name}: LD gap {gap:.3g}"
    worst, n = 0.0, 0
    for layer, neurons in _sample(name, smollm2_bridge.cfg.d_mlp).items():
        ours = P.neuron_scores(model, runs, layer, neurons, batch_size=5)
        reference = P.naive_neuron_scores(smollm2_bridge, runs, layer, neurons)
        err = float(((ours.double() - reference.double()) * gap).abs().max())
        worst, n = max(worst, err), n + len(neurons)
        assert err < LD_TOL, f"{name} L{layer}: |LD engine - LD hooked forward| = {err:.3g}"
    print(f"{name} (first difference at position {runs.pair.start} of {runs.pair.clean.shape[1]}): {n} neurons, "
          f"max |LD engine - LD hooked forward| = {worst:.3g} (LD gap {gap:.3g})")


def test_an_a_best_neurons_restore_what_the_readme_says(smollm2_bridge):
    """The numbers the README reports for the post's pair (exact scores, by the engine checked above)."""
    runs = P.run_pair(smollm2_bridge, _pair(smollm2_bridge, "an_a"), grad=False)
    model = P.SuffixModel(smollm2_bridge, runs.corrupted, runs.pair.start, runs.pair.answer, runs.pair.wrong)
    scores = {f"L{layer}N{n}": float(P.neuron_scores(model, runs, layer, [n], batch_size=64)[0])
              for layer, n in AN_A_BEST}
    print(f"an_a: LD {runs.ld_clean:.3f} / {runs.ld_corrupted:.3f}; {scores}")
    assert scores["L25N1527"] > 0.5 and scores["L23N1468"] > 0.3 and scores["L19N28"] > 0.15


def test_engine_check_on_the_real_model(smollm2_bridge, case):
    """The runtime self-check every experiment job runs (anneuron.experiments.experiment), on the real model."""
    name, runs, model = case
    err = P.check_engine(smollm2_bridge, model, runs, 25, 1527)
    print(f"{name}: check_engine = {err:.3g}")
    assert err < 1e-5


# --- the logit lens -----------------------------------------------------------------------------------------------

@torch.no_grad()
def _by_hand(hf, x: torch.Tensor, a: int, w: int, scale: torch.Tensor | None = None) -> float:
    """The RAW model's final RMSNorm (the entry's own RMS, or the given scale; no mean removed; its gain) and its
    lm_head rows a − w, in float64."""
    norm = hf.model.norm
    x = x.double()
    x = x / (scale.double() if scale is not None else (x.pow(2).mean() + norm.variance_epsilon).sqrt())
    W = hf.lm_head.weight.double()
    return float((x * norm.weight.double()) @ (W[a] - W[w]))


def test_logit_lens_equals_a_hand_computation(smollm2_bridge, smollm2_hf, case):
    name, runs, _ = case
    cache, (a, w) = runs.clean.cache, (runs.pair.answer, runs.pair.wrong)
    n_layers = smollm2_bridge.cfg.n_layers
    lens = logit_lens(smollm2_bridge, cache, a, w)
    assert len(lens.labels) == 2 * n_layers + 1 and lens.labels[-1] == "final_post"
    final = cache[f"blocks.{n_layers - 1}.hook_resid_post"][0, -1]
    stack = [cache[f"blocks.{l}.hook_resid_{k}"][0, -1] for l in range(n_layers) for k in ("pre", "mid")] + [final]
    scale = (final.double().pow(2).mean() + smollm2_hf.model.norm.variance_epsilon).sqrt()
    post = [_by_hand(smollm2_hf, x, a, w, scale) for x in stack]
    recomputed = [_by_hand(smollm2_hf, x, a, w) for x in stack]
    err_post = max(abs(float(lens.post[i]) - v) for i, v in enumerate(post))
    err_rec = max(abs(float(lens.recomputed[i]) - v) for i, v in enumerate(recomputed))
    print(f"{name}: max |lens - by hand|: post {err_post:.3g}, recomputed {err_rec:.3g}; "
          f"final {float(lens.post[-1]):.4f} vs LD {runs.ld_clean:.4f}")
    assert err_post < LD_TOL and err_rec < LD_TOL
    assert abs(float(lens.post[-1]) - runs.ld_clean) < LD_TOL  # no b_U in a Llama: the last entry is LD itself


# --- the weights pass ---------------------------------------------------------------------------------------------

def _raw_weights(hf, rows: dict[int, list[int]]):
    """W_out rows (down_proj columns), W_E and the final-gain-folded W_U straight from the raw modules, float64."""
    from anneuron.weights.congruence import Weights

    layers = hf.model.layers
    return Weights([layers[l].mlp.down_proj.weight.detach().double().T[rows[l]] for l in range(len(layers))],
                   hf.model.embed_tokens.weight.detach().double(),
                   (hf.model.norm.weight[:, None] * hf.lm_head.weight.T).detach().double())


@pytest.fixture(scope="module")
def sampled_weights(smollm2_bridge, smollm2_hf):
    """8 neurons of every layer (240, seeded): the pass's processed weights and the dense float64 reference."""
    from weights.test_congruence import dense_reference  # tests/weights/

    from anneuron.weights.congruence import Weights, weights_of

    g = torch.Generator().manual_seed(1)
    w = weights_of(smollm2_bridge)
    rows = {l: sorted(torch.randperm(w.d_mlp, generator=g)[:8].tolist()) for l in range(w.n_layers)}
    ours = Weights([x[rows[l]] for l, x in enumerate(w.w_out)], w.W_E, w.W_U)
    return ours, dense_reference(_raw_weights(smollm2_hf, rows))


@pytest.mark.parametrize("basis", ["we", "wu", "cosine"])
def test_congruence_of_sampled_neurons_equals_a_dense_product(sampled_weights, basis):
    """The streaming pass (fp32 products, chunks of 50 crossing layers every 8 rows) against the dense float64
    product from the raw weights: every kept top-k (ids may differ only between entries tied at fp32 precision),
    d_tok, d_neu, and the vocabulary moments.

    Tolerance: an fp32 dot product over d_model = 576 carries an absolute error of ~1e-6 of the values' scale
    (max |C| is ~15 in the `we` basis, ~1 for cosine), so values and their top-2 differences get atol = 2e-6·max|C|
    (the toy tests' atol of 1e-6 assumes values of order 1 and d_model 64); the moments rtol 1e-4."""
    from weights.test_congruence import K, check

    from anneuron.weights.congruence import congruence_pass

    ours, reference = sampled_weights
    ref = reference[basis]
    C = ref["C"]
    tol = dict(rtol=1e-5, atol=2e-6 * float(np.abs(C).max()))
    res = congruence_pass(ours, basis=basis, top_k=K, chunk_neurons=50, device="cpu", dtype=torch.float32,
                          progress=False)
    check(res, ref, exact=False, tol=tol, moments_tol=dict(rtol=1e-4, atol=1e-7))
    worst = {name: float(np.abs(vals - ref[key]).max()) for name, vals, key in (
        ("tokens", res.token_top_values, "tok_v"), ("top", res.neuron_top_values, "top_v"),
        ("bottom", res.neuron_bottom_values, "bot_v"))}
    print(f"{basis}: max |C| {np.abs(C).max():.3g}; max |value - dense| {worst}; "
          f"top ids differing {(res.neuron_top_ids != ref['top_i']).mean():.2g}")
