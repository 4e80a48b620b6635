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
        M.load_model(str(tmp_path / "no-tok"), device="cpu")


def test_missing_folder_and_offline_hub_are_one_line(monkeypatch):
    with pytest.raises(M.ModelError, match="does not exist"):
        M.load_model("./no/such/folder", device="cpu")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(M.ModelError) as e:
        M.load_model("gpt2-large", device="cpu")
    msg = str(e.value)
    assert "\n" not in msg and "gpt2-large" in msg and "hub" in msg and "folder" in msg


def test_device_and_dtype():
    """float32 unless asked, on every device; no `auto` (it meant bf16 on CUDA)."""
    assert M.resolve_device("cpu") == "cpu"
    assert M.resolve_dtype() == torch.float32
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
