"""Validate a run's configuration before any job: schema (types, ranges, unknown keys, defaults) and the checks a
schema cannot express (folders, single-token answers, equal prompt lengths, seq_len vs context).

Every error is ONE line naming the key, model or experiment. Nothing here touches the network.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from pathlib import Path

import jsonschema
import yaml

from anneuron import models as M

NEURON_RE = re.compile(r"^L(\d+)N(\d+)$")


class ConfigError(ValueError):
    """One line saying which key is wrong and why."""


@dataclass(frozen=True)
class Produced:
    """A model folder or dataset file that a rule of the workflow builds (so it may not exist yet)."""

    tokenizer: str = "gpt2"
    n_ctx: int = 1024


def _extend_with_defaults(validator_class):
    validate_props = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for prop, sub in properties.items():
                if "default" in sub and prop not in instance:
                    instance[prop] = copy.deepcopy(sub["default"])
        yield from validate_props(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


_Validator = _extend_with_defaults(jsonschema.Draft7Validator)


def _path(err: jsonschema.ValidationError) -> str:
    return ".".join(str(p) for p in err.absolute_path) or "(top level)"


def validate_schema(config: dict, schema: dict) -> dict:
    """Fill defaults and check types, ranges and unknown keys; raise ConfigError with the offending key."""
    config = copy.deepcopy(config)
    errors = sorted(_Validator(schema).iter_errors(config), key=lambda e: (len(e.absolute_path), e.path))
    if errors:
        err = errors[0]
        if err.validator == "additionalProperties" and err.validator_value is False:
            known = set(err.schema.get("properties", {}))
            extra = sorted(set(err.instance) - known)
            where = _path(err)
            raise ConfigError(f"config: unknown key {where + '.' if where != '(top level)' else ''}{extra[0]}"
                              f" (known: {', '.join(sorted(known))})")
        if err.validator == "oneOf":
            forms = " or ".join(_describe(sub, schema) for sub in err.validator_value)
            raise ConfigError(f"config: {_path(err)}: {err.instance!r} must be {forms}")
        raise ConfigError(f"config: {_path(err)}: {err.message}")
    return config


def _describe(sub: dict, root: dict) -> str:
    """A short English name for a subschema, for oneOf errors."""
    if "$ref" in sub:
        sub = root["definitions"][sub["$ref"].rsplit("/", 1)[1]]
        if "oneOf" in sub:
            return " or ".join(_describe(s, root) for s in sub["oneOf"])
    if "const" in sub:
        return repr(sub["const"])
    kind = {"integer": "an integer", "null": "null", "string": "a string", "array": "a list",
            "object": "a mapping", "number": "a number"}.get(sub.get("type"), "valid")
    if "minimum" in sub:
        kind += f" >= {sub['minimum']}"
    if "pattern" in sub:
        kind += f" matching {sub['pattern']}"
    return kind


def parse_neuron(name: str) -> tuple[int, int]:
    m = NEURON_RE.match(name)
    if not m:
        raise ConfigError(f"config: neuron {name!r} is not of the form L<layer>N<neuron>")
    return int(m.group(1)), int(m.group(2))


def watch_entries(config: dict, mid: str) -> list[tuple[int, int, str | None]]:
    """(layer, neuron, token string or None) listed for model id `mid` in watch.neurons."""
    out = []
    for entry in config["watch"]["neurons"].get(mid, []):
        if isinstance(entry, str):
            out.append((*parse_neuron(entry), None))
        else:
            ((name, tok),) = entry.items()
            out.append((*parse_neuron(name), tok))
    return out


def _tokenizer(name: str, produced: dict[str, Produced]):
    key = str(Path(name))
    if key in produced:
        if produced[key].tokenizer != "gpt2":
            raise ConfigError(f"config: model {name}: produced folders must use the GPT-2 tokenizer")
        from anneuron.tokenizer import gpt2_tokenizer

        return gpt2_tokenizer()
    return M.tokenizer_for(name)


def tokenizer_id(name: str, produced: dict[str, Produced]) -> str:
    """`gpt2` for GPT-2-family hub names and folders with GPT-2's vocabulary, else the model id (docs/contracts.md)."""
    key = str(Path(name))
    if key in produced:
        return produced[key].tokenizer
    if M.is_gpt2_family(name):
        return "gpt2"
    if M.is_local(name):
        from anneuron.tokenizer import has_gpt2_vocab

        return "gpt2" if has_gpt2_vocab(Path(name).expanduser()) else M.model_id(name)
    return M.model_id(name)


