"""What a model name in the config stands for, decided once, before any job: the model resolver.

A name is a local folder (saved with `save_pretrained`, or one a rule of the workflow will build), a GPT-2-family
hub name (whose shapes and tokenizer are known offline), or another hub name (resolved from the local Hugging Face
cache only). The answer, a `ModelSpec`, carries everything a stage needs to know without loading weights: id,
folder or hub name, revision, tokenizer id, context length, architecture family, layer and neuron counts.

Nothing here imports torch or touches the network: the Snakefile resolves every model while it parses, and a name
that cannot be resolved offline is a one-line `ModelError`; a model folder's damaged file (config.json, the
tokenizer's, the weights': `check_model_files`) is a one-line `anneuron.io.InputError` naming it.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from anneuron.architecture import FAMILIES as ARCHITECTURES
from anneuron.io import OneLineError, check_model_config, check_model_weights

# Hub names whose tokenizer is GPT-2's (the offline tokenizer serves them; their token shards are shared under id
# `gpt2`), with their shapes: (n_layers, d_model, d_mlp).
GPT2_FAMILY = {"gpt2": (12, 768, 3072), "gpt2-medium": (24, 1024, 4096), "gpt2-large": (36, 1280, 5120),
               "gpt2-xl": (48, 1600, 6400), "distilgpt2": (6, 768, 3072)}
GPT2_CONTEXT = 1024
GPT2_VOCAB = 50257
MAX_SEQ_LEN = 1024  # `data.seq_len: auto` caps a model's context here
# config.json `model_type` -> architecture family: exactly the types anneuron.architecture implements and tests
FAMILIES = {t: f.name for f in ARCHITECTURES for t in f.model_types}
STAGES = ("weights", "dataset", "experiments")
# Which stages run on which family. Anything else is refused at config check, naming the model and the stage.
SUPPORT = {f.name: set(STAGES) for f in ARCHITECTURES}
TOKENIZER_FILES = (("vocab.json", "merges.txt"), ("tokenizer.json",))
_PATH_PREFIXES = ("/", "./", "../", "~", "resources/", "results/")


class ModelError(OneLineError, ValueError):
    """A model name cannot be used; the message is one line saying which and what to do."""


@dataclass(frozen=True)
class ModelSpec:
    """Everything the workflow knows about one configured model before loading it."""

    name: str  # as written in the config
    id: str  # results/{id}/
    local: bool  # a folder (existing, or built by a rule) rather than a hub name
    revision: str | None  # hub revision (None: the default branch; for a fetched folder, the one it is fetched at)
    tokenizer_id: str  # token shards are shared by models with the same tokenizer id
    n_ctx: int
    family: str  # "gpt2", "llama", or the config's model_type when the family is unknown
    model_type: str
    n_layers: int
    d_model: int
    d_mlp: int
    d_vocab: int
    hub: str | None = None  # the hub name, when `name` is the folder it is fetched into (anneuron.fetch)

    @property
    def n_neurons(self) -> int:
        return self.n_layers * self.d_mlp

    @property
    def folder(self) -> Path | None:
        return Path(self.name).expanduser() if self.local else None

    def tokenizer(self):
        """The model's tokenizer, without loading weights (and with no network)."""
        return tokenizer_for(self)

    def token_counter(self) -> Callable[[str], int]:
        """How many tokens a text is for this model (no special tokens): what the config check asks of prompts,
        without importing torch."""
        return token_counter(self)

    def fetched_into(self, folder: str) -> "ModelSpec":
        """This hub model as the local folder a fetch rule downloads it into (same shapes and tokenizer)."""
        return replace(self, name=folder, local=True, hub=self.name)

    def check_neuron(self, layer: int, neuron: int, where: str) -> None:
        if not (0 <= layer < self.n_layers and 0 <= neuron < self.d_mlp):
            raise ModelError(f"{where}: L{layer}N{neuron} is out of range for {self.id} "
                             f"({self.n_layers} layers × {self.d_mlp} neurons)")

    def check_stage(self, stage: str) -> None:
        if stage not in SUPPORT.get(self.family, set()):
            raise ModelError(f"model {self.id}: architecture {self.model_type!r} is not supported by the {stage} "
                             f"stage (supported: {', '.join(f for f in SUPPORT if stage in SUPPORT[f])})")


