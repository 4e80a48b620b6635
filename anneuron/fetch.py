"""Fetch once, offline after: hub models and the hub dataset are downloaded on the submit host (Snakemake local
rules), at a pinned and recorded revision, into plain folders under resources/hub/ that the pipeline reads like any
local model folder or dataset folder. Every compute job then needs no network at all: it is only ever given those
folders (docs/architecture.md, "Running offline").

`fetched.json` beside each snapshot records what was asked (repository, revision) and what was got (the commit it
resolved to, the files): the provenance manifest and the report read it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Sequence

from anneuron.io import OneLineError, atomic_dir, read_json

HUB_ROOT = "resources/hub"
RECORD = "fetched.json"
# What a model snapshot needs (weights, config, tokenizer), not every format a repository ships
MODEL_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model", "tokenizer*", "merges.txt", "vocab.*"]


class FetchError(OneLineError, RuntimeError):
    """A download that cannot be done; one line naming the repository."""


def model_folder(model_id: str) -> str:
    return f"{HUB_ROOT}/models/{model_id}"


def dataset_folder(dataset_id: str) -> str:
    return f"{HUB_ROOT}/datasets/{dataset_id}"


def dataset_patterns(config_name: str | None, data_files: list[str] | None) -> list[str] | None:
    """allow_patterns for a dataset snapshot: the given data files, else the config's folder, else everything."""
    if data_files:
        return list(data_files)
    if config_name:
        return [f"{config_name}/*", f"data/{config_name}/*"]
    return None


def fetch(repo_id: str, repo_type: str, out_dir: str | Path, revision: str | None = None,
          patterns: Sequence[str] | None = None, download: Callable | None = None,
          resolve_commit: Callable | None = None) -> dict:
    """Download `repo_id` at `revision` (default branch when None) into `out_dir` (atomically: a killed fetch leaves
    nothing that looks finished) and record it. `download` / `resolve_commit` default to huggingface_hub's
    snapshot_download and HfApi().repo_info (tests pass stand-ins)."""
    if download is None or resolve_commit is None:
        import huggingface_hub as hh

        download = download or hh.snapshot_download
        resolve_commit = resolve_commit or (lambda r, t, rev: hh.HfApi().repo_info(r, repo_type=t, revision=rev).sha)
    patterns = None if patterns is None else list(patterns)  # as a list in the record and the messages
    try:
        commit = resolve_commit(repo_id, repo_type, revision)
        with atomic_dir(out_dir) as tmp:
            download(repo_id=repo_id, repo_type=repo_type, revision=commit, local_dir=str(tmp),
                     allow_patterns=patterns)
            files = sorted(str(p.relative_to(tmp)) for p in Path(tmp).rglob("*")
                           if p.is_file() and ".cache" not in p.parts)
            if not files:
                raise FetchError(f"{repo_type} {repo_id}@{commit}: no files matched {patterns}")
            record = dict(repo_id=repo_id, repo_type=repo_type, revision=revision, commit=commit,
                          patterns=patterns, files=files)
            (Path(tmp) / RECORD).write_text(json.dumps(record, indent=1) + "\n")
    except FetchError:
        raise
    except Exception as e:  # network, auth, unknown repo or revision: one line, naming what was asked
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise FetchError(f"{repo_type} {repo_id}@{revision or 'default branch'}: cannot be fetched ({msg}); this "
                         "runs on the submit host, which needs the hub (or a pre-filled HF cache)") from None
    return record


def fetched(folder: str | Path) -> dict | None:
    """The fetch record of a snapshot folder, or None for a folder that was not fetched."""
    p = Path(folder) / RECORD
    return read_json(p, "delete the folder it describes and fetch again") if p.exists() else None
