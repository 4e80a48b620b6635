"""The contracts module against the workflow and the docs: every output a rule declares is a PATHS template and
every PATHS template is some rule's output; every table and every config key is documented in docs/."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from anneuron import contracts as K

REPO = Path(__file__).resolve().parents[1]


def _normalise(pattern: str) -> str:
    pattern = re.sub(r"\{(\w+),[^{}]*(?:\{[^{}]*\}[^{}]*)*\}", r"{\1}", pattern)  # drop wildcard constraints
    return re.sub(r"shard-\d+\.parquet$", "shard-{i}.parquet", pattern)  # tokenize lists its shards expanded


@pytest.fixture(scope="module")
def parsed(tmp_path_factory) -> dict:
    """Rule -> declared outputs, parsed with save_matrix on (so the optional matrix output is declared too)."""
    extra = tmp_path_factory.mktemp("cfg") / "matrix.yaml"
    extra.write_text("congruence: {save_matrix: true}\n")
    r = subprocess.run([sys.executable, "tests/dryrun_api.py", "--outputs", ".", "workflow/configs/demo-planted.yaml",
                        str(extra)], cwd=REPO, capture_output=True, text=True, timeout=300,
                       env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.splitlines()[-1])


@pytest.fixture(scope="module")
def declared(parsed) -> dict[str, set[str]]:
    return {rule: {_normalise(o) for o in outs} for rule, outs in parsed["rules"].items()}


def test_parsing_the_workflow_imports_no_torch(parsed):
    """Every job parses the Snakefile: it must stay cheap and never touch the network (models are resolved by
    anneuron.resolve, torch-free)."""
    assert parsed["torch_imported"] is False


def test_jobs_import_this_checkouts_library(parsed):
    """Parsing the Snakefile (parsed here with no PYTHONPATH) puts its checkout on PYTHONPATH, which every job
    inherits: the jobs import this checkout's library, whatever else is installed (docs/architecture.md)."""
    assert parsed["pythonpath"] == str(REPO)


def test_every_declared_output_is_a_contract_path(declared):
    templates = set(K.PATHS.values())
    stray = {rule: sorted(outs - templates) for rule, outs in declared.items() if outs - templates}
    assert not stray, f"rules declare outputs that anneuron.contracts.PATHS does not hold: {stray}"


def test_every_contract_path_is_declared_by_a_rule(declared):
    outputs = set().union(*declared.values())
    assert not sorted(set(K.PATHS.values()) - outputs)


def test_neuron_names_round_trip():
    assert K.neuron_name(31, 892) == "L31N892" and K.parse_neuron("L31N892") == (31, 892)
    assert K.flat_name(31 * 5120 + 892, 5120) == "L31N892"
    with pytest.raises(ValueError, match="not of the form"):
        K.parse_neuron("L31-892")


def test_paths_fill_and_relative():
    assert K.path("exp_neurons", model="m", exp="an_a") == "results/m/experiments/an_a/neurons.parquet"
    assert K.relative("predictions", dataset="pile-10k") == "pile-10k/predictions.parquet"
    with pytest.raises(KeyError):
        K.path("exp_neurons", model="m")
    files = K.experiment_files("x")
    assert {p.name for p in files.values()} == {Path(K.PATHS[f"exp_{t}"]).name for t in files}


def _section(text: str, path: str) -> str:
    """The part of docs/contracts.md from the heading or table row that names `path` to the next heading."""
    i = text.find(path)
    assert i >= 0, f"docs/contracts.md does not mention {path}"
    j = text.find("\n#", i)
    return text[i: j if j > 0 else len(text)]


def test_every_table_and_column_is_documented():
    text = (REPO / "docs/contracts.md").read_text()
    for key, schema in K.TABLES.items():
        section = _section(text, K.PATHS[key])
        missing = [f.name for f in schema if f"`{f.name}`" not in section]
        assert not missing, f"docs/contracts.md: {K.PATHS[key]} lacks columns {missing}"
    for key, template in K.PATHS.items():
        assert template in text, f"docs/contracts.md does not mention {template} ({key})"


def _schema_keys(node: dict, root: dict, prefix: str = "") -> list[str]:
    if "$ref" in node:
        node = root["$defs"][node["$ref"].rsplit("/", 1)[1]]
    keys = []
    for name, sub in node.get("properties", {}).items():
        dotted = f"{prefix}{name}"
        keys.append(dotted)
        keys += _schema_keys(sub, root, dotted + ".")
    extra = node.get("additionalProperties")
    if isinstance(extra, dict) and extra.get("properties"):  # experiments.<name>.clean, ...
        keys += _schema_keys(extra, root, prefix + "<name>.")
    return keys


def test_every_config_key_is_documented():
    schema = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())
    text = (REPO / "docs/config.md").read_text()
    keys = _schema_keys(schema, schema)
    assert len(keys) > 50
    missing = [k for k in keys if f"`{k}`" not in text]
    assert not missing, f"docs/config.md does not document {missing}"
