import copy
from pathlib import Path

import pytest
import yaml

from anneuron.config import ConfigError, check, load_schema, resolve_models, seq_len_for, watch_entries
from anneuron.demos.specs import DATA_FILES, produced_models

REPO = Path(__file__).resolve().parents[1]
SCHEMA = load_schema(REPO / "workflow/schemas/config.schema.yaml")


def merged(*files):
    """config.yaml with config files merged on top, as Snakemake's --configfile does."""
    from snakemake.utils import update_config

    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    for f in files:
        update_config(cfg, yaml.safe_load((REPO / f).read_text()))
    return cfg


@pytest.fixture
def demo():
    return merged("workflow/configs/demo-planted.yaml")


def test_defaults_and_files_are_valid(demo):
    cfg = check(demo, SCHEMA, produced_models, DATA_FILES)
    assert cfg["patching"]["joint_k"] == [1, 2, 5, 10, 20, 50]
    assert set(cfg["experiments"]) >= {"an_a", "tall_short", "big_small", "huge_tiny", "an_picked", "though_as"}
    assert all(e["neuron_layers"] == "auto" for e in cfg["experiments"].values())
    assert watch_entries(cfg, "demo-planted")[0] == (2, 892, " an")
    # the real study parses without the network (GPT-2 family hub names use the offline tokenizer)
    check(merged(), SCHEMA, produced_models, DATA_FILES)
    assert watch_entries(check(merged(), SCHEMA, produced_models, DATA_FILES), "gpt2-large")[0] == (31, 892, " an")


def test_seq_len_auto_and_cap(demo):
    cfg = check(demo, SCHEMA, produced_models, DATA_FILES)
    demo_spec = resolve_models(cfg, produced_models)["demo-planted"]
    assert seq_len_for(cfg, [demo_spec]) == 128
    cfg["data"]["seq_len"] = "auto"
    assert seq_len_for(cfg, [demo_spec]) == 256
    assert seq_len_for(cfg, list(resolve_models(dict(cfg, models=["gpt2-large"])).values())) == 1024


def test_the_pinned_revision_reaches_the_model_spec():
    """`revisions:` is read once, into the ModelSpec: the fetch rule takes it from there (and records the commit it
    resolved to in fetched.json, which provenance reads)."""
    cfg = check(dict(merged(), revisions={"gpt2-large": "a1b2c3d"}), SCHEMA, produced_models, DATA_FILES)
    assert resolve_models(cfg)["gpt2-large"].revision == "a1b2c3d"
    assert resolve_models(check(merged(), SCHEMA, produced_models, DATA_FILES))["gpt2-large"].revision is None


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda c: c.update(bogus=1), "unknown key bogus"),
        (lambda c: c["data"].update(seq_len=0), "data.seq_len"),
        (lambda c: c["data"].update(seq_len=4096), "data.seq_len 4096 exceeds the context"),
        (lambda c: c["record"].update(batch_size="8"), "record.batch_size"),
        (lambda c: c["curves"].update(bin_width=-0.1), "curves.bin_width"),
        (lambda c: c.update(models=["resources/models/nope"]), "folder resources/models/nope does not exist"),
        (lambda c: c.update(dataset="resources/data/nope.parquet"), "dataset: resources/data/nope.parquet"),
        (lambda c: c["experiments"]["an_a"].update(answer=" an apple"), "experiments.an_a.answer"),
        (lambda c: c["experiments"]["an_a"].update(clean="Hi there"), "experiments.an_a: clean is"),
        (lambda c: c["experiments"]["an_a"].pop("wrong"), "experiments.an_a: 'wrong' is a required"),
        (lambda c: c["watch"]["neurons"].update({"demo-planted": ["L2X5"]}), "watch.neurons.demo-planted.0"),
        (lambda c: c["congruence"].update(tokens=[" ancient history"]), "congruence.tokens"),
        (lambda c: c["watch"]["neurons"].update({"demo-planted": ["L9N1"]}),
         "watch.neurons.demo-planted: L9N1 is out of range for demo-planted (4 layers × 1024 neurons)"),
        (lambda c: c["watch"]["neurons"].update({"demo-planted": ["L1N1024"]}), "L1N1024 is out of range"),
        (lambda c: c["experiments"]["an_a"].update(neuron_layers=[1, 4]),
         "experiments.an_a.neuron_layers: layer 4 is out of range for demo-planted (4 layers)"),
        (lambda c: c.update(models=["gpt2-larg"]), "models: model 'gpt2-larg': not a folder"),
        (lambda c: c["curves"].update(readout="post"), "curves.readout: post counts the post's readout"),
        (lambda c: c["curves"].update(binning="post", bin_width=0.25), "curves.binning: post bins by"),
        (lambda c: c.update(dtype="auto"), "dtype: 'auto' is not one of ['float32', 'bfloat16', 'float16']"),
        (lambda c: c.update(models=["resources/models/demo-planted", "elsewhere/demo-planted"]),
         "two models share the id demo-planted"),
    ],
)
def test_errors_are_one_line_naming_the_key(demo, edit, message):
    cfg = copy.deepcopy(demo)
    edit(cfg)
    with pytest.raises(ConfigError) as e:
        check(cfg, SCHEMA, produced_models, DATA_FILES)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_experiments_defaults_false_drops_the_unchanged_defaults(demo):
    defaults = yaml.safe_load((REPO / "config.yaml").read_text())["experiments"]
    cfg = check(dict(demo, experiments_defaults=False), SCHEMA, produced_models, DATA_FILES, defaults)
    assert set(cfg["experiments"]) == {"an_picked", "though_even", "though_as", "off_turned", "slash_km"}
    paper = merged("workflow/configs/paper.yaml")
    paper["experiments_defaults"] = False
    paper["experiments"]["my_pair"] = dict(clean="John is tall. Mary is", corrupted="John is short. Mary is",
                                           answer=" short", wrong=" tall")
    kept = check(paper, SCHEMA, produced_models, DATA_FILES, defaults)["experiments"]
    # paper.yaml changed all four defaults (their patched layers): they stay, with the study's own
    assert set(kept) == {"an_a", "tall_short", "big_small", "huge_tiny", "my_pair"}
    assert set(check(demo, SCHEMA, produced_models, DATA_FILES, defaults)["experiments"]) >= set(defaults)
