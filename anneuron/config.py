"""Validate a run's configuration before any job: schema (types, ranges, unknown keys, defaults) and the checks a
schema cannot express (each model resolved by anneuron.resolve, single-token answers, equal prompt lengths, seq_len
vs context, watched neurons and patched layers in range, stages the architecture supports).

Every error is ONE line naming the key, model or experiment. Nothing here imports torch or touches the network.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Callable, Collection

import jsonschema
import yaml

from anneuron.contracts import POST_BIN_WIDTH
from anneuron.contracts import parse_neuron as _parse_neuron
from anneuron.io import InputError
from anneuron.resolve import ModelError, ModelSpec, Produced, is_local, model_id, resolve, seq_len


class ConfigError(ValueError):
    """One line saying which key is wrong and why."""


SchemaValidator = Callable[..., None]
"""Snakemake's own validator, `snakemake.utils.validate(config, schema_path, set_default=True)`: it fills the schema's
defaults into `config` in place and raises at the first violation. The Snakefile passes it in: the library never
imports Snakemake."""


def _violation(err: BaseException | None) -> jsonschema.ValidationError | None:
    """The schema violation behind an error (Snakemake raises its WorkflowError while handling jsonschema's)."""
    while err is not None and not isinstance(err, jsonschema.ValidationError):
        err = err.__cause__ or err.__context__
    return err


def _path(err: jsonschema.ValidationError) -> str:
    return ".".join(str(p) for p in err.absolute_path) or "(top level)"


def validate_schema(config: dict, schema_path: str | Path, validate: SchemaValidator) -> dict:
    """A copy of `config` with the schema's defaults filled and its types, ranges and unknown keys checked (by
    `validate`, Snakemake's); a violation is one ConfigError line naming the key."""
    config = copy.deepcopy(config)
    try:
        validate(config, str(schema_path), set_default=True)
    except Exception as e:
        err = _violation(e)
        if err is None:
            raise
        raise ConfigError(_message(err, load_schema(schema_path))) from None
    return config


def _message(err: jsonschema.ValidationError, schema: dict) -> str:
    if err.validator == "additionalProperties" and err.validator_value is False:
        known = set(err.schema.get("properties", {}))
        extra = sorted(set(err.instance) - known)
        where = _path(err)
        return (f"config: unknown key {where + '.' if where != '(top level)' else ''}{extra[0]}"
                f" (known: {', '.join(sorted(known))})")
    if err.validator == "oneOf":
        forms = " or ".join(_describe(sub, schema) for sub in err.validator_value)
        return f"config: {_path(err)}: {err.instance!r} must be {forms}"
    return f"config: {_path(err)}: {err.message}"


def _describe(sub: dict, root: dict) -> str:
    """A short English name for a subschema, for oneOf errors."""
    if "$ref" in sub:
        sub = functools.reduce(lambda node, key: node[key], sub["$ref"].removeprefix("#/").split("/"), root)
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
    try:
        return _parse_neuron(name)
    except ValueError as e:
        raise ConfigError(f"config: {e}") from None


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


def dataset_id(name: str) -> str:
    p = Path(name)
    return p.stem if (is_local(name) or p.suffix in (".parquet", ".jsonl", ".json")) else p.name


def is_local_dataset(name: str) -> bool:
    return Path(name).exists() or is_local(name) or Path(name).suffix in (".parquet", ".jsonl", ".json")


ProducedModels = dict[str, Produced] | Callable[[dict], dict[str, Produced]]


def resolve_models(config: dict, produced: ProducedModels | None = None) -> dict[str, ModelSpec]:
    """Model id -> ModelSpec for every configured model (config already validated: defaults filled)."""
    produced = produced(config) if callable(produced) else (produced or {})
    ids = [model_id(name) for name in config["models"]]
    if len(set(ids)) != len(ids):
        raise ConfigError(f"config: models: two models share the id {sorted(i for i in ids if ids.count(i) > 1)[0]}")
    specs: dict[str, ModelSpec] = {}
    for name in config["models"]:
        try:
            spec = resolve(name, produced, config["revisions"].get(model_id(name)))
        except ModelError as e:
            raise ConfigError(f"config: models: {e}") from None
        except InputError as e:  # a damaged config.json or tokenizer file in the model's folder
            raise ConfigError(f"config: models: {e.detail}") from None
        specs[spec.id] = spec
    return specs


def seq_len_for(config: dict, specs: list[ModelSpec]) -> int:
    """The token shards' row length for the models sharing one tokenizer (`auto`: their smallest context, capped)."""
    try:
        return seq_len(specs, config["data"]["seq_len"])
    except ModelError as e:
        raise ConfigError(f"config: {e}") from None


def by_tokenizer(specs: dict[str, ModelSpec]) -> dict[str, list[ModelSpec]]:
    out: dict[str, list[ModelSpec]] = {}
    for spec in specs.values():
        out.setdefault(spec.tokenizer_id, []).append(spec)
    return out


def universality_groups(config: dict, specs: dict[str, ModelSpec]) -> list[list[str]]:
    """The groups of model ids whose neurons are correlated with each other (docs/science.md "Universality"):
    `universality.models: auto` = every group of >= 2 configured models sharing a tokenizer id; a list = those
    models, which must be configured and share one tokenizer."""
    chosen = config["universality"]["models"]
    if chosen == "auto":
        return [sorted(s.id for s in g) for g in by_tokenizer(specs).values() if len(g) >= 2]
    ids = [model_id(name) for name in chosen]
    unknown = [name for name, i in zip(chosen, ids) if i not in specs]
    if unknown:
        raise ConfigError(f"config: universality.models: {unknown[0]} is not one of models:")
    if len(set(ids)) < 2:
        raise ConfigError("config: universality.models: needs at least two different models")
    toks = {specs[i].tokenizer_id: i for i in ids}
    if len(toks) > 1:
        (ta, ma), (tb, mb) = list(toks.items())[:2]
        raise ConfigError(f"config: universality.models: {ma} (tokenizer {ta}) and {mb} (tokenizer {tb}) do not "
                          "share a tokenizer, so they cannot read the same tokens")
    return [sorted(set(ids))]


def drop_default_experiments(config: dict, named: Collection[str]) -> dict:
    """With `experiments_defaults: false`, only the experiments a configfile or `--config` names (`named`) are
    kept: a study's configfile can switch off config.yaml's own, which Snakemake merges into every configfile (on
    SLURM too), while a default it changes (e.g. paper.yaml's patched layers) stays."""
    if config["experiments_defaults"]:
        return config
    kept = {k: v for k, v in config["experiments"].items() if k in named}
    return {**config, "experiments": kept}


def check(config: dict, schema_path: str | Path, validate: SchemaValidator, produced: ProducedModels | None = None,
          produced_data: tuple[str, ...] = (), named_experiments: Collection[str] = ()) -> dict:
    """The whole pre-flight check; returns the config with the schema's defaults filled (and, with
    `experiments_defaults: false`, only the experiments in `named_experiments`: those a configfile names)."""
    config = drop_default_experiments(validate_schema(config, schema_path, validate), named_experiments)
    specs = resolve_models(config, produced)
    ds = config["dataset"]
    produced_data = {str(Path(d)) for d in produced_data}
    if is_local_dataset(ds) and str(Path(ds)) not in produced_data and not Path(ds).exists():
        raise ConfigError(f"config: dataset: {ds} does not exist and no rule produces it")
    for group in by_tokenizer(specs).values():
        seq_len_for(config, group)
    universality_groups(config, specs)
    curves = config["curves"]
    if curves["readout"] == "post" and not config["record"]["pred_post"]:
        raise ConfigError("config: curves.readout: post counts the post's readout, which record only writes with "
                          "record.pred_post: true")
    if curves["binning"] == "post" and curves["bin_width"] != POST_BIN_WIDTH:
        raise ConfigError(f"config: curves.binning: post bins by int(5 * round(a, 1)), width {POST_BIN_WIDTH}; "
                          f"curves.bin_width is {curves['bin_width']}")
    for spec in specs.values():
        for stage in ("weights", "dataset", "experiments"):
            try:
                spec.check_stage(stage)
            except ModelError as e:
                raise ConfigError(f"config: models: {e}") from None
        _check_model(config, spec)
    return config


PAIR_KEYS = ("clean", "corrupted", "answer", "wrong")


def is_task(entry: dict) -> bool:
    """Whether an `experiments:` entry is a task (`pairs:` or `template:` + `fills:`) rather than one pair."""
    return "pairs" in entry or "template" in entry


def pair_keys(exp: str, entry: dict) -> list[str]:
    """Where each pair of an entry is written, for error messages (experiments.X, experiments.X.pairs.3, ...)."""
    if "pairs" in entry:
        return [f"experiments.{exp}.pairs.{i}" for i in range(len(entry["pairs"]))]
    if "template" in entry:
        return [f"experiments.{exp}.fills.{i}" for i in range(len(entry.get("fills", [])))]
    return [f"experiments.{exp}"]


def experiment_pairs(exp: str, entry: dict) -> list[dict[str, str]]:
    """The prompt pairs of an `experiments:` entry ({clean, corrupted, answer, wrong} each), in the three forms
    the schema allows: one pair, `pairs:`, or `template:` formatted with each of `fills:`. Exactly one form."""
    forms = [form for form, present in (("clean/corrupted/answer/wrong", any(k in entry for k in PAIR_KEYS)),
                                        ("pairs", "pairs" in entry), ("template", "template" in entry)) if present]
    if len(forms) != 1:
        raise ConfigError(f"config: experiments.{exp}: give one of clean/corrupted/answer/wrong, pairs, or template "
                          f"with fills (got {' and '.join(forms) or 'none'})")
    if "pairs" in entry:
        return [dict(p) for p in entry["pairs"]]
    if "template" in entry:
        if "fills" not in entry:
            raise ConfigError(f"config: experiments.{exp}: 'fills' is a required property of a template")
        pairs = []
        for where, fill in zip(pair_keys(exp, entry), entry["fills"]):
            try:
                pairs.append({k: entry["template"][k].format(**fill) for k in PAIR_KEYS})
            except KeyError as e:
                raise ConfigError(f"config: {where}: no value for the template's {{{e.args[0]}}}") from None
            except (IndexError, ValueError) as e:
                raise ConfigError(f"config: experiments.{exp}.template: {e}") from None
        return pairs
    if "fills" in entry:
        raise ConfigError(f"config: experiments.{exp}.fills: fills need a template")
    missing = [k for k in PAIR_KEYS if k not in entry]
    if missing:
        raise ConfigError(f"config: experiments.{exp}: {missing[0]!r} is a required property")
    return [{k: entry[k] for k in PAIR_KEYS}]


def _check_model(config: dict, spec: ModelSpec) -> None:
    try:
        count = spec.token_counter()
    except ModelError as e:
        raise ConfigError(f"config: models: {e}") from None
    mid = spec.id
    for s in config["congruence"]["tokens"]:
        if count(s) != 1:
            raise ConfigError(f"config: congruence.tokens: {s!r} is not a single token for {mid}")
    for exp, e in config["experiments"].items():
        pairs = experiment_pairs(exp, e)
        lengths = []
        for where, pair in zip(pair_keys(exp, e), pairs):
            for key in ("answer", "wrong"):
                n = count(pair[key])
                if n != 1:
                    raise ConfigError(f"config: {where}.{key}: {pair[key]!r} is {n} tokens for {mid}, must be one")
            lc, lr = (count(pair[k]) for k in ("clean", "corrupted"))
            if lc != lr:
                raise ConfigError(f"config: {where}: clean is {lc} tokens and corrupted {lr} for {mid}; "
                                  "they must be the same length")
            lengths.append(lc)
        if len(set(lengths)) > 1:
            i = next(i for i, n in enumerate(lengths) if n != lengths[0])
            raise ConfigError(f"config: {pair_keys(exp, e)[i]}: its prompts are {lengths[i]} tokens for {mid} and "
                              f"the first pair's {lengths[0]}; a task's pairs are patched together, so one length")
        layers = e["neuron_layers"]
        bad = [] if layers == "auto" else [layer for layer in layers if layer >= spec.n_layers]
        if bad:
            raise ConfigError(f"config: experiments.{exp}.neuron_layers: layer {bad[0]} is out of range for {mid} "
                              f"({spec.n_layers} layers)")
    for layer, neuron, tok_str in watch_entries(config, mid):
        try:
            spec.check_neuron(layer, neuron, f"config: watch.neurons.{mid}")
        except ModelError as e:
            raise ConfigError(str(e)) from None
        if tok_str is not None and count(tok_str) != 1:
            raise ConfigError(f"config: watch.neurons.{mid}: {tok_str!r} is not a single token")


def load_schema(path: str | Path) -> dict:
    return yaml.safe_load(Path(path).read_text())
