"""Fetch once, offline after (anneuron/fetch.py), with local stand-ins for the hub: what lands in resources/hub/
is a folder the pipeline already reads (a model folder, a dataset folder), recorded at the commit it resolved to."""

from __future__ import annotations

import json
import shutil
from fnmatch import fnmatch
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from anneuron import fetch as F
from anneuron.data import iter_documents
from anneuron.resolve import resolve


def _standin(source):
    """snapshot_download / repo_info stand-ins serving a local folder as the hub repository."""
    calls = []

    def download(repo_id, repo_type, revision, local_dir, allow_patterns):
        calls.append(dict(repo_id=repo_id, revision=revision, patterns=allow_patterns))
        for p in source.rglob("*"):
            rel = p.relative_to(source)
            if p.is_file() and (allow_patterns is None or any(fnmatch(str(rel), g) for g in allow_patterns)):
                (Path(local_dir) / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(p, Path(local_dir) / rel)

    def resolve_commit(repo_id, repo_type, revision):
        return "c0ffee" if revision in (None, "main") else revision

    return download, resolve_commit, calls


def test_a_fetched_model_is_a_model_folder(tiny_dir, tmp_path):
    download, commit, calls = _standin(tiny_dir)
    out = tmp_path / "resources/hub/models/tiny"
    rec = F.fetch("someone/tiny", "model", out, patterns=F.MODEL_PATTERNS, download=download, resolve_commit=commit)
    assert calls == [dict(repo_id="someone/tiny", revision="c0ffee", patterns=F.MODEL_PATTERNS)]
    assert rec["commit"] == "c0ffee" and "config.json" in rec["files"]
    assert F.fetched(out)["repo_id"] == "someone/tiny"
    spec = resolve(str(out))  # the pipeline reads it as any folder: shapes, tokenizer, no network
    assert spec.local and spec.n_layers == 3 and spec.tokenizer_id == "gpt2"


def test_a_fetched_dataset_is_read_file_by_file(tmp_path):
    repo = tmp_path / "repo"
    (repo / "data").mkdir(parents=True)
    for i in range(2):
        pq.write_table(pa.table({"text": [f"doc {i}-{j}" for j in range(3)]}), repo / f"data/train-0000{i}.parquet")
    (repo / "README.md").write_text("card")
    download, commit, _ = _standin(repo)
    out = tmp_path / "resources/hub/datasets/corpus"
    F.fetch("someone/corpus", "dataset", out, revision="v1", patterns=F.dataset_patterns(None, ["data/train-*"]),
            download=download, resolve_commit=commit)
    assert F.fetched(out)["commit"] == "v1" and not (out / "README.md").exists()
    texts = iter_documents(str(out), text_column="text", split="train", max_docs=None)
    assert list(texts) == [f"doc {i}-{j}" for i in range(2) for j in range(3)]


def test_a_failed_fetch_is_one_line_and_leaves_nothing(tmp_path):
    def broken(**_):
        raise OSError("401 Client Error\nRepository Not Found for url: https://huggingface.co/...")

    out = tmp_path / "resources/hub/models/nope"
    with pytest.raises(F.FetchError) as e:
        F.fetch("someone/nope", "model", out, download=broken, resolve_commit=lambda *a: "abc")
    assert "\n" not in str(e.value) and "someone/nope" in str(e.value) and "401" in str(e.value)
    assert not out.exists()


def test_patterns():
    assert F.dataset_patterns(None, None) is None
    assert F.dataset_patterns("en", None) == ["en/*", "data/en/*"]
    assert F.dataset_patterns("en", ["x/*.parquet"]) == ["x/*.parquet"]


def test_the_workflow_fetches_hub_names_and_gives_jobs_only_folders(tmp_path):
    """Dry run of the real study: the fetch rules are local and come first; every compute job's model and dataset
    are folders under resources/hub/ (so no compute job can reach for the hub)."""
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"real": {"configfiles": ["config.yaml"]}}))
    r = subprocess.run([sys.executable, "tests/dryrun_api.py", str(repo), str(spec)], cwd=repo, capture_output=True,
                       text=True, timeout=300, env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr[-3000:]
    jobs = json.loads(r.stdout.splitlines()[-1])["real"]
    fetches = {j["rule"]: j["outputs"] for j in jobs if j["rule"].startswith("fetch_")}
    assert fetches == {"fetch_model": ["resources/hub/models/gpt2-large"],
                       "fetch_dataset": ["resources/hub/datasets/pile-10k"]}
    record = [j for j in jobs if j["rule"] == "record"]
    assert record and all("resources/hub/models/gpt2-large" in j["inputs"] for j in record)
    tokenize = next(j for j in jobs if j["rule"] == "tokenize")
    assert "resources/hub/datasets/pile-10k" in tokenize["inputs"]


# --- `python -m anneuron.fetch NAME [--revision R]`: any hub model, by hand, on a login node ------------------------

def _hub_cache(monkeypatch, cache: Path) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(cache))


