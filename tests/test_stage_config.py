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
    (("demo", "emergent", "d_mlp"), 64, {"emergent_model"}),
    (("demo", "seed"), 1, {"demo_model", "demo_corpus", "emergent_corpus", "emergent_model"}),
    (("patching", "batch_size"), 8, {"experiment"}),
    (("patching", "standout_min_score"), 0, {"experiment", "paper_check"}),
    (("dtype",), "bfloat16", {"record", "experiment", "example_activations", "paper_check"}),
    (("data", "config_name"), "en", {"fetch_dataset"}),
    # stages.* reach only the stages' own rules; the shared batch size both of them
    (("stages", "max_tokens"), 1000, {"stages_layers"}),
    (("stages", "lens_tokens"), 100, {"stages_layers"}),
    (("stages", "intervention_tokens"), 100, {"stages_interventions"}),
    (("stages", "batch_size"), 2, {"stages_layers", "stages_interventions"}),
    (("device",), "auto", {"congruence", "record", "experiment", "example_activations", "stages_layers",
                         "stages_interventions"}),
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
