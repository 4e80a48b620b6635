"""One typed, frozen config object per rule that reads the config, built from the validated config
(docs/config.md).

The schema (workflow/schemas/config.schema.yaml) is the only source of defaults: these classes have none, and
`from_dict` refuses a missing field, so a stage can never run on a default that the schema does not hold. Rules
pass `cfg=X.of(config).to_dict()` as a param (a plain JSON-able dict, so that Snakemake's params trigger reruns
exactly the stages whose object changed); the thin script rebuilds the object with `from_dict` and, for the stages
with a provenance file, writes it beside its outputs (`write`).
"""

from __future__ import annotations

import typing
from dataclasses import dataclass, fields
from functools import cache
from pathlib import Path
from typing import Any

from anneuron.config import dataset_id, experiment_pairs, is_task
from anneuron.fetch import MODEL_PATTERNS, dataset_patterns
from anneuron.io import write_json
from anneuron.resolve import ModelSpec

# demo-emergent's seeds are derived from demo.seed (1000·seed + these), so that a new demo.seed is an independent
# replicate of the training corpus, the held-out corpus and the probes that check the learned rule alike.
EMERGENT_SEEDS = {"train": 1, "heldout": 2, "probes": 3}


def emergent_seed(config: dict, use: str) -> int:
    return 1000 * config["demo"]["seed"] + EMERGENT_SEEDS[use]


def _freeze(value: Any) -> Any:
    """Lists become tuples, so that a config object cannot be changed by the code it is given to."""
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value


def _thaw(value: Any) -> Any:
    if isinstance(value, StageConfig):
        return value.to_dict()
    if isinstance(value, (tuple, list)):
        return [_thaw(v) for v in value]
    if isinstance(value, dict):
        return {k: _thaw(v) for k, v in value.items()}
    return value


@cache
def _nested(cls: type) -> dict[str, type]:
    """Field name -> config class, for the fields of `cls` that are config objects themselves."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in fields(cls)
            if isinstance(hints[f.name], type) and issubclass(hints[f.name], StageConfig)}


@dataclass(frozen=True)
class StageConfig:
    """Base: dict in (every field required, nested config objects too), dict out, JSON provenance."""

    @classmethod
    def from_dict(cls, d: dict):
        missing = [f.name for f in fields(cls) if f.name not in d]
        if missing:
            raise KeyError(f"{cls.__name__}: missing {', '.join(missing)}")
        nested = _nested(cls)
        return cls(**{f.name: nested[f.name].from_dict(d[f.name]) if f.name in nested else _freeze(d[f.name])
                      for f in fields(cls)})

    def to_dict(self) -> dict:
        """Plain dicts and lists only (nested config objects too): what a rule's params and JSON hold."""
        return {f.name: _thaw(getattr(self, f.name)) for f in fields(self)}

    def write(self, path: str | Path, **extra: Any) -> None:
        """The resolved config of this job, beside its outputs (plus e.g. the model it ran on)."""
        write_json(path, {"stage": type(self).__name__, **extra, "config": self.to_dict()})


# --- fetching and the demos ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FetchConfig(StageConfig):
    """One download (fetch_model, fetch_dataset): the hub repository, its type, the revision (None: the default
    branch) and the files to fetch (None: all of them)."""

    repo: str
    repo_type: str
    revision: str | None
    patterns: tuple[str, ...] | None

    @classmethod
    def of_model(cls, spec: ModelSpec) -> "FetchConfig":
        return cls.from_dict(dict(repo=spec.hub, repo_type="model", revision=spec.revision, patterns=MODEL_PATTERNS))

    @classmethod
    def of_dataset(cls, config: dict) -> "FetchConfig":
        data = config["data"]
        return cls.from_dict(dict(repo=config["dataset"], repo_type="dataset",
                                  revision=config["revisions"].get(dataset_id(config["dataset"])),
                                  patterns=dataset_patterns(data["config_name"], data["data_files"])))


@dataclass(frozen=True)
class DemoModelConfig(StageConfig):
    """The planted demo model (demo_model): the seed of its random weights."""

    seed: int

    @classmethod
    def of(cls, config: dict) -> "DemoModelConfig":
        return cls.from_dict(config["demo"])


@dataclass(frozen=True)
class CorpusConfig(StageConfig):
    """A generated corpus: its seed and number of documents (demo_corpus, emergent_corpus)."""

    seed: int
    docs: int

    @classmethod
    def of(cls, config: dict) -> "CorpusConfig":
        """The demo-planted corpus."""
        return cls.from_dict(config["demo"])

    @classmethod
    def of_emergent(cls, config: dict, split: str) -> "CorpusConfig":
        """A demo-emergent corpus, `train` or `heldout`."""
        return cls.from_dict({"seed": emergent_seed(config, split),
                              "docs": config["demo"]["emergent"][f"{split}_docs"]})


