"""The manifest: every stage config file of a model (its settings and anneuron.provenance's record of where it ran
and on what), gathered into one JSON file and one page of the report (the `manifest` rule)."""

from __future__ import annotations

import json
from pathlib import Path

from anneuron.io import REBUILD, read_json
from anneuron.report.render import render


def manifest(config_files: list[str | Path]) -> dict:
    """Every stage config file of a model, keyed by its path: what the report's manifest page shows."""
    return {str(f): read_json(f, REBUILD) for f in config_files}


def _at_commit(origin: dict) -> str:
    """A model's or dataset's repo (else its name, else a dash) and, when fetched, its commit: `repo@0123456789ab`."""
    name = origin.get("repo_id", origin.get("name", "–"))
    return name + (f"@{origin['commit'][:12]}" if origin.get("commit") else "")


def manifest_html(man: dict, model_id: str) -> str:
    """The manifest as a page for the report (templates/manifest.html.j2): one row per job with its device, dtype,
    model and dataset revision, versions and commit, and its config."""
    rows = []
    for path, rec in man.items():
        p = rec.get("provenance", {})
        cells = (path, rec.get("stage", ""), p.get("device", "–"), p.get("dtype", "–"), _at_commit(p.get("model", {})),
                 _at_commit(p.get("dataset", {})), p.get("pipeline_commit", "–"), p.get("versions", {}),
                 rec.get("config", {}))
        rows.append([c if isinstance(c, str) else json.dumps(c, sort_keys=True) for c in cells])
    return render("manifest.html.j2", model_id=model_id, rows=rows,
                  head=["file", "stage", "device", "dtype", "model@revision", "dataset@revision", "pipeline commit",
                        "versions", "config"])
