"""`snakemake -n` parses, validates and plans the demo DAG offline; a bad config fails before any job."""

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def dry_run(*args: str, directory: Path = REPO) -> subprocess.CompletedProcess:
    """`snakemake -n` of this repository's workflow, run in `directory` (the repository, or a study folder)."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    return subprocess.run([*SNAKEMAKE, "-n", "--cores", "1", "--directory", str(directory), *args],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def test_demo_dag_plans_every_stage():
    r = dry_run("--configfile", "workflow/configs/demo-planted.yaml", "--forceall", "--quiet", "rules")
    assert r.returncode == 0, r.stderr[-2000:]
    out = r.stdout + r.stderr
    for rule in ("demo_model", "demo_corpus", "tokenize"):
        assert rule in out


def test_real_study_plans_offline():
    """The default config (gpt2-large, pile-10k) parses and plans without touching the network."""
    r = dry_run("--forceall", "--quiet", "rules")
    assert r.returncode == 0, r.stderr[-2000:]


def test_bad_config_fails_with_one_line():
    r = dry_run("--configfile", "workflow/configs/demo-planted.yaml", "--config", "bogus_key=1")
    assert r.returncode != 0
    lines = [ln for ln in (r.stdout + r.stderr).splitlines() if ln.startswith("anneuron:")]
    assert lines == ["anneuron: config: unknown key bogus_key (known: classes, congruence, curves, data, dataset, "
                     "demo, device, dtype, experiments, experiments_defaults, fetch, gpus, models, patching, record, "
                     "revisions, seed, stages, universality, watch)"]


def test_experiments_defaults_false_keeps_the_experiments_the_configfile_names():
    """rehearsal.yaml (`experiments_defaults: false`) names an_a and tall_short: the Snakefile reads which from
    Snakemake's overlay, so config.yaml's big_small and huge_tiny get no job."""
    r = dry_run("--configfile", "workflow/configs/rehearsal.yaml", "--forceall")
    assert r.returncode == 0, r.stderr[-2000:]
    assert set(re.findall(r"exp=([A-Za-z0-9_.-]+)", r.stdout + r.stderr)) == {"an_a", "tall_short"}