@dataclass(frozen=True)
class TrainConfig(StageConfig):
    """How a demo model is trained (anneuron.demos.training): the `demo.emergent` keys that shape it (their defaults,
    the recipe that grows one dominant an neuron, live in the schema only), its context and its seed."""

    n_layer: int
    d_model: int
    d_mlp: int
    n_head: int
    n_ctx: int
    tied: bool
    steps: int
    batch_size: int
    lr: float
    weight_decay: float
    warmup: int
    eval_every: int
    patience: int  # evaluations in a row with validation loss above min + val_tolerance before stopping
    val_tolerance: float  # nats: validation differences below this are noise, not a rise
    seed: int
    threads: int


@dataclass(frozen=True)
class EmergentModelConfig(StageConfig):
    """demo-emergent's training (emergent_model): the probes' seed and how the model is trained. Not the corpus
    sizes: a bigger held-out corpus must not retrain it (a bigger training corpus does, through the rule's input)."""

    probe_seed: int
    train: TrainConfig

    @classmethod
    def of(cls, config: dict, n_ctx: int, seed: int | None = None) -> "EmergentModelConfig":
        """`n_ctx`: the demo model's context (anneuron.demos.specs, which the core does not import). `seed`: the
        training seed of a replicate (emergent_replicate; the corpus and probes stay demo.seed's), else demo.seed."""
        keys = {f.name for f in fields(TrainConfig)} - {"n_ctx", "seed"}
        train = {k: config["demo"]["emergent"][k] for k in keys}
        seed = config["demo"]["seed"] if seed is None else seed
        return cls.from_dict({"probe_seed": emergent_seed(config, "probes"),
                              "train": {**train, "n_ctx": n_ctx, "seed": seed}})


# --- the stages ---------------------------------------------------------------------------------------------------


def n_shards(config: dict) -> int:
    """`data.shards`, resolved: `auto` = one record shard (one GPU job) per GPU the study says it has (`gpus`)."""
    return config["gpus"] if config["data"]["shards"] == "auto" else config["data"]["shards"]


@dataclass(frozen=True)
class DataConfig(StageConfig):
    chunking: str
    seq_len: int  # resolved (the `auto` of the config is the models' context, capped)
    shards: int  # resolved (n_shards)
    max_docs: int | None
    max_tokens: int | None
    text_column: str
    split: str

    @classmethod
    def of(cls, config: dict, seq_len: int) -> "DataConfig":
        return cls.from_dict({**config["data"], "seq_len": seq_len, "shards": n_shards(config)})


@dataclass(frozen=True)
class CongruenceConfig(StageConfig):
    device: str
    basis: str
    top_k: int
    chunk_neurons: int | str
    dtype: str
    save_matrix: bool
    null_dims: int  # the unembedding's bottom singular directions that make its null space (entropy neurons)

    @classmethod
    def of(cls, config: dict) -> "CongruenceConfig":
        return cls.from_dict({**config["congruence"], "device": config["device"]})


@dataclass(frozen=True)
class ClassesConfig(StageConfig):
    kurtosis: float
    partition_var: float

    @classmethod
    def of(cls, config: dict) -> "ClassesConfig":
        return cls.from_dict(config["classes"])


@dataclass(frozen=True)
class WeightsFiguresConfig(StageConfig):
    """weights_figures: the congruence basis, the tokens drawn against all neurons, the neurons listed for this
    model (each drawn against all tokens) and the class thresholds of the classes figure."""

    basis: str
    tokens: tuple[str, ...]
    neurons: tuple  # ((layer, neuron), ...) listed in watch.neurons for this model
    classes: ClassesConfig

    @classmethod
    def of(cls, config: dict, entries: list[tuple[int, int, str | None]]) -> "WeightsFiguresConfig":
        return cls.from_dict({"basis": config["congruence"]["basis"], "tokens": config["congruence"]["tokens"],
                              "neurons": [[layer, neuron] for layer, neuron, _ in entries],
                              "classes": config["classes"]})


@dataclass(frozen=True)
class WatchConfig(StageConfig):
    top_pairs: int
    standouts: int
    neurons: tuple  # ((layer, neuron, token string or None), ...) listed for this model

    @classmethod
    def of(cls, config: dict, entries: list[tuple[int, int, str | None]]) -> "WatchConfig":
        return cls.from_dict({**config["watch"], "neurons": [list(e) for e in entries]})