def _fake_snapshot_download(source: Path, cache: Path, commit: str, calls: list):
    """huggingface_hub.snapshot_download's stand-in: the hub cache's layout (snapshots/<commit>/, refs/<revision>)
    filled from a local folder; returns the snapshot folder, as the real one does."""
    def download(repo_id, repo_type, revision, allow_patterns):
        calls.append(dict(repo_id=repo_id, revision=revision, patterns=allow_patterns))
        repo = cache / f"models--{repo_id.replace('/', '--')}"
        snap = repo / "snapshots" / commit
        for p in source.rglob("*"):
            rel = p.relative_to(source)
            if p.is_file() and any(fnmatch(str(rel), g) for g in allow_patterns):
                (snap / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(p, snap / rel)
        (repo / "refs").mkdir(exist_ok=True)
        (repo / "refs" / (revision or "main")).write_text(commit)
        return str(snap)

    return download


@pytest.fixture
def pythia_source(tmp_path) -> Path:
    """What a hub repository of a GPT-NeoX model holds (config, tokenizer, a weights file and a README)."""
    from anneuron.demos.families import family_config
    from anneuron.tokenizer import gpt2_tokenizer

    src = tmp_path / "hub-repo"
    family_config("gpt_neox").save_pretrained(src)
    gpt2_tokenizer().save_pretrained(src)
    (src / "model.safetensors").write_bytes(b"weights")
    (src / "README.md").write_text("not fetched")
    return src


def test_fetch_command_makes_a_hub_model_resolve_offline_and_the_fetch_rule_done(pythia_source, tmp_path,
                                                                                monkeypatch, capsys):
    import huggingface_hub

    from anneuron.resolve import STAGES, ModelError

    cache, root, name = tmp_path / "cache", tmp_path / "study", "someone/pythia-tiny"
    _hub_cache(monkeypatch, cache)
    with pytest.raises(ModelError, match=f"python -m anneuron.fetch {name}"):
        resolve(name)
    calls = []
    monkeypatch.setattr(huggingface_hub, "snapshot_download", _fake_snapshot_download(pythia_source, cache,
                                                                                      "abc123", calls))
    assert F.main([name, "--root", str(root)]) == 0
    assert "fetched someone/pythia-tiny@abc123" in capsys.readouterr().out
    assert calls == [dict(repo_id=name, revision=None, patterns=F.MODEL_PATTERNS)]
    spec = resolve(name)  # offline, from the cache
    assert (spec.family, spec.model_type, spec.n_layers, spec.d_mlp) == ("gpt_neox", "gpt_neox", 3, 128)
    for stage in STAGES:
        spec.check_stage(stage)
    assert spec.token_counter()("Hello world") == 2
    folder = root / F.model_folder("pythia-tiny")  # what the workflow's fetch_model rule would have written
    record = F.fetched(folder)
    assert record["commit"] == "abc123" and record["revision"] is None and record["repo_id"] == name
    assert "README.md" not in record["files"] and {"config.json", "model.safetensors"} <= set(record["files"])
    assert resolve(str(folder)).family == "gpt_neox"

    assert F.main([name, "--revision", "v1", "--root", str(tmp_path / "other")]) == 0  # a pinned revision
    assert calls[-1]["revision"] == "v1" and resolve(name, revision="v1").n_layers == 3


def test_fetch_command_failure_is_one_line(tmp_path, monkeypatch, capsys):
    import huggingface_hub

    def offline(**kwargs):
        raise OSError("We couldn't connect to 'https://huggingface.co'.\nCheck your connection.")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    assert F.main(["someone/pythia-tiny", "--root", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "someone/pythia-tiny@default branch: cannot be downloaded" in err
    assert not (tmp_path / "resources").exists()


def test_after_the_fetch_command_the_workflow_plans_the_study_without_a_fetch_job(pythia_source, tmp_path,
                                                                                 monkeypatch):
    """The other half of "the workflow's fetch rule finds it done": a dry run of a study naming the fetched hub
    model, offline and with the cache the command filled, schedules every stage on it and no `fetch_model` job."""
    import huggingface_hub
    from test_dryrun import dry_run

    cache, root, name = tmp_path / "cache", tmp_path / "study", "someone/pythia-tiny"
    _hub_cache(monkeypatch, cache)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", _fake_snapshot_download(pythia_source, cache,
                                                                                      "abc123", []))
    assert F.main([name, "--root", str(root)]) == 0
    study = tmp_path / "study.yaml"
    study.write_text(f"models: [{name}]\ndataset: resources/data/demo-planted.parquet\n"
                     "experiments_defaults: false\nexperiments: {}\n")
    r = dry_run("--configfile", str(study), "--quiet", "rules", directory=root)
    assert r.returncode == 0, r.stderr[-2000:]
    jobs = {line.split()[0] for line in r.stdout.splitlines() if line.strip() and line.split()[-1].isdigit()}
    assert {"congruence", "record", "pages"} <= jobs
    assert "fetch_model" not in jobs
