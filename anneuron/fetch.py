"""Fetch once, offline after: hub models and the hub dataset are downloaded on the submit host (Snakemake local
rules), at a pinned and recorded revision, into plain folders under resources/hub/ that the pipeline reads like any
local model folder or dataset folder. Every compute job then needs no network at all: it is only ever given those
folders (docs/architecture.md, "Running offline").

`fetched.json` beside each snapshot records what was asked (repository, revision) and what was got (the commit it
resolved to, the files): the provenance manifest and the report read it.

By hand, on a login node with the hub, for any hub model (README "Models"): `python -m anneuron.fetch NAME
[--revision R]` downloads config, tokenizer and weights at R into the local Hugging Face cache (so the config check
resolves NAME offline, on any node sharing that cache) and copies that snapshot into resources/hub/models/{id}/ with
its fetched.json (the folder the workflow's fetch_model rule writes, so that rule finds it done).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
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


def fetch_model(name: str, revision: str | None = None, root: str | Path = ".", download: Callable | None = None
                ) -> dict:
    """Download hub model `name` at `revision` (MODEL_PATTERNS) into the local Hugging Face cache, then copy that
    snapshot into `root`/resources/hub/models/{id}/ and record it (fetch). `download` defaults to huggingface_hub's
    snapshot_download (into the cache: it returns the snapshot folder, named after the commit it resolved to)."""
    from anneuron.resolve import model_id

    if download is None:
        import huggingface_hub as hh

        download = hh.snapshot_download
    try:
        snapshot = Path(download(repo_id=name, repo_type="model", revision=revision, allow_patterns=MODEL_PATTERNS))
    except Exception as e:  # network, auth, unknown repo or revision: one line, naming what was asked
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise FetchError(f"model {name}@{revision or 'default branch'}: cannot be downloaded ({msg}); run this on a "
                         "machine that reaches the Hugging Face hub") from None

    def copy(repo_id, repo_type, revision, local_dir, allow_patterns) -> None:  # (the cache holds symlinks: files)
        shutil.copytree(snapshot, local_dir, dirs_exist_ok=True)

    out = Path(root) / model_folder(model_id(name))
    return fetch(name, "model", out, revision, MODEL_PATTERNS, download=copy,
                 resolve_commit=lambda repo_id, repo_type, rev: snapshot.name)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m anneuron.fetch NAME [--revision R] [--root DIR]`: fetch_model, one line on success or failure."""
    ap = argparse.ArgumentParser(prog="python -m anneuron.fetch", description=main.__doc__)
    ap.add_argument("name", help="a hub model name, e.g. EleutherAI/pythia-160m")
    ap.add_argument("--revision", default=None, help="a commit sha, tag or branch (default: the default branch)")
    ap.add_argument("--root", default=".", help="the workflow's directory (resources/hub/ is created under it)")
    args = ap.parse_args(argv)
    try:
        record = fetch_model(args.name, args.revision, args.root)
    except FetchError as e:
        print(f"anneuron.fetch: {e}", file=sys.stderr)
        return 1
    from anneuron.resolve import model_id

    print(f"fetched {args.name}@{record['commit']}: {len(record['files'])} files into the Hugging Face cache and "
          f"{Path(args.root) / model_folder(model_id(args.name))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
