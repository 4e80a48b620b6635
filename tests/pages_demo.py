"""The planted demo's tables, built the way the pipeline's rules build them but on the small session corpus
(tests/conftest.py: demo_dir, demo_congruence, demo_recorded), and its neuron pages: what the pages tests and the
browser test run on, in seconds, on a fresh clone."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import yaml

from anneuron import contracts as K
from anneuron.io import write_json, write_parquet

REPO = Path(__file__).resolve().parents[1]
TOP_K = 5  # demo_recorded's top_k
WINDOW = 24  # record.window's default
EXPERIMENTS = ("an_picked", "slash_km")


def build_max_examples(demo_recorded: dict, out: Path) -> Path:
    from anneuron.dataset.max_examples import build_max_examples as build
    from anneuron.tokenizer import gpt2_tokenizer

    table = build(demo_recorded["topk"], demo_recorded["shards"], gpt2_tokenizer(), k=TOP_K, window=WINDOW)
    write_parquet(out, table)
    return out


def build_demo_tables(root: Path, demo_dir: Path, demo_congruence: dict, demo_recorded: dict, demo_bridge,
                      model: str = "demo-planted", dataset: str = "demo-planted") -> None:
    """Every table the pages read, at its contracts path below `root` (results/{model}/…)."""
    from configs import experiment_config

    from anneuron.dataset.curves import summarize
    from anneuron.dataset.engines import load_engine
    from anneuron.dataset.watch import Watched, resolve_tokens, watched_table
    from anneuron.experiments.experiment import run_experiment
    from anneuron.pages.example_activations import run_pass
    from anneuron.tokenizer import gpt2_tokenizer
    from anneuron.weights.neuron_classes import with_classes
    from anneuron.weights.pairs import pairs_table

    at = lambda key, **w: root / K.path(key, model=model, **w)  # noqa: E731
    tok = gpt2_tokenizer()
    cfg = yaml.safe_load((REPO / "workflow/configs/demo-planted.yaml").read_text())
    write_parquet(at("weights_tokens"), demo_congruence["tokens"])
    write_parquet(at("weights_stats"), demo_congruence["neurons"])
    write_parquet(at("neurons"), with_classes(demo_congruence["neurons"], cfg["classes"]["kurtosis"],
                                              cfg["classes"]["partition_var"]))
    write_parquet(at("pairs"), pairs_table(demo_congruence["tokens"], demo_congruence["neurons"]))
    write_json(at("weights_summary"), {"basis": "we", "top_k": 16})
    # dataset pass: the session corpus's shards, watching what demo_recorded recorded
    watched = resolve_tokens([Watched(layer, n, source="config") for layer, n in demo_recorded["watched"]],
                             at("neurons"), tok)
    write_parquet(at("watched", dataset=dataset), watched_table(watched))
    curves, predictions = summarize(demo_recorded["tokens"], watched, 0.2, 10, tok, readout="logits", binning="floor",
                                    counts="next", progress=False)
    write_parquet(at("curves", dataset=dataset), curves)
    write_parquet(at("predictions", dataset=dataset), predictions)
    build_max_examples(demo_recorded, at("max_examples", dataset=dataset))
    run_pass(load_engine(str(demo_dir), device="cpu", dtype="float32", engine="auto"),
             at("max_examples", dataset=dataset), demo_recorded["shards"], at("example_activations", dataset=dataset),
             tok, window=WINDOW, batch_size=8, progress=False)
    # two of the demo's experiments
    for name in EXPERIMENTS:
        exp = dict(cfg["experiments"][name], name=name)
        run_experiment(demo_bridge, experiment_config(exp)).write(
            K.experiment_files(at("exp_neurons", exp=name).parent))
    assert pq.read_metadata(at("example_activations", dataset=dataset)).num_rows > 0


def build_demo_site(root: Path, demo_dir: Path, demo_congruence: dict, demo_recorded: dict, demo_bridge,
                    model: str = "demo-planted") -> Path:
    """The tables, then the site; returns the site's index.html."""
    from anneuron.pages import Sources, build_site

    build_demo_tables(root, demo_dir, demo_congruence, demo_recorded, demo_bridge, model=model)
    src = Sources.of(model, "demo-planted", list(EXPERIMENTS), root=root)
    src.experiments_summary = None
    index = root / K.path("pages_index", model=model)
    build_site(index.parent, src, model)
    return index