def context_length(name: str, produced: dict[str, Produced]) -> int:
    key = str(Path(name))
    return produced[key].n_ctx if key in produced else M.context_length(name)


def dataset_id(name: str) -> str:
    p = Path(name)
    return p.stem if (M.is_local(name) or p.suffix in (".parquet", ".jsonl", ".json")) else p.name


def is_local_dataset(name: str) -> bool:
    return Path(name).exists() or M.is_local(name) or Path(name).suffix in (".parquet", ".jsonl", ".json")


def seq_len_for(config: dict, names: list[str], produced: dict[str, Produced]) -> int:
    """`auto` = the smallest context among the models sharing these shards, capped at 1024."""
    ctx = min(context_length(n, produced) for n in names)
    seq_len = config["data"]["seq_len"]
    if seq_len == "auto":
        return min(ctx, 1024)
    if seq_len > ctx:
        raise ConfigError(f"config: data.seq_len {seq_len} exceeds the context ({ctx}) of {names[0]}")
    return seq_len


def check(config: dict, schema: dict, produced: dict[str, Produced] | None = None) -> dict:
    """The whole pre-flight check; returns the config with defaults filled."""
    produced = {str(Path(k)): v for k, v in (produced or {}).items()}
    config = validate_schema(config, schema)
    ids = [M.model_id(m) for m in config["models"]]
    if len(set(ids)) != len(ids):
        raise ConfigError(f"config: models: two models share the id {sorted(i for i in ids if ids.count(i) > 1)[0]}")
    for name in config["models"]:
        if M.is_local(name) and str(Path(name)) not in produced:
            folder = Path(name).expanduser()
            if not folder.is_dir():
                raise ConfigError(f"config: models: folder {name} does not exist and no rule produces it")
            try:
                M.check_folder(folder)
            except M.ModelError as e:
                raise ConfigError(f"config: models: {e}") from None
    ds = config["dataset"]
    if is_local_dataset(ds) and str(Path(ds)) not in produced and not Path(ds).exists():
        raise ConfigError(f"config: dataset: {ds} does not exist and no rule produces it")
    by_tokenizer: dict[str, list[str]] = {}
    for name in config["models"]:
        by_tokenizer.setdefault(tokenizer_id(name, produced), []).append(name)
    for names in by_tokenizer.values():
        seq_len_for(config, names, produced)
    for name in config["models"]:
        tok = _tokenizer(name, produced)
        for s in config["congruence"]["tokens"]:
            if len(tok.encode(s, add_special_tokens=False)) != 1:
                raise ConfigError(f"config: congruence.tokens: {s!r} is not a single token for {M.model_id(name)}")
        for exp, e in config["experiments"].items():
            for key in ("answer", "wrong"):
                n = len(tok.encode(e[key], add_special_tokens=False))
                if n != 1:
                    raise ConfigError(f"config: experiments.{exp}.{key}: {e[key]!r} is {n} tokens for "
                                      f"{M.model_id(name)}, must be one")
            lc, lr = (len(tok.encode(e[k], add_special_tokens=False)) for k in ("clean", "corrupted"))
            if lc != lr:
                raise ConfigError(f"config: experiments.{exp}: clean is {lc} tokens and corrupted {lr} for "
                                  f"{M.model_id(name)}; they must be the same length")
        for _, _, tok_str in watch_entries(config, M.model_id(name)):
            if tok_str is not None and len(tok.encode(tok_str, add_special_tokens=False)) != 1:
                raise ConfigError(f"config: watch.neurons.{M.model_id(name)}: {tok_str!r} is not a single token")
    return config


def load_schema(path: str | Path) -> dict:
    return yaml.safe_load(Path(path).read_text())