@dataclass(frozen=True)
class Produced:
    """A model folder that a rule of the workflow builds: what the resolver would read from it, known in advance."""

    n_layers: int
    d_model: int
    d_mlp: int
    n_ctx: int
    tokenizer: str = "gpt2"
    model_type: str = "gpt2"
    d_vocab: int = GPT2_VOCAB


def is_local(name: str) -> bool:
    """A folder (existing, or a path a rule will produce) rather than a hub name."""
    return Path(name).expanduser().is_dir() or name.startswith(_PATH_PREFIXES)


def model_id(name: str) -> str:
    """`gpt2-large` for `openai-community/gpt2-large`; a folder's basename for a folder (docs/contracts.md)."""
    return Path(name.rstrip("/")).name


def check_folder(folder: Path) -> None:
    """Refuse folders that would boot into nonsense: a folder without tokenizer files boots with a length-1
    tokenizer and silently turns every prompt into token 0."""
    if not folder.is_dir():
        raise ModelError(f"model folder {folder} does not exist and no rule produces it")
    if not (folder / "config.json").exists():
        raise ModelError(f"model folder {folder}: no config.json (save it with save_pretrained)")
    if not any(all((folder / f).exists() for f in files) for files in TOKENIZER_FILES):
        raise ModelError(f"model folder {folder}: no tokenizer files (vocab.json+merges.txt or tokenizer.json); "
                         "save the tokenizer into it with tokenizer.save_pretrained")


def check_model_files(model: ModelSpec | str) -> None:
    """Before a loader reads a model folder (a ModelSpec's, or a configured name that is one): its config, tokenizer
    and weights files are whole (anneuron.io.check_model_config, check_model_weights), else one `InputError` naming
    the file and what to do, not a loader's traceback that names none. A hub name, or a folder that is not there
    (the resolver says why), is left to the loader."""
    folder = model.folder if isinstance(model, ModelSpec) else Path(model).expanduser() if is_local(model) else None
    if folder is not None and folder.is_dir():
        check_model_config(folder)
        check_model_weights(folder)


def _from_hf_config(cfg: dict, where: str) -> dict:
    """Shapes from a config.json of the GPT-2 or Llama families (and others using the same key names)."""
    try:
        n_layers = cfg.get("n_layer", cfg.get("num_hidden_layers"))
        d_model = cfg.get("n_embd", cfg.get("hidden_size"))
        d_mlp = cfg.get("n_inner") or cfg.get("intermediate_size") or (4 * d_model if "n_embd" in cfg else None)
        n_ctx = cfg.get("n_positions") or cfg.get("max_position_embeddings")
        out = dict(n_layers=int(n_layers), d_model=int(d_model), d_mlp=int(d_mlp), n_ctx=int(n_ctx),
                   d_vocab=int(cfg["vocab_size"]), model_type=str(cfg.get("model_type", "unknown")))
    except (TypeError, KeyError) as e:
        raise ModelError(f"{where}: cannot read the model's shapes from config.json ({e})") from None
    return out


def _cached_hub_file(name: str, filename: str, revision: str | None) -> Path | None:
    """A file of a hub repository from the local Hugging Face cache, never the network."""
    from huggingface_hub import try_to_load_from_cache

    try:
        hit = try_to_load_from_cache(name, filename, revision=revision)
    except Exception:  # an invalid repo id, for instance: the same as not cached
        return None
    return Path(hit) if isinstance(hit, str) else None


def _offline_message(name: str) -> str:
    return (f"model '{name}': not a folder, not a GPT-2 hub name ({', '.join(GPT2_FAMILY)}), and not in the local "
            f"Hugging Face cache; fetch it once where the hub is reachable (python -m anneuron.fetch {name}) or give "
            "a folder saved with save_pretrained")