@dataclass(frozen=True)
class RecordConfig(StageConfig):
    device: str
    dtype: str
    batch_size: int
    top_k_examples: int
    pred_post: bool
    pred_topk: int
    engine: str

    @classmethod
    def of(cls, config: dict) -> "RecordConfig":
        return cls.from_dict({**config["record"], "device": config["device"], "dtype": config["dtype"]})


@dataclass(frozen=True)
class MaxExamplesConfig(StageConfig):
    """max_examples: examples kept per neuron, and the tokens of context in each example's text."""

    top_k_examples: int
    window: int

    @classmethod
    def of(cls, config: dict) -> "MaxExamplesConfig":
        return cls.from_dict(config["record"])


@dataclass(frozen=True)
class CurvesConfig(StageConfig):
    bin_width: float
    min_count: int
    readout: str
    binning: str
    counts: str

    @classmethod
    def of(cls, config: dict) -> "CurvesConfig":
        return cls.from_dict(config["curves"])


@dataclass(frozen=True)
class DatasetFiguresConfig(StageConfig):
    """dataset_figures: how the curves and the counts were made (the bins themselves are in curves.parquet)."""

    min_count: int
    readout: str
    binning: str
    counts: str

    @classmethod
    def of(cls, config: dict) -> "DatasetFiguresConfig":
        return cls.from_dict(config["curves"])


@dataclass(frozen=True)
class PatchingConfig(StageConfig):
    """The `patching:` keys (docs/config.md)."""

    auto_threshold: float
    auto_method: str
    max_auto_layers: int
    attribution_exact_top: int
    standout_z: float
    standout_min_score: float
    batch_size: int
    joint_k: tuple[int, ...]

    @classmethod
    def of(cls, config: dict) -> "PatchingConfig":
        return cls.from_dict(config["patching"])


@dataclass(frozen=True)
class ExperimentConfig(StageConfig):
    """One experiment of the `experiments:` mapping, with the run settings it depends on."""

    name: str
    clean: str
    corrupted: str
    answer: str
    wrong: str
    neuron_layers: str | tuple[int, ...]
    device: str
    dtype: str
    patching: PatchingConfig

    @classmethod
    def of(cls, config: dict, name: str) -> "ExperimentConfig":
        return cls.from_dict({**config["experiments"][name], "name": name, "device": config["device"],
                              "dtype": config["dtype"], "patching": config["patching"]})


@dataclass(frozen=True)
class TaskConfig(StageConfig):
    """A task of the `experiments:` mapping (`pairs:` or `template:` + `fills:`): its pairs, expanded, with the run
    settings it depends on."""

    name: str
    pairs: tuple[dict, ...]  # {clean, corrupted, answer, wrong} each
    neuron_layers: str | tuple[int, ...]
    min_agreement: float
    device: str
    dtype: str
    patching: PatchingConfig

    @classmethod
    def of(cls, config: dict, name: str) -> "TaskConfig":
        entry = config["experiments"][name]
        return cls.from_dict(dict(name=name, pairs=experiment_pairs(name, entry),
                                  neuron_layers=entry["neuron_layers"], min_agreement=entry["min_agreement"],
                                  device=config["device"], dtype=config["dtype"], patching=config["patching"]))


def experiment_config(config: dict, name: str) -> ExperimentConfig | TaskConfig:
    """The config object of one entry of `experiments:`: a single pair's ExperimentConfig (as before tasks
    existed, so its params and outputs stay the same) or a task's TaskConfig."""
    return (TaskConfig if is_task(config["experiments"][name]) else ExperimentConfig).of(config, name)


def experiment_config_from_dict(d: dict) -> ExperimentConfig | TaskConfig:
    """experiment_config's object back from its to_dict() (the rule's params)."""
    return (TaskConfig if "pairs" in d else ExperimentConfig).from_dict(d)


@dataclass(frozen=True)
class ExampleActivationsConfig(StageConfig):
    """example_activations (the neuron pages' pass over the example windows): how it runs the model, as record does,
    and the window of max_examples' text."""

    device: str
    dtype: str
    batch_size: int
    engine: str
    window: int

    @classmethod
    def of(cls, config: dict) -> "ExampleActivationsConfig":
        return cls.from_dict({**config["record"], "device": config["device"], "dtype": config["dtype"]})


