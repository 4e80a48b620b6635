"""The conda env files jobs deploy hold every pin of requirements.txt inline (anneuron/devtools/envs.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from anneuron.devtools.envs import pins

REPO = Path(__file__).resolve().parents[2]


def test_env_files_are_up_to_date_with_requirements():
    r = subprocess.run([sys.executable, "-m", "anneuron.devtools.envs", "--check"], cwd=REPO, capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr


def test_env_files_are_self_contained():
    """No path relative to the env file (Snakemake copies it before creating the environment)."""
    expected = pins((REPO / "requirements.txt").read_text())
    for kind in ("cpu", "gpu"):
        env = yaml.safe_load((REPO / f"envs/{kind}.yaml").read_text())
        pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
        assert not [x for x in pip if x.startswith(("-r", "-e", ".")) or "../" in x], pip
        assert [x for x in pip if "==" in x] == expected
    assert "torch==2.13.0" in expected and not [p for p in expected if p.startswith("pytest")]


def test_jobs_find_the_library_without_an_install(tmp_path):
    """A job in an env without `pip install -e` (site-packages off here) imports the checkout's library from the
    PYTHONPATH the Snakefile sets (tests/test_contracts.py checks that it sets it)."""
    r = subprocess.run([sys.executable, "-S", "-c", "import anneuron.jobs; print(anneuron.jobs.__file__)"],
                       cwd=tmp_path, capture_output=True, text=True, env={"PYTHONPATH": str(REPO)})
    assert r.returncode == 0 and r.stdout.strip() == str(REPO / "anneuron" / "jobs.py"), r.stderr
