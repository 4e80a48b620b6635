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


def test_scripts_find_the_library_without_an_install(tmp_path):
    """scripts/_common.py puts the checkout first on sys.path, so a conda env without `pip install -e` works."""
    code = ("import sys; sys.path.insert(0, 'scripts'); import _common; import anneuron; "
            "print(anneuron.__file__)")
    r = subprocess.run([sys.executable, "-S", "-c", code], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip().startswith(str(REPO)), r.stderr
