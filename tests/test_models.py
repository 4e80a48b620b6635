import pytest
import torch
from transformers import GPT2LMHeadModel

from anneuron import models as M


def test_roundtrip_logits_equal_hf(tiny_dir):
    """Saved folder -> bridge (raw) gives the HF model's logits."""
    hf = GPT2LMHeadModel.from_pretrained(tiny_dir, attn_implementation="eager").eval()
    br = M.load_model(str(tiny_dir), device="cpu", dtype="float32", processed=False)
    toks = br.to_tokens("The quick brown fox jumps over the lazy dog.")
    assert toks[0, 0].item() == 50256
    with torch.no_grad():
        torch.testing.assert_close(br(toks), hf(toks).logits, rtol=0, atol=1e-5)


def test_processed_weights_match_formulas(tiny_dir, tiny_bridge):
    """fold_ln + center_writing_weights + center_unembed, checked against the raw weights by hand."""
    hf = GPT2LMHeadModel.from_pretrained(tiny_dir).eval()
    tr = hf.transformer
    assert (tr.ln_f.weight - 1).abs().max() > 0.05, "fixture must randomise LayerNorm"
    for layer in range(len(tr.h)):
        blk = tr.h[layer]
        w_out = blk.mlp.c_proj.weight  # (d_mlp, d_model)
        want_out = w_out - w_out.mean(-1, keepdim=True)
        torch.testing.assert_close(tiny_bridge.blocks[layer].mlp.W_out, want_out, atol=1e-5, rtol=1e-5)
        w_in = blk.ln_2.weight[:, None] * blk.mlp.c_fc.weight  # (d_model, d_mlp)
        want_in = w_in - w_in.mean(0, keepdim=True)
        torch.testing.assert_close(tiny_bridge.blocks[layer].mlp.W_in, want_in, atol=1e-5, rtol=1e-5)
        b_in = blk.mlp.c_fc.bias + blk.ln_2.bias @ blk.mlp.c_fc.weight
        torch.testing.assert_close(tiny_bridge.blocks[layer].mlp.b_in, b_in, atol=1e-5, rtol=1e-5)
    w_u = tr.ln_f.weight[:, None] * hf.lm_head.weight.T
    w_u = w_u - w_u.mean(0, keepdim=True)
    w_u = w_u - w_u.mean(1, keepdim=True)
    torch.testing.assert_close(tiny_bridge.W_U, w_u, atol=1e-5, rtol=1e-5)
    w_e = tr.wte.weight - tr.wte.weight.mean(-1, keepdim=True)
    torch.testing.assert_close(tiny_bridge.W_E, w_e, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("tied", [True, False])
def test_hand_processing_equals_transformer_lens(tmp_path, tied):
    """anneuron.architecture.fold_layer_norms (what load_model runs, in place) gives TransformerLens' own
    processing (enable_compatibility_mode(): fold_ln, center_writing_weights, center_unembed, fold_value_biases):
    every tensor of the bridge, its config and every cached activation, on random GPT-2s with randomised
    LayerNorms and biases, tied and untied. Only b_U may differ by float32 rounding (a matrix-vector product where
    TransformerLens multiplies and sums)."""
    from conftest import build_random_gpt2
    from transformer_lens.model_bridge import TransformerBridge

    from anneuron import architecture as A
    from anneuron.resolve import folder_tokenizer

    folder = build_random_gpt2(tmp_path / "m", n_layer=2, d_model=64, d_mlp=256, seed=3, tied=tied)
    boot = lambda: TransformerBridge.boot_transformers(  # noqa: E731
        str(folder), device="cpu", dtype=torch.float32, tokenizer=folder_tokenizer(folder))
    tl, ours = boot(), boot()
    tl.enable_compatibility_mode(disable_warnings=True)
    ours.enable_compatibility_mode(disable_warnings=True, no_processing=True)
    A.fold_layer_norms(ours)
    want, got = tl.state_dict(), ours.state_dict()
    assert want.keys() == got.keys()
    changed = 0
    for name, w in want.items():
        torch.testing.assert_close(got[name], w, rtol=1e-6, atol=1e-6, msg=name)
        changed += not torch.equal(got[name], w)
    assert changed <= 1  # unembed.bias
    assert vars(ours.cfg) == vars(tl.cfg)
    assert ours.W_U.data_ptr() != ours.W_E.data_ptr()
    toks = tl.to_tokens("The quick brown fox jumps over the lazy dog, and then an apple.")
    with torch.no_grad():
        _, a = tl.run_with_cache(toks)
        _, b = ours.run_with_cache(toks)
    assert a.keys() == b.keys() and len(a) > 80
    for name in a.keys():
        torch.testing.assert_close(b[name], a[name], rtol=1e-5, atol=1e-5, msg=name)


def test_hand_processing_folds_a_square_mlp(tmp_path):
    """d_mlp == d_model (demo-emergent's shape), where TransformerLens 4.3 folds ln_2 along the wrong axis: the
    hand processing keeps the logits up to a per-position constant and gives hook_post unchanged."""
    from conftest import build_random_gpt2

    folder = build_random_gpt2(tmp_path / "sq", n_layer=2, d_model=64, d_mlp=64, seed=5)
    raw = M.load_model(str(folder), device="cpu", dtype="float32", processed=False)
    proc = M.load_model(str(folder), device="cpu", dtype="float32")
    toks = raw.to_tokens("An apple a day keeps the doctor away.")
    with torch.no_grad():
        (lr, cr), (lp, cp) = (m.run_with_cache(toks, names_filter=lambda n: n.endswith("hook_post"))
                              for m in (raw, proc))
    drift, scale = M.processing_drift(lr, lp, centres=True)
    assert drift < 1e-5 * max(1.0, scale)
    for name in cr.keys():
        torch.testing.assert_close(cp[name], cr[name], rtol=1e-5, atol=1e-5)


def test_processed_logits_equal_up_to_constant(tiny_dir, tiny_bridge):
    hf = GPT2LMHeadModel.from_pretrained(tiny_dir, attn_implementation="eager").eval()
    toks = tiny_bridge.to_tokens("An apple a day keeps the doctor away.")
    with torch.no_grad():
        d = hf(toks).logits - tiny_bridge(toks)
    assert (d - d.mean(-1, keepdim=True)).abs().max() < 1e-4


def test_folder_without_tokenizer_is_refused(tiny_dir, tmp_path):
    hf = GPT2LMHeadModel.from_pretrained(tiny_dir)
    hf.save_pretrained(tmp_path / "no-tok")
    with pytest.raises(M.ModelError, match="no tokenizer files"):
        M.load_model(str(tmp_path / "no-tok"), device="cpu", dtype="float32")


def test_missing_folder_and_offline_hub_are_one_line(monkeypatch):
    with pytest.raises(M.ModelError, match="does not exist"):
        M.load_model("./no/such/folder", device="cpu", dtype="float32")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(M.ModelError) as e:
        M.load_model("gpt2-large", device="cpu", dtype="float32")
    msg = str(e.value)
    assert "\n" not in msg and "gpt2-large" in msg and "hub" in msg and "folder" in msg
    from anneuron.dataset.engines import load_engine

    with pytest.raises(M.ModelError) as e:  # the dataset pass's engine loads through the same loader
        load_engine("gpt2-large", device="cpu", dtype="float32", engine="auto")
    assert str(e.value) == msg


def test_device_and_dtype():
    """The same dtype on every device; no `auto` (it meant bf16 on CUDA)."""
    assert M.resolve_device("cpu") == "cpu"
    assert [M.resolve_dtype(d) for d in ("float32", "bfloat16", "float16")] == [torch.float32, torch.bfloat16,
                                                                                 torch.float16]
    assert M.resolve_dtype(torch.bfloat16) == torch.bfloat16
    for bad in ("auto", "fp32", torch.float64):
        with pytest.raises(ValueError, match=repr(bad) if isinstance(bad, str) else "float64"):
            M.resolve_dtype(bad)
    if not torch.cuda.is_available():
        assert M.resolve_device("auto") == "cpu"
        with pytest.raises(M.ModelError, match="cuda"):
            M.resolve_device("cuda")
