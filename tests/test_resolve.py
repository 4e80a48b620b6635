"""The model resolver (anneuron/resolve.py): every kind of model name, decided once, offline, without torch."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from anneuron import resolve as R


def test_ids_and_locality():
    assert R.model_id("openai-community/gpt2-large") == "gpt2-large"
    assert R.model_id("resources/models/demo-planted/") == "demo-planted"
    assert R.is_local("resources/models/x") and not R.is_local("gpt2-large")


def test_gpt2_hub_names_resolve_offline_with_their_shapes():
    spec = R.resolve("openai-community/gpt2-large")
    assert (spec.id, spec.local, spec.tokenizer_id, spec.family) == ("gpt2-large", False, "gpt2", "gpt2")
    assert (spec.n_layers, spec.d_mlp, spec.n_ctx, spec.n_neurons) == (36, 5120, 1024, 184_320)
    assert len(spec.tokenizer()) == 50257


def test_a_folder_is_read_from_its_config(tiny_dir):
    spec = R.resolve(str(tiny_dir))
    cfg = json.loads((tiny_dir / "config.json").read_text())
    assert spec.local and spec.id == tiny_dir.name and spec.tokenizer_id == "gpt2"
    assert (spec.n_layers, spec.d_model, spec.n_ctx) == (cfg["n_layer"], cfg["n_embd"], cfg["n_positions"])


def test_a_produced_folder_resolves_before_it_exists():
    spec = R.resolve("resources/models/not-built-yet", {"resources/models/not-built-yet": R.Produced(2, 8, 16, 32)})
    assert (spec.n_layers, spec.d_model, spec.d_mlp, spec.n_ctx, spec.tokenizer_id) == (2, 8, 16, 32, "gpt2")


def test_errors_are_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache" / "hub"))
    for name, match in [("gpt2-larg", "not in the local Hugging Face cache"),
                        ("someone/some-model", "not a folder"),
                        ("./no/such/folder", "does not exist")]:
        with pytest.raises(R.ModelError, match=match) as e:
            R.resolve(name)
        assert "\n" not in str(e.value) and name.strip("./") in str(e.value)


def test_a_cached_hub_model_resolves_from_the_cache_only(tmp_path, monkeypatch):
    """A hub name that is in the local cache resolves from its cached config.json, with no network."""
    cache = tmp_path / "hub"
    snap = cache / "models--someone--tiny-llama" / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    (snap / "config.json").write_text(json.dumps(dict(model_type="llama", num_hidden_layers=3, hidden_size=64,
                                                      intermediate_size=128, max_position_embeddings=2048,
                                                      vocab_size=1000)))
    (cache / "models--someone--tiny-llama" / "refs").mkdir()
    (cache / "models--someone--tiny-llama" / "refs" / "main").write_text("abc123")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(cache))
    spec = R.resolve("someone/tiny-llama")
    assert (spec.family, spec.n_layers, spec.d_mlp, spec.n_ctx, spec.tokenizer_id) == ("llama", 3, 128, 2048,
                                                                                       "tiny-llama")


def test_neuron_and_stage_checks():
    spec = R.resolve("gpt2")
    spec.check_neuron(11, 3071, "x")
    with pytest.raises(R.ModelError, match="L12N0 is out of range for gpt2"):
        spec.check_neuron(12, 0, "x")
    odd = R.ModelSpec("m", "m", True, None, "m", 8, "bert", "bert", 1, 4, 8, 10)
    with pytest.raises(R.ModelError, match="architecture 'bert' is not supported by the weights stage"):
        odd.check_stage("weights")


def test_seq_len():
    specs = [R.resolve("gpt2"), R.resolve("resources/models/x", {"resources/models/x": R.Produced(1, 8, 8, 256)})]
    assert R.seq_len(specs, "auto") == 256
    assert R.seq_len(specs[:1], "auto") == 1024
    with pytest.raises(R.ModelError, match="exceeds the context"):
        R.seq_len(specs, 512)


def test_resolving_imports_no_torch():
    code = ("import sys; from anneuron import config, resolve, contracts, stage_config; "
            "from anneuron.demos import specs; "
            "resolve.resolve('gpt2-large'); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def write_llama_config(folder, vocab_size: int) -> None:
    """A tiny Llama's config.json (the resolver reads only this; AutoTokenizer validates it)."""
    (folder / "config.json").write_text(json.dumps(dict(
        model_type="llama", num_hidden_layers=2, hidden_size=16, num_attention_heads=2, num_key_value_heads=2,
        intermediate_size=32, vocab_size=vocab_size, max_position_embeddings=64)))


@pytest.fixture(scope="module")
def own_tokenizer_folder(tmp_path_factory):
    """A Llama-shaped model folder (config only) with a tokenizer of its own: a small BPE trained here."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    folder = tmp_path_factory.mktemp("own-tokenizer")
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    text = ["Then he picked an apple and ate an orange.", "She sent a letter, an email and a note."] * 50
    tok.train_from_iterator(text, trainers.BpeTrainer(vocab_size=300, special_tokens=["<s>", "<unk>"]))
    PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", unk_token="<unk>").save_pretrained(folder)
    write_llama_config(folder, 300)
    return folder


TEXTS = [" an", " apple", "Then he picked an apple", " a letter, an email", "zebra", ""]


def test_the_config_checks_token_counts_are_the_tokenizers(own_tokenizer_folder):
    spec = R.resolve(str(own_tokenizer_folder))
    assert spec.tokenizer_id != "gpt2"
    count, tok = spec.token_counter(), spec.tokenizer()
    assert [count(t) for t in TEXTS] == [len(tok.encode(t, add_special_tokens=False)) for t in TEXTS]
    assert count(" an") == 1 and count("Then he picked an apple") > 1


def test_checking_a_model_with_its_own_tokenizer_imports_no_torch(own_tokenizer_folder):
    code = (f"import sys; from anneuron import resolve; c = resolve.resolve({str(own_tokenizer_folder)!r})"
            ".token_counter(); print(c(' an apple'), 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[1] == "False" and int(out[0]) >= 1


def test_a_folder_whose_tokenizer_is_empty_is_refused_in_one_line(tmp_path):
    from tokenizers import Tokenizer, models

    write_llama_config(tmp_path, 1)
    Tokenizer(models.WordLevel({"<unk>": 0}, unk_token="<unk>")).save(str(tmp_path / "tokenizer.json"))
    with pytest.raises(R.ModelError, match=r"^model folder .*: its tokenizer has 1 token\(s\)$"):
        R.resolve(str(tmp_path)).token_counter()


@pytest.mark.parametrize("family", ["gpt_neox", "phi", "gemma2", "gemma3", "qwen3", "olmo2"])
def test_every_family_resolves_and_no_stage_refuses_it(family, tmp_path):
    """A folder of each family's own config resolves to the family of anneuron.architecture's table, which every
    stage supports (README "Models")."""
    from anneuron.demos.families import family_config
    from anneuron.tokenizer import gpt2_tokenizer

    family_config(family).save_pretrained(tmp_path)
    gpt2_tokenizer().save_pretrained(tmp_path)
    spec = R.resolve(str(tmp_path))
    assert spec.family == family and (spec.n_layers, spec.d_model, spec.d_mlp) == (3, 64, 128)
    for stage in R.STAGES:
        spec.check_stage(stage)
