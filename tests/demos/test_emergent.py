"""demo-emergent: the a/an corpus obeys its rule, training is deterministic and learns, the trained model goes back
into the full GPT-2 vocabulary unchanged, and the pipeline can load it processed."""

import re

import pyarrow.parquet as pq
import pytest
import torch
import torch.nn.functional as F

from anneuron.demos import emergent_corpus as E
from anneuron.demos.training import (
    eval_windows,
    expand_vocab,
    full_vocab_loss,
    remap,
    save_trained,
    token_stream,
    train,
)
from anneuron.stage_config import TrainConfig
from anneuron.tokenizer import EOS_ID, GPT2_VOCAB_SIZE, gpt2_tokenizer

TINY = TrainConfig(n_layer=1, d_model=32, d_mlp=32, n_head=2, n_ctx=32, tied=True, steps=80, batch_size=8, lr=3e-3,
                   weight_decay=0.1, warmup=5, eval_every=20, patience=100, val_tolerance=0.005, seed=0, threads=1)
N_EVAL = 16  # evaluation windows: fewer than the demo's, for speed


@pytest.fixture(scope="module")
def texts():
    return E.documents(150, seed=5)


@pytest.fixture(scope="module")
def trained(texts):
    return train(texts, TINY, progress=False, n_eval=N_EVAL)


# --- corpus --------------------------------------------------------------------------------------------------------


def test_article_follows_first_sound():
    assert [E.article(w) for w in ("apple", "pear", "unicorn", "uniform", "honest", "egg", "umbrella")] == [
        "an", "a", "a", "a", "an", "an", "an"]


def test_corpus_articles_agree_with_the_next_word(tmp_path):
    E.write_corpus(tmp_path / "a.parquet", n_docs=300, seed=3)
    E.write_corpus(tmp_path / "b.parquet", n_docs=300, seed=3)
    assert (tmp_path / "a.parquet").read_bytes() == (tmp_path / "b.parquet").read_bytes()
    docs = pq.read_table(tmp_path / "a.parquet").column("text").to_pylist()
    pairs = re.findall(r"\b(a|an) (\w+)", " ".join(docs))
    assert len(pairs) > 1000
    assert all(art == E.article(word) for art, word in pairs)
    assert {art for art, _ in pairs} == {"a", "an"}
    assert sum(art == "an" for art, _ in pairs) > 0.25 * len(pairs)  # " an" is not rare here
    assert docs != E.documents(300, seed=4)


def test_probes_end_before_a_predictable_article():
    items = E.probes(200, seed=1)
    docs = " ".join(E.documents(200, seed=1))
    for p in items:
        assert p.article == E.article(p.noun)
        assert p.noun in p.prefix.split() or f"{p.noun}," in p.prefix  # the noun is in the context already
        assert not p.prefix.endswith((" a", " an"))
    assert {p.article for p in items} == {"a", "an"}
    assert "climbed up the" in docs  # the post's template is in the corpus


# --- training ------------------------------------------------------------------------------------------------------


def test_remap_and_windows():
    stream = token_stream(["an apple", "a pear"])
    assert stream[0] == EOS_ID and list(stream).count(EOS_ID) == 3
    from anneuron.demos.training import vocabulary

    vocab = vocabulary(stream)
    small = remap(stream, vocab)
    assert torch.equal(vocab[small], torch.from_numpy(stream))
    x, y = eval_windows(small, 2, 3, bos=0)
    assert x.shape == y.shape == (2, 3) and (x[:, 0] == 0).all() and torch.equal(x[:, 1:], y[:, :-1])


def test_tiny_training_lowers_the_loss(trained):
    curve = trained.record["curve"]
    assert curve[0]["val"] < 10.9  # ~log(50,257) at init: the full-vocabulary loss
    assert trained.record["val_loss"] < curve[0]["val"] - 2.0
    low, chosen = float("inf"), None  # the latest step within val_tolerance of the lowest validation loss so far
    for p in curve:
        low = min(low, p["val"])
        chosen = p["step"] if p["val"] <= low + TINY.val_tolerance else chosen
    assert trained.record["step_chosen"] == chosen


