"""The typed config objects the rules pass as params (anneuron.stage_config): built from the validated config,
plain JSON-able dicts as params (Snakemake compares them to decide reruns), rebuilt unchanged by the scripts."""

from __future__ import annotations

import copy
import json

from configs import merged, validated

import pytest

from anneuron import stage_config as S
from anneuron.config import watch_entries
from anneuron.fetch import MODEL_PATTERNS, model_folder
from anneuron.resolve import resolve


@pytest.fixture(scope="module")
def config() -> dict:
    return validated(merged("workflow/configs/demo-planted.yaml"))


def every_object(config: dict) -> dict[str, S.StageConfig]:
    """Each rule's object, as its rule builds it (the model: the demo's)."""
    entries = watch_entries(config, "demo-planted")
    return {
        "fetch_model": S.FetchConfig.of_model(resolve("gpt2").fetched_into(model_folder("gpt2"))),
        "fetch_dataset": S.FetchConfig.of_dataset(config),
        "demo_model": S.DemoModelConfig.of(config), "demo_corpus": S.CorpusConfig.of(config),
        "emergent_corpus": S.CorpusConfig.of_emergent(config, "heldout"),
        "emergent_model": S.EmergentModelConfig.of(config, 64), "tokenize": S.DataConfig.of(config, 128),
        "congruence": S.CongruenceConfig.of(config), "neuron_classes": S.ClassesConfig.of(config),
        "weights_figures": S.WeightsFiguresConfig.of(config, entries), "watch": S.WatchConfig.of(config, entries),
        "record": S.RecordConfig.of(config), "max_examples": S.MaxExamplesConfig.of(config),
        "curves": S.CurvesConfig.of(config), "dataset_figures": S.DatasetFiguresConfig.of(config),
        "experiment": S.ExperimentConfig.of(config, "an_picked"),
        "example_activations": S.ExampleActivationsConfig.of(config),
        "paper_check": S.PaperCheckConfig.of(config, 128),
        "emergent_replicate": S.EmergentModelConfig.of(config, 64, seed=3),
        "universality_tile": S.UniversalityTileConfig.of(config), "universality": S.UniversalityConfig.of(config),
        "universality_properties": S.UniversalityPropertiesConfig.of(config),
        "universality_figures": S.UniversalityFiguresConfig.of(config),
        "stages_layers": S.StagesLayersConfig.of(config),
        "stages_interventions": S.StagesInterventionsConfig.of(config),
    }


def _plain(x) -> bool:
    if isinstance(x, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in x.items())
    if isinstance(x, list):
        return all(_plain(v) for v in x)
    return x is None or isinstance(x, (str, int, float, bool))


def test_params_are_plain_and_round_trip(config):
    for rule, obj in every_object(config).items():
        params = obj.to_dict()
        assert _plain(params), rule
        again = type(obj).from_dict(json.loads(json.dumps(params)))  # as Snakemake hands params to the script
        assert again == obj and again.to_dict() == params, rule


def test_nested_config_objects(config):
    exp = S.ExperimentConfig.of(config, "an_picked")
    assert isinstance(exp.patching, S.PatchingConfig) and exp.patching.joint_k == (1, 2, 5, 10, 20, 50)
    assert exp.to_dict()["patching"] == config["patching"]  # the param: a plain dict, as the config has it
    figures = S.WeightsFiguresConfig.of(config, watch_entries(config, "demo-planted"))
    assert figures.classes == S.ClassesConfig(kurtosis=3.15, partition_var=0.01)
    assert figures.neurons == ((2, 892), (1, 421), (3, 500))
    fetch = every_object(config)["fetch_model"]
    assert (fetch.repo, fetch.repo_type, fetch.revision, fetch.patterns) == ("gpt2", "model", None,
                                                                          tuple(MODEL_PATTERNS))
    broken = exp.to_dict()
    del broken["patching"]["joint_k"]
    with pytest.raises(KeyError, match="PatchingConfig: missing joint_k"):
        S.ExperimentConfig.from_dict(broken)
    with pytest.raises(KeyError, match="MaxExamplesConfig: missing window"):
        S.MaxExamplesConfig.from_dict({"top_k_examples": 20})


