"""Load GPT-2-family models by hub name or local folder, TransformerLens-processed, on the configured device.

A folder saved with `save_pretrained` (config, weights AND tokenizer files) works wherever a hub name does.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from anneuron.tokenizer import gpt2_tokenizer

if TYPE_CHECKING:  # imported where a model boots: the Snakefile imports this module, and every job parses it
    from transformer_lens.model_bridge import TransformerBridge

log = logging.getLogger(__name__)

# Hub names whose tokenizer is GPT-2's: the offline tokenizer serves them, and token shards are shared under `gpt2`.
GPT2_FAMILY = {"gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl", "distilgpt2"}
GPT2_CONTEXT = 1024
_TOKENIZER_FILES = (("vocab.json", "merges.txt"), ("tokenizer.json",))
_PATH_PREFIXES = ("/", "./", "../", "~", "resources/", "results/")


class ModelError(RuntimeError):
    """A model cannot be loaded; the message is one line saying which and what to do."""


def is_local(name_or_dir: str) -> bool:
    """A folder (existing, or a path a rule will produce) rather than a hub name."""
    return Path(name_or_dir).expanduser().is_dir() or name_or_dir.startswith(_PATH_PREFIXES)


def model_id(name_or_dir: str) -> str:
    """`gpt2-large` for `openai-community/gpt2-large`; a folder's basename for a folder (docs/contracts.md)."""
    return Path(name_or_dir.rstrip("/")).name


def is_gpt2_family(name_or_dir: str) -> bool:
    return not is_local(name_or_dir) and model_id(name_or_dir) in GPT2_FAMILY


def resolve_device(device: str = "auto") -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ModelError("device: cuda requested but torch sees no CUDA device (set device: auto or cpu)")
    return device


def resolve_dtype(dtype: str = "auto", device: str = "cpu") -> torch.dtype:
    """`auto` = bf16 on CUDA (the fast path for the real study), float32 on CPU."""
    if dtype == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]


def check_folder(folder: Path) -> None:
    """Refuse folders that would boot into nonsense: a folder without tokenizer files boots with a length-1
    tokenizer and silently turns every prompt into token 0."""
    if not (folder / "config.json").exists():
        raise ModelError(f"model folder {folder}: no config.json (save it with save_pretrained)")
    if not any(all((folder / f).exists() for f in files) for files in _TOKENIZER_FILES):
        raise ModelError(
            f"model folder {folder}: no tokenizer files (vocab.json+merges.txt or tokenizer.json); "
            "save the tokenizer into it with tokenizer.save_pretrained"
        )


def folder_tokenizer(folder: Path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(folder))
    if len(tok) <= 1:
        raise ModelError(f"model folder {folder}: its tokenizer has {len(tok)} token(s)")
    return tok


def tokenizer_for(name_or_dir: str):
    """The tokenizer a model uses, without loading its weights (and never the network for GPT-2 hub names)."""
    if is_local(name_or_dir):
        folder = Path(name_or_dir).expanduser()
        check_folder(folder)
        return folder_tokenizer(folder)
    if is_gpt2_family(name_or_dir):
        return gpt2_tokenizer()
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(name_or_dir)
    except OSError as e:
        raise ModelError(_offline_message(name_or_dir)) from e


def _offline_message(name: str) -> str:
    return (
        f"model '{name}': cannot be fetched from the Hugging Face hub (offline or unreachable); "
        "put a folder saved with save_pretrained in `models:` instead, or pre-fill the HF cache (HF_HOME) "
        "on a networked machine and run with HF_HUB_OFFLINE=1"
    )


def load_model(
    name_or_dir: str, device: str = "auto", dtype: str | torch.dtype = "auto", processed: bool = True
) -> TransformerBridge:
    """Boot a GPT-2-family model through TransformerBridge.

    processed=True applies TransformerLens' fold_ln, center_writing_weights and center_unembed (the post's
    coordinates, docs/science.md) and checks that the logits are unchanged up to a per-position constant.
    processed=False keeps the raw weights (hooks and compatibility aliases still on).
    """
    device = resolve_device(device)
    torch_dtype = dtype if isinstance(dtype, torch.dtype) else resolve_dtype(dtype, device)
    if is_local(name_or_dir):
        folder = Path(name_or_dir).expanduser()
        if not folder.is_dir():
            raise ModelError(f"model folder {folder}: does not exist")
        check_folder(folder)
        tokenizer, target = folder_tokenizer(folder), str(folder)
    else:
        tokenizer, target = tokenizer_for(name_or_dir), name_or_dir
    from transformer_lens.model_bridge import TransformerBridge

    try:
        bridge = TransformerBridge.boot_transformers(target, device=device, dtype=torch_dtype, tokenizer=tokenizer)
    except OSError as e:
        raise ModelError(_offline_message(name_or_dir)) from e
    bridge.eval()
    if not processed:
        bridge.enable_compatibility_mode(disable_warnings=True, no_processing=True)
        return bridge
    probe = bridge.to_tokens("The quick brown fox jumps over the lazy dog, and then an apple.")
    with torch.no_grad():
        raw = bridge(probe).float()
        _fold_square_mlp_ln(bridge)
        bridge.enable_compatibility_mode(disable_warnings=True)
        proc = bridge(probe).float()
    diff = raw - proc
    drift = (diff - diff.mean(-1, keepdim=True)).abs().max().item()
    scale = raw.abs().max().item()
    tol = 1e-3 if torch_dtype == torch.float32 else 5e-2
    if drift > tol * max(1.0, scale):
        raise ModelError(
            f"model {name_or_dir}: TransformerLens processing changed its logits by {drift:.3g} "
            "(beyond a per-position constant); refusing to analyse a changed model"
        )
    return bridge


@torch.no_grad()
def _fold_square_mlp_ln(bridge: TransformerBridge) -> None:
    """Fold each block's ln_2 into its MLP input by hand when d_mlp == d_model (exact), leaving ln_2 = (1, 0).

    TransformerLens 4.3 folds ln_2 into W_in along the wrong axis when W_in is square: its layout test
    (`W_in.shape[1] == d_model` in ProcessWeights._fold_mlp_layer_norm) cannot tell [d_model, d_mlp] from
    [d_mlp, d_model], so the processed model computes something else (demo-emergent has d_mlp = d_model = 128).
    An identity ln_2 folds to the same weights along either axis. Centring W_in is left to TransformerLens
    (its square-case fallback centres the right axis; the logit check below would catch it otherwise).
    """
    if bridge.cfg.d_mlp != bridge.cfg.d_model:
        return
    for block in bridge.original_model.transformer.h:  # GPT-2: c_fc is a Conv1D, weight (d_model, d_mlp)
        gamma, beta = block.ln_2.weight, block.ln_2.bias
        block.mlp.c_fc.bias += beta @ block.mlp.c_fc.weight
        block.mlp.c_fc.weight.mul_(gamma[:, None])
        block.ln_2.weight.fill_(1.0)
        block.ln_2.bias.zero_()


def context_length(name_or_dir: str) -> int:
    """The model's context without loading weights (config.json for folders, 1024 for GPT-2 hub names)."""
    if is_local(name_or_dir):
        import json

        cfg = json.loads((Path(name_or_dir).expanduser() / "config.json").read_text())
        return int(cfg.get("n_positions") or cfg.get("max_position_embeddings"))
    if is_gpt2_family(name_or_dir):
        return GPT2_CONTEXT
    from transformers import AutoConfig

    cfg = AutoConfig.from_pretrained(name_or_dir)
    return int(getattr(cfg, "n_positions", None) or cfg.max_position_embeddings)


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")