def resolve(name: str, produced: dict[str, Produced] | None = None, revision: str | None = None) -> ModelSpec:
    """The ModelSpec of one configured model name (see the module docstring); ModelError if it cannot be used."""
    produced = {str(Path(k)): v for k, v in (produced or {}).items()}
    mid = model_id(name)
    key = str(Path(name))
    if key in produced:
        p = produced[key]
        return ModelSpec(name, mid, True, None, p.tokenizer, p.n_ctx, FAMILIES.get(p.model_type, p.model_type),
                         p.model_type, p.n_layers, p.d_model, p.d_mlp, p.d_vocab)
    if is_local(name):
        folder = Path(name).expanduser()
        check_folder(folder)
        check_model_config(folder)  # what is read below (config.json, the tokenizer's files) is whole
        shapes = _from_hf_config(json.loads((folder / "config.json").read_text()), f"model folder {folder}")
        from anneuron.tokenizer import has_gpt2_vocab

        tid = "gpt2" if has_gpt2_vocab(folder) else mid
        return ModelSpec(name, mid, True, None, tid, family=FAMILIES.get(shapes["model_type"], shapes["model_type"]),
                         **shapes)
    if mid in GPT2_FAMILY and name in (mid, f"openai-community/{mid}", f"distilbert/{mid}"):
        n_layers, d_model, d_mlp = GPT2_FAMILY[mid]
        return ModelSpec(name, mid, False, revision, "gpt2", GPT2_CONTEXT, "gpt2", "gpt2", n_layers, d_model, d_mlp,
                         GPT2_VOCAB)
    cfg = _cached_hub_file(name, "config.json", revision)
    if cfg is None:
        raise ModelError(_offline_message(name))
    shapes = _from_hf_config(json.loads(cfg.read_text()), f"model {name}")
    return ModelSpec(name, mid, False, revision, mid, family=FAMILIES.get(shapes["model_type"], shapes["model_type"]),
                     **shapes)


def tokenizer_for(spec: ModelSpec):
    """The tokenizer of a model's token shards, without loading weights and with no network: GPT-2's offline
    tokenizer for every model with tokenizer id `gpt2` (so that shared shards are tokenized identically), else the
    folder's own or the cached hub tokenizer."""
    if spec.tokenizer_id == "gpt2":
        from anneuron.tokenizer import gpt2_tokenizer

        return gpt2_tokenizer()
    folder, hub = _tokenizer_home(spec)
    return folder_tokenizer(folder) if folder else _hub_tokenizer(hub, spec.revision)


def _tokenizer_home(spec: ModelSpec) -> tuple[Path | None, str | None]:
    """Where a model's own tokenizer lives: (its folder, None) once the folder exists, else (None, the hub name)
    for a hub model or the folder a fetch rule will download it into (its files are in the hub cache)."""
    if spec.local and spec.folder.is_dir():
        return spec.folder, None
    return None, spec.hub or spec.name


def token_counter(spec: ModelSpec) -> Callable[[str], int]:
    """A text's token count for `spec` (no special tokens). A model with its own tokenizer.json is read by the
    `tokenizers` library alone, the engine its fast tokenizer wraps: transformers' AutoTokenizer would import torch
    while the Snakefile parses. GPT-2's offline tokenizer imports none; a model with neither gets its full tokenizer."""
    if spec.tokenizer_id != "gpt2":
        folder, hub = _tokenizer_home(spec)
        if folder:
            file, where = folder / "tokenizer.json", f"model folder {folder}"
        else:
            file, where = _cached_hub_file(hub, "tokenizer.json", spec.revision), f"model {spec.name}"
        if file is not None and file.is_file():
            from tokenizers import Tokenizer

            fast = Tokenizer.from_file(str(file))
            if fast.get_vocab_size() <= 1:
                raise ModelError(f"{where}: its tokenizer has {fast.get_vocab_size()} token(s)")
            return lambda text: len(fast.encode(text, add_special_tokens=False).ids)
    tok = spec.tokenizer()
    return lambda text: len(tok.encode(text, add_special_tokens=False))


@functools.lru_cache(maxsize=8)
def folder_tokenizer(folder: Path):
    """A model folder's own tokenizer (refused if it has no real vocabulary)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(folder))
    if len(tok) <= 1:
        raise ModelError(f"model folder {folder}: its tokenizer has {len(tok)} token(s)")
    return tok


@functools.lru_cache(maxsize=8)
def _hub_tokenizer(name: str, revision: str | None):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(name, revision=revision, local_files_only=True)
    except OSError:
        raise ModelError(_offline_message(name)) from None


def seq_len(specs: list[ModelSpec], configured: int | str) -> int:
    """The token shards' row length for models sharing one tokenizer: `auto` = the smallest context among them,
    capped at MAX_SEQ_LEN; a larger explicit value is an error."""
    ctx = min(s.n_ctx for s in specs)
    if configured == "auto":
        return min(ctx, MAX_SEQ_LEN)
    if configured > ctx:
        raise ModelError(f"data.seq_len {configured} exceeds the context ({ctx}) of {specs[0].id}")
    return int(configured)
