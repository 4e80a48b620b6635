"""One typed, frozen config object per stage, built from the validated config (docs/config.md).

The schema (workflow/schemas/config.schema.yaml) is the only source of defaults: these classes have none, and
`from_dict` refuses a missing field, so a stage can never run on a default that the schema does not hold. Rules
pass `X.of(config).to_dict()` as a param (a config change reruns exactly the stages whose object changed); the
thin script rebuilds the object with `from_dict` and writes it beside its outputs (`write`: provenance).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from anneuron.io import write_json


def _freeze(value: Any) -> Any:
    """Lists become tuples so that the objects stay hashable and immutable."""
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value


def _thaw(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_thaw(v) for v in value]
    if isinstance(value, dict):
        return {k: _thaw(v) for k, v in value.items()}
    return value


@dataclass(frozen=True)
class StageConfig:
    """Base: dict in (every field required), dict out, JSON provenance."""

    @classmethod
    def from_dict(cls, d: dict):
        missing = [f.name for f in fields(cls) if f.name not in d]
        if missing:
            raise KeyError(f"{cls.__name__}: missing {', '.join(missing)}")
        return cls(**{f.name: _freeze(d[f.name]) for f in fields(cls)})

    def to_dict(self) -> dict:
        return _thaw(asdict(self))

    def write(self, path: str | Path, **extra: Any) -> None:
        """The resolved config of this job, beside its outputs (plus e.g. the model it ran on)."""
        write_json(path, {"stage": type(self).__name__, **extra, "config": self.to_dict()})


@dataclass(frozen=True)
class DataConfig(StageConfig):
    chunking: str
    seq_len: int  # resolved (the `auto` of the config is the models' context, capped)
    shards: int
    max_docs: int | None
    max_tokens: int | None
    text_column: str
    split: str

    @classmethod
    def of(cls, config: dict, seq_len: int) -> "DataConfig":
        return cls.from_dict({**config["data"], "seq_len": seq_len})


@dataclass(frozen=True)
class CongruenceConfig(StageConfig):
    device: str
    basis: str
    top_k: int
    chunk_neurons: int | str
    dtype: str
    save_matrix: bool

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
        record = {k: v for k, v in config["record"].items() if k != "window"}  # max_examples' only
        return cls.from_dict({**record, "device": config["device"], "dtype": config["dtype"]})


@dataclass(frozen=True)
class CurvesConfig(StageConfig):
    bin_width: float
    min_count: int
    readout: str
    binning: str

    @classmethod
    def of(cls, config: dict) -> "CurvesConfig":
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
    patching: dict

    @classmethod
    def of(cls, config: dict, name: str) -> "ExperimentConfig":
        return cls.from_dict({**config["experiments"][name], "name": name, "device": config["device"],
                              "dtype": config["dtype"], "patching": PatchingConfig.of(config).to_dict()})

    @property
    def patching_config(self) -> PatchingConfig:
        return PatchingConfig.from_dict(self.patching)
