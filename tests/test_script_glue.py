"""The thin rule scripts' shared glue (anneuron.jobs): every job but a fetch is offline, so a hub call on a compute
node without internet fails at once instead of hanging until a network timeout; a job imports the library from the
PYTHONPATH the Snakefile sets, and nothing changes where the glue is imported outside a rule's script."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = """
from anneuron.jobs import setup_logging  # the first line of every rule script
import os
print(os.environ.get("HF_HUB_OFFLINE"), os.environ.get("HF_DATASETS_OFFLINE"))
if {call!r}:
    from huggingface_hub import hf_hub_download
    try:
        hf_hub_download("gpt2", "config.json")
    except Exception as e:
        print(type(e).__name__)
"""


def run_as(tmp_path: Path, script: str, call: bool = False, folder: str = ".snakemake/scripts") -> list[str]:
    """Run the glue as snakemake runs a rule's script (`.snakemake/scripts/tmpXXXXXXXX.<script>`, the checkout on
    PYTHONPATH as the Snakefile sets it), with no HF variables and an empty HF cache."""
    path = tmp_path / folder / f"tmpk3x9a1b2.{script}"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(SCRIPT.format(call=call))
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env["HF_HOME"] = str(tmp_path / "hf-home")
    env["PYTHONPATH"] = str(REPO)
    r = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, timeout=120, env=env,
                       cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    return r.stdout.split()


@pytest.mark.parametrize("script", ["record.py", "experiment.py", "tokenize_dataset.py", "example_activations.py"])
def test_jobs_are_offline(tmp_path, script):
    assert run_as(tmp_path, script)[:2] == ["1", "1"]


def test_a_hub_call_in_a_job_fails_at_once(tmp_path):
    out = run_as(tmp_path, "congruence.py", call=True)
    assert out[:2] == ["1", "1"] and out[2] in ("OfflineModeIsEnabled", "LocalEntryNotFoundError"), out


def test_the_fetch_jobs_may_reach_the_hub(tmp_path):
    assert run_as(tmp_path, "fetch.py")[:2] == ["None", "None"]


def test_importing_the_glue_elsewhere_changes_nothing(tmp_path):
    """Outside a rule's script (a notebook, a test, a benchmark) the library's glue module sets no variable."""
    assert run_as(tmp_path, "record.py", folder="notebooks")[:2] == ["None", "None"]


def test_the_checkout_goes_first_on_pythonpath(monkeypatch):
    """What the Snakefile does for its jobs: the checkout first, what was there kept after it (empty entries, which
    would mean the working directory, and a repeat of the checkout dropped)."""
    from anneuron.jobs import export_library

    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(["/elsewhere", "", "/repo", "/more"]))
    export_library("/repo")
    assert os.environ["PYTHONPATH"] == os.pathsep.join(["/repo", "/elsewhere", "/more"])
    monkeypatch.delenv("PYTHONPATH")
    export_library("/repo")
    assert os.environ["PYTHONPATH"] == "/repo"


@pytest.mark.parametrize("error", ["ModelError", "DeviceError", "FetchError", "InputError"])
def test_every_one_line_failure_ends_the_log_with_its_line(tmp_path, error):
    """A model missing offline, no GPU where one was asked for, a package that cannot be fetched and an unusable
    input all end a job's log with one line naming the rule, never a traceback (anneuron.io.OneLineError)."""
    log = tmp_path / "job.log"
    code = f"""
import types
from anneuron.jobs import setup_logging
from anneuron.resolve import ModelError
from anneuron.provenance import DeviceError
from anneuron.demos.real import FetchError
from anneuron.io import InputError
setup_logging(types.SimpleNamespace(log=[{str(log)!r}], rule="congruence"))
raise {error}("something the user can fix:\\n what to do")
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 1
    lines = log.read_text().splitlines()
    assert lines[-1] == "anneuron: congruence: something the user can fix: what to do"
    assert "Traceback" not in log.read_text()