@dataclass(frozen=True)
class StagesLayersConfig(StageConfig):
    """stages_layers: the positions read (the first max_tokens of the token shards), the logit lens's sample
    (lens_tokens expected positions, drawn from seed), the batch and the device. Float32 always."""

    device: str
    max_tokens: int
    lens_tokens: int
    batch_size: int
    seed: int

    @classmethod
    def of(cls, config: dict) -> "StagesLayersConfig":
        return cls.from_dict({**config["stages"], "device": config["device"]})


@dataclass(frozen=True)
class StagesInterventionsConfig(StageConfig):
    """stages_interventions: the positions of every deletion and swap (the first intervention_tokens of the token
    shards), the batch and the device. Float32 always."""

    device: str
    intervention_tokens: int
    batch_size: int

    @classmethod
    def of(cls, config: dict) -> "StagesInterventionsConfig":
        return cls.from_dict({**config["stages"], "device": config["device"]})


@dataclass(frozen=True)
class PaperCheckConfig(StageConfig):
    """paper_check: the run's values of every setting the post's numbers depend on (a row says "not comparable"
    where one differs from the post's; anneuron.report.paper_check.PAPER_SETTINGS, run_settings)."""

    dataset: str
    split: str
    text_column: str
    config_name: str | None
    data_files: tuple | None
    revision: str | None  # the dataset's pinned revision (`revisions`), None when unpinned
    max_docs: int | None
    max_tokens: int | None
    chunking: str
    seq_len: int  # resolved
    pred_post: bool
    counts: str
    basis: str
    congruence_dtype: str
    dtype: str
    readout: str
    binning: str
    standout_z: float
    standout_min_score: float
    experiments: dict  # experiment -> {clean, corrupted, answer, wrong, neuron_layers}, every configured one

    @classmethod
    def of(cls, config: dict, seq_len: int) -> "PaperCheckConfig":
        data, curves, patching = config["data"], config["curves"], config["patching"]
        return cls.from_dict(dict(
            dataset=config["dataset"], split=data["split"], text_column=data["text_column"],
            config_name=data["config_name"], data_files=data["data_files"],
            revision=config["revisions"].get(dataset_id(config["dataset"])), max_docs=data["max_docs"],
            max_tokens=data["max_tokens"], chunking=data["chunking"], seq_len=seq_len,
            pred_post=config["record"]["pred_post"], counts=curves["counts"], basis=config["congruence"]["basis"],
            congruence_dtype=config["congruence"]["dtype"], dtype=config["dtype"], readout=curves["readout"],
            binning=curves["binning"], standout_z=patching["standout_z"],
            standout_min_score=patching["standout_min_score"],
            experiments={name: {k: e[k] for k in ("clean", "corrupted", "answer", "wrong", "neuron_layers") if k in e}
                         for name, e in config["experiments"].items()}))


# --- universality (anneuron.universality) ---------------------------------------------------------------------------


def _models_run(config: dict) -> dict:
    """How a universality pass runs the models: the run's device and dtype, and the dataset pass's engine."""
    return {"device": config["device"], "dtype": config["dtype"], "engine": config["record"]["engine"]}


@dataclass(frozen=True)
class UniversalityPropertiesConfig(StageConfig):
    """universality_properties: each neuron's activation moments over the tiles' tokens, and its weights."""

    device: str
    dtype: str
    engine: str
    batch_size: int
    max_tokens: int

    @classmethod
    def of(cls, config: dict) -> "UniversalityPropertiesConfig":
        """(UniversalityTileConfig's too: from_dict takes each class's own fields.)"""
        u = config["universality"]
        return cls.from_dict({**u, **_models_run(config), "seed": u["baseline"]["seed"]})


@dataclass(frozen=True)
class UniversalityTileConfig(UniversalityPropertiesConfig):
    """One tile job (universality_tile): how the models run over the same tokens as universality_properties, and
    what is summed. Not the models list nor the threshold: adding a model or moving the threshold reruns no tile."""

    seed: int  # the rotation baseline's
    top_pairs: int


@dataclass(frozen=True)
class UniversalityConfig(StageConfig):
    """The merge of one model's tiles (universality): ϱ's threshold and the pairs kept."""

    threshold: float
    top_pairs: int

    @classmethod
    def of(cls, config: dict) -> "UniversalityConfig":
        return cls.from_dict(config["universality"])


@dataclass(frozen=True)
class UniversalityFiguresConfig(StageConfig):
    """universality_figures: the threshold drawn and how many tokens the twins' scatter samples."""

    threshold: float
    twin_tokens: int
    device: str
    dtype: str
    engine: str

    @classmethod
    def of(cls, config: dict) -> "UniversalityFiguresConfig":
        return cls.from_dict({**config["universality"], **_models_run(config)})