def test_training_is_deterministic(texts):
    cfg = TrainConfig(**{**TINY.__dict__, "steps": 15, "eval_every": 5})
    a, b = (train(texts, cfg, progress=False, n_eval=N_EVAL) for _ in range(2))
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert a.record["curve"] == b.record["curve"]
    c = train(texts, TrainConfig(**{**cfg.__dict__, "seed": 1}), progress=False, n_eval=N_EVAL)
    key = "transformer.h.0.mlp.c_fc.weight"
    assert not torch.equal(c.model.state_dict()[key], sa[key])


def test_full_vocabulary_model_is_the_trained_one(trained, texts):
    """Used ids keep their logits, unused ids get exactly 0: top-1 and the full cross-entropy are the trained ones."""
    full = expand_vocab(trained.model, trained.vocab).eval()
    stream = token_stream(texts[-5:])[: 4 * TINY.n_ctx]
    x = torch.from_numpy(stream).view(4, TINY.n_ctx)
    with torch.no_grad():
        small_logits = trained.model(remap(stream, trained.vocab).view(4, TINY.n_ctx)).logits
        full_logits = full(x).logits
    assert full_logits.shape[-1] == GPT2_VOCAB_SIZE
    torch.testing.assert_close(full_logits[..., trained.vocab], small_logits, rtol=1e-5, atol=1e-5)
    unused = torch.ones(GPT2_VOCAB_SIZE, dtype=torch.bool)
    unused[trained.vocab] = False
    assert (full_logits[..., unused] == 0).all()
    assert torch.equal(full_logits.argmax(-1), trained.vocab[small_logits.argmax(-1)])
    y = x[:, 1:]
    n_unused = GPT2_VOCAB_SIZE - len(trained.vocab)
    small_y = remap(y.flatten().numpy(), trained.vocab).view(y.shape)
    torch.testing.assert_close(F.cross_entropy(full_logits[:, :-1].flatten(0, 1), y.flatten()),
                               full_vocab_loss(small_logits[:, :-1], small_y, n_unused), rtol=1e-5, atol=1e-5)


def test_saved_model_loads_processed(trained, tmp_path):
    """d_mlp == d_model: TransformerLens 4.3 alone folds ln_2 along the wrong axis; load_model must still give the
    trained model's logits (up to a per-position constant) and its MLP activations."""
    from transformers import GPT2LMHeadModel

    from anneuron.models import load_model

    save_trained(tmp_path / "m", trained, {"note": "test"})
    assert (tmp_path / "m" / "training.json").exists()
    hf = GPT2LMHeadModel.from_pretrained(tmp_path / "m").eval()
    with torch.no_grad():  # randomise the LayerNorms so that folding matters
        g = torch.Generator().manual_seed(0)
        for name, p in hf.named_parameters():
            if "ln" in name:
                p.add_(0.3 * torch.randn(p.shape, generator=g))
    hf.save_pretrained(tmp_path / "m")
    bridge = load_model(str(tmp_path / "m"), device="cpu", dtype="float32")
    toks = bridge.to_tokens("I climbed up the pear tree and picked a pear.")
    acts = []
    handle = hf.transformer.h[0].mlp.act.register_forward_hook(lambda mod, inp, out: acts.append(out))
    with torch.no_grad():
        raw = hf(toks)
        logits, cache = bridge.run_with_cache(toks, names_filter=lambda n: n == "blocks.0.mlp.hook_post")
    handle.remove()
    diff = raw.logits - logits
    assert (diff - diff.mean(-1, keepdim=True)).abs().max() < 1e-4
    torch.testing.assert_close(cache["blocks.0.mlp.hook_post"], acts[0], rtol=1e-4, atol=1e-4)


# --- workflow config -----------------------------------------------------------------------------------------------


def test_demo_config_is_valid_and_prompts_pair_up():
    from configs import checked, merged

    cfg = checked(merged("workflow/configs/demo-emergent.yaml"))
    assert cfg["demo"]["emergent"]["d_mlp"] == 128 and cfg["demo"]["emergent"]["tied"] is True
    tok = gpt2_tokenizer()
    vocab = set(token_stream(E.documents(300, seed=0)).tolist())
    ours = {k: e for k, e in cfg["experiments"].items() if k.startswith("an_")}
    assert len(ours) >= 4
    for name, e in ours.items():
        assert (e["answer"], e["wrong"]) == (" an", " a")
        clean, corrupted = tok.encode(e["clean"]), tok.encode(e["corrupted"])
        assert len(clean) == len(corrupted), name
        assert set(clean) | set(corrupted) <= vocab, name  # every prompt token was seen in training
