import copy
from pathlib import Path

from configs import SCHEMA, checked, merged, validated

import pytest
import yaml

from anneuron.config import ConfigError, load_schema, resolve_models, seq_len_for, watch_entries
from anneuron.demos.specs import produced_models

REPO = Path(__file__).resolve().parents[1]
OVERLAYS = sorted(p.relative_to(REPO) for p in (REPO / "workflow/configs").glob("*.yaml"))


@pytest.fixture
def demo():
    return merged("workflow/configs/demo-planted.yaml")


def check(config: dict, *named_experiments: str) -> dict:
    return checked(config, named_experiments)


def test_defaults_and_files_are_valid(demo):
    cfg = check(demo)
    assert cfg["patching"]["joint_k"] == [1, 2, 5, 10, 20, 50]
    assert set(cfg["experiments"]) >= {"an_a", "tall_short", "big_small", "huge_tiny", "an_picked", "though_as"}
    assert all(e["neuron_layers"] == "auto" for e in cfg["experiments"].values())
    assert watch_entries(cfg, "demo-planted")[0] == (2, 892, " an")
    # the real study parses without the network (GPT-2 family hub names use the offline tokenizer)
    check(merged())
    assert watch_entries(check(merged()), "gpt2-large")[0] == (31, 892, " an")


def test_seq_len_auto_and_cap(demo):
    cfg = check(demo)
    demo_spec = resolve_models(cfg, produced_models)["demo-planted"]
    assert seq_len_for(cfg, [demo_spec]) == 128
    cfg["data"]["seq_len"] = "auto"
    assert seq_len_for(cfg, [demo_spec]) == 256
    assert seq_len_for(cfg, list(resolve_models(dict(cfg, models=["gpt2-large"])).values())) == 1024


def test_the_pinned_revision_reaches_the_model_spec():
    """`revisions:` is read once, into the ModelSpec: the fetch rule takes it from there (and records the commit it
    resolved to in fetched.json, which provenance reads)."""
    cfg = check(dict(merged(), revisions={"gpt2-large": "a1b2c3d"}))
    assert resolve_models(cfg)["gpt2-large"].revision == "a1b2c3d"
    assert resolve_models(check(merged()))["gpt2-large"].revision is None


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda c: c.update(bogus=1), "unknown key bogus"),
        (lambda c: c["data"].update(seq_len=0), "data.seq_len: 0 must be 'auto' or an integer >= 2"),
        (lambda c: c["data"].update(shards=0), "data.shards: 0 must be 'auto' or an integer >= 1"),
        (lambda c: c["data"].update(max_docs=0), "data.max_docs: 0 must be null or an integer >= 1"),
        (lambda c: c.update(data=5), "data: 5 is not of type 'object'"),
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
        (lambda c: c.update(universality={"models": ["resources/models/demo-planted", "gpt2"]}),
         "universality.models: gpt2 is not one of models:"),
        (lambda c: c.update(models=["resources/models/demo-planted", "resources/models/smollm2-135m"],
                            universality={"models": ["resources/models/demo-planted",
                                                     "resources/models/smollm2-135m"]}),
         "universality.models: demo-planted (tokenizer gpt2) and smollm2-135m (tokenizer smollm2-135m) do not share"),
        (lambda c: c.update(universality={"threshold": 1.5}), "universality.threshold"),
        (lambda c: c.update(universality={"models": ["resources/models/demo-planted"]}), "universality.models"),
    ],
)
def test_errors_are_one_line_naming_the_key(demo, edit, message):
    cfg = copy.deepcopy(demo)
    edit(cfg)
    with pytest.raises(ConfigError) as e:
        check(cfg)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_experiments_defaults_false_keeps_only_the_experiments_a_configfile_names(demo):
    """The Snakefile names the experiments of Snakemake's overlay (the configfiles and --config): config.yaml's own
    are dropped unless a configfile names them, e.g. to change their layers."""
    demo_names = tuple(yaml.safe_load((REPO / "workflow/configs/demo-planted.yaml").read_text())["experiments"])
    cfg = check(dict(demo, experiments_defaults=False), *demo_names)
    assert set(cfg["experiments"]) == {"an_picked", "though_even", "though_as", "off_turned", "slash_km"}
    paper = merged("workflow/configs/paper.yaml")
    paper["experiments_defaults"] = False
    paper["experiments"]["my_pair"] = dict(clean="John is tall. Mary is", corrupted="John is short. Mary is",
                                           answer=" short", wrong=" tall")
    named = (*yaml.safe_load((REPO / "workflow/configs/paper.yaml").read_text())["experiments"], "my_pair")
    # paper.yaml names all four defaults (to change their patched layers): they stay, with the study's own
    assert set(check(paper, *named)["experiments"]) == {"an_a", "tall_short", "big_small", "huge_tiny", "my_pair"}
    defaults = yaml.safe_load((REPO / "config.yaml").read_text())["experiments"]
    assert set(check(demo, *demo_names)["experiments"]) >= set(defaults)


