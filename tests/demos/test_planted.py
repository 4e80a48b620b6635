"""The planted demo model: deterministic bytes, and its ground truth holds in the model itself."""

import hashlib
import re

import pyarrow.parquet as pq
import torch

from anneuron.demos.planted import EXPERIMENTS, write_demo_corpus, write_planted_model
from anneuron.tokenizer import single_token


def _digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_build_twice_identical_bytes(demo_dir, tmp_path):
    write_planted_model(tmp_path / "again", seed=0)
    assert _digest(tmp_path / "again") == _digest(demo_dir)


def test_planted_neurons_fire_on_triggers_and_lift_their_token(demo_bridge, ground_truth):
    tok = demo_bridge.tokenizer
    names = [f"blocks.{n['layer']}.mlp.hook_post" for n in ground_truth["token_neurons"]]
    for n in ground_truth["token_neurons"]:
        for trig in n["triggers"]:
            toks = demo_bridge.to_tokens(f"This is the text before{trig}")
            assert toks[0, -1].item() == single_token(tok, trig)
            logits, cache = demo_bridge.run_with_cache(toks, names_filter=lambda h: h in names)
            acts = cache[f"blocks.{n['layer']}.mlp.hook_post"][0, :, n["neuron"]]
            assert acts[-1] > 3.0, (n["name"], trig)
            assert acts[:-1].max() < 0.5
            assert logits[0, -1].argmax().item() == n["token_id"]


def test_planted_experiments_prefer_the_answer(demo_bridge):
    tok = demo_bridge.tokenizer
    for e in EXPERIMENTS:
        a, w = single_token(tok, e.answer), single_token(tok, e.wrong)
        with torch.no_grad():
            clean = demo_bridge(demo_bridge.to_tokens(e.clean))[0, -1]
            corr = demo_bridge(demo_bridge.to_tokens(e.corrupted))[0, -1]
        assert clean.argmax().item() == a, e.name
        assert clean[a] - clean[w] > 5 and corr[a] - corr[w] < 0, e.name


def test_corpus_deterministic_with_triggers(tmp_path, ground_truth):
    write_demo_corpus(tmp_path / "a.parquet", n_docs=50, seed=1)
    write_demo_corpus(tmp_path / "b.parquet", n_docs=50, seed=1)
    assert (tmp_path / "a.parquet").read_bytes() == (tmp_path / "b.parquet").read_bytes()
    text = " ".join(pq.read_table(tmp_path / "a.parquet").column("text").to_pylist())
    for n in ground_truth["token_neurons"]:
        for trig in n["triggers"]:
            assert len(re.findall(re.escape(trig) + r"\b", text)) >= 10, trig


def test_demo_config_runs_the_planted_experiments():
    """workflow/configs/demo-planted.yaml and the ground truth name the same prompt pairs."""
    from pathlib import Path

    import yaml

    cfg = yaml.safe_load((Path(__file__).parents[2] / "workflow/configs/demo-planted.yaml").read_text())
    for e in EXPERIMENTS:
        assert cfg["experiments"][e.name] == dict(clean=e.clean, corrupted=e.corrupted, answer=e.answer,
                                                  wrong=e.wrong)