@pytest.mark.parametrize("key, value, changed", [
    # the weights figures draw the class thresholds: they rerun with the classes (not the congruence)
    (("classes", "kurtosis"), 4.0, {"neuron_classes", "weights_figures"}),
    (("congruence", "tokens"), [" an"], {"weights_figures"}),
    (("congruence", "basis"), "wu", {"congruence", "weights_figures", "paper_check"}),
    # record.window is max_examples' and the example pass's, not record's
    (("record", "window"), 12, {"max_examples", "example_activations"}),
    (("record", "batch_size"), 4, {"record", "example_activations"}),
    (("curves", "bin_width"), 0.1, {"curves"}),
    (("curves", "min_count"), 5, {"curves", "dataset_figures"}),
    # a bigger held-out corpus must not retrain demo-emergent
    (("demo", "emergent", "heldout_docs"), 10, {"emergent_corpus"}),
    (("demo", "emergent", "d_mlp"), 64, {"emergent_model", "emergent_replicate"}),
    # a replicate's training seed is its own, but its corpus and probes are demo.seed's
    (("demo", "seed"), 1, {"demo_model", "demo_corpus", "emergent_corpus", "emergent_model", "emergent_replicate"}),
    (("patching", "batch_size"), 8, {"experiment"}),
    (("patching", "standout_min_score"), 0, {"experiment", "paper_check"}),
    (("dtype",), "bfloat16", {"record", "experiment", "example_activations", "paper_check", "universality_tile",
                              "universality_properties", "universality_figures"}),
    # which data the counts come from: the paper check says "not comparable" when it is not the post's
    (("data", "config_name"), "en", {"fetch_dataset", "paper_check"}),
    (("data", "max_docs"), 100, {"tokenize", "paper_check"}),
    (("curves", "counts"), "post", {"curves", "dataset_figures", "paper_check"}),
    (("curves", "binning"), "post", {"curves", "dataset_figures", "paper_check"}),
    (("patching", "standout_z"), 6, {"experiment", "paper_check"}),
    (("congruence", "dtype"), "bfloat16", {"congruence", "paper_check"}),
    # the threshold is the merge's and the figures': no tile reruns; the token count reruns every tile
    (("universality", "threshold"), 0.3, {"universality", "universality_figures"}),
    (("universality", "max_tokens"), 1000, {"universality_tile", "universality_properties"}),
    (("universality", "baseline", "seed"), 1, {"universality_tile"}),
    (("universality", "top_pairs"), 5, {"universality_tile", "universality"}),
    # stages.* reach only the stages' own rules; the shared batch size both of them
    (("stages", "max_tokens"), 1000, {"stages_layers"}),
    (("stages", "lens_tokens"), 100, {"stages_layers"}),
    (("stages", "intervention_tokens"), 100, {"stages_interventions"}),
    (("stages", "batch_size"), 2, {"stages_layers", "stages_interventions"}),
    (("device",), "auto", {"congruence", "record", "experiment", "example_activations", "stages_layers",
                         "stages_interventions", "universality_tile", "universality_properties",
                         "universality_figures"}),
])
def test_a_config_change_changes_exactly_the_objects_of_the_rules_it_concerns(config, key, value, changed):
    """What Snakemake's params trigger sees: only these rules' params differ (their rules rerun, and what reads
    their outputs after them)."""
    edited = copy.deepcopy(config)
    node = edited
    for k in key[:-1]:
        node = node[k]
    node[key[-1]] = value
    before, after = every_object(config), every_object(edited)
    assert {rule for rule in before if before[rule].to_dict() != after[rule].to_dict()} == changed


TASK = {"template": {"clean": "I climbed up the {fruit} tree and picked",
                     "corrupted": "I climbed up the {fruit} tree and walked", "answer": " an", "wrong": " a"},
        "fills": [{"fruit": "apple"}, {"fruit": "pear"}]}


def _with_tasks(config: dict, **tasks: dict) -> dict:
    return validated({**copy.deepcopy(config), "experiments": {**config["experiments"], **tasks}})


def test_a_task_gets_a_task_config_and_a_pair_keeps_its_own(config):
    cfg = _with_tasks(config, t1=TASK, t2=TASK)
    task, single = S.experiment_config(cfg, "t1"), S.experiment_config(cfg, "an_picked")
    assert isinstance(task, S.TaskConfig) and isinstance(single, S.ExperimentConfig)
    assert single == S.ExperimentConfig.of(config, "an_picked")  # the params of a single pair are unchanged
    assert [p["clean"] for p in task.pairs] == ["I climbed up the apple tree and picked",
                                                "I climbed up the pear tree and picked"]
    for obj in (task, single):
        params = obj.to_dict()
        assert _plain(params) and S.experiment_config_from_dict(json.loads(json.dumps(params))) == obj


def test_changing_one_pair_of_a_task_changes_only_that_tasks_params(config):
    """Snakemake reruns a job whose params changed: one pair of t1 changed leaves t2 and every experiment as they
    were (the dry-run of tests/test_workflow.py shows the same on a built workflow)."""
    before = _with_tasks(config, t1=TASK, t2=TASK)
    changed = copy.deepcopy(TASK)
    changed["fills"][1] = {"fruit": "plum"}
    after = _with_tasks(config, t1=changed, t2=TASK)
    differs = {name for name in before["experiments"]
               if S.experiment_config(before, name).to_dict() != S.experiment_config(after, name).to_dict()}
    assert differs == {"t1"}