def _defaults_landed(schema: dict, given: dict, filled: dict, where: str = "") -> int:
    """Checks that every key `schema` has a default for holds it in `filled` wherever `given` (the config before
    validation) leaves it out, at every level (the sections, their keys, each experiment's); returns how many keys
    it checked. The reference: the schema read directly, not through a validator."""
    n = 0
    for key, sub in schema.get("properties", {}).items():
        path = f"{where}{key}"
        if key not in given:
            assert key in filled or "default" not in sub, f"{path}: its default did not land"
            if key not in filled:
                continue
            if not isinstance(sub.get("default"), dict):
                assert filled[key] == sub["default"], (path, filled[key], sub["default"])
        n += 1
        if "properties" in sub or isinstance(sub.get("additionalProperties"), dict):
            n += _defaults_landed(sub, given.get(key, {}), filled[key], f"{path}.")
    entry = schema.get("additionalProperties")
    if isinstance(entry, dict) and "properties" in entry:  # e.g. each experiment
        for key in set(filled) - set(schema.get("properties", {})):
            n += _defaults_landed(entry, given.get(key, {}), filled[key], f"{where}{key}.")
    return n


@pytest.mark.parametrize("overlay", [None, *OVERLAYS], ids=str)
def test_every_schema_default_lands(overlay):
    """Snakemake's validator fills a nested default only where the schema has a `default` at every level above it:
    config.yaml with each shipped configfile, and a minimal config, get every default the schema holds."""
    schema = load_schema(SCHEMA)
    for given in (merged(*([overlay] if overlay else [])), {"models": ["gpt2"], "dataset": "x.parquet"}):
        filled = validated(given)
        assert _defaults_landed(schema, given, filled) >= 75  # every key of every section (and experiment)


TEMPLATE = {"clean": "I climbed up the {fruit} tree and picked",
            "corrupted": "I climbed up the {fruit} tree and walked", "answer": " an", "wrong": " a"}


def test_a_task_is_pairs_or_a_template_with_fills(demo):
    from anneuron.config import experiment_pairs

    cfg = copy.deepcopy(demo)
    cfg["experiments"]["t_template"] = {"template": TEMPLATE, "fills": [{"fruit": "apple"}, {"fruit": "pear"}]}
    cfg["experiments"]["t_pairs"] = {"pairs": [dict(TEMPLATE, clean="I climbed up the apple tree and picked",
                                                    corrupted="I climbed up the apple tree and walked")]}
    out = check(cfg)
    pairs = experiment_pairs("t_template", out["experiments"]["t_template"])
    assert [p["clean"] for p in pairs] == ["I climbed up the apple tree and picked",
                                           "I climbed up the pear tree and picked"]
    assert out["experiments"]["t_template"]["min_agreement"] == 0.8
    assert experiment_pairs("an_a", out["experiments"]["an_a"]) == [
        {k: out["experiments"]["an_a"][k] for k in ("clean", "corrupted", "answer", "wrong")}]


@pytest.mark.parametrize(
    "entry, message",
    [
        ({"template": TEMPLATE, "fills": [{"fruit": "apple"}, {"fruit": "cherry blossom"}]},
         "experiments.t.fills.1: its prompts are 10 tokens for demo-planted and the first pair's 8"),
        ({"template": TEMPLATE, "fills": [{"fruit": "apple"}, {"tree": "pear"}]},
         "experiments.t.fills.1: no value for the template's {fruit}"),
        ({"template": TEMPLATE}, "experiments.t: 'fills' is a required property of a template"),
        ({"template": TEMPLATE, "fills": [{"fruit": "apple"}], "clean": "x"},
         "experiments.t: give one of clean/corrupted/answer/wrong, pairs, or template with fills"),
        ({"pairs": [dict(TEMPLATE, clean="a b", corrupted="a b c", answer=" an")]},
         "experiments.t.pairs.0: clean is 2 tokens and corrupted 3"),
        ({"pairs": [dict(TEMPLATE, answer=" an apple")]}, "experiments.t.pairs.0.answer: ' an apple' is 2 tokens"),
        ({"pairs": []}, "experiments.t.pairs"),
        ({"pairs": [{"clean": "x"}]}, "experiments.t.pairs.0"),
        ({"template": TEMPLATE, "fills": [{"fruit": "apple"}], "min_agreement": 1.5}, "experiments.t.min_agreement"),
    ],
)
def test_task_errors_are_one_line_naming_the_pair(demo, entry, message):
    cfg = copy.deepcopy(demo)
    cfg["experiments"]["t"] = entry
    with pytest.raises(ConfigError) as e:
        check(cfg)
    assert message in str(e.value) and "\n" not in str(e.value), str(e.value)


def test_tasks_yaml_is_valid_for_smollm2_and_each_task_has_ten_pairs():
    """The shipped tasks: every pair one token length for SmolLM2's tokenizer (its model folder from the demo, when
    built; the lengths were chosen for it), >= 10 pairs per task."""
    from anneuron.config import experiment_pairs

    tasks = yaml.safe_load((REPO / "workflow/configs/tasks.yaml").read_text())["experiments"]
    assert len(tasks) >= 6 and all(len(experiment_pairs(n, e)) >= 10 for n, e in tasks.items())
    if not (REPO / "resources/models/smollm2-135m/config.json").exists():
        pytest.skip("SmolLM2 is built by `make demo DEMO=smollm2-wiki`")
    check(merged("workflow/configs/smollm2-wiki.yaml", "workflow/configs/tasks.yaml"))


def test_tasks_planted_yaml_is_valid_for_the_planted_demo():
    from anneuron.config import experiment_pairs

    cfg = check(merged("workflow/configs/demo-planted.yaml", "workflow/configs/tasks-planted.yaml"))
    tasks = yaml.safe_load((REPO / "workflow/configs/tasks-planted.yaml").read_text())["experiments"]
    assert all(len(experiment_pairs(n, cfg["experiments"][n])) >= 10 for n in tasks)
