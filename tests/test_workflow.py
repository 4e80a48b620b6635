"""The workflow as users drive it: lint and format clean, profiles that send every GPU rule to a GPU, and — on a
real completed run of two models in a scratch copy of the repository — only what a config change affects reruns,
each model gets its complete results/{model}/, and `snakemake --report` shows every figure with its caption.

The completed run (the demo and a second random model, few documents) takes a few minutes; those tests are marked
`slow` (`pytest -m "not slow"` skips them). They never touch the repository's own results/ or resources/.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
ENV = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
DEMO = "workflow/configs/demo-planted.yaml"
DATASET = "demo-planted"  # the demo corpus' dataset id
MODELS = ("demo-planted", "tiny-random")
RUN_TIMEOUT = 900
# How the tests run the workflow: one thread per job, three job slots on this 2-core machine, memory for all of them.
# The tiny models' jobs are mostly Python starting (imports), and a rule's declared threads and memory (sized for
# GPT-2 Large) would run them one or two at a time. Measured on the run_dir run, quiet machine: 261 s with the
# profile's 2 cores, 222 s with these slots, 235 s adding the critical-path priorities (common.smk; noise ±15 s).
TEST_RUN = ("--workflow-profile", "workflow/profiles/default", "--cores", "3", "--max-threads", "1",
            "--resources", "mem_mb=64000", "gpu=1")
# The end-to-end run: the demo config with two models and few documents, two experiments only (tests/configs.py).
RUN_CONFIG = "tests/run.yaml"
CONFIG_ARGS = ("--replace-workflow-config", "--configfile", RUN_CONFIG)
EXPERIMENTS = ("an_a", "though_even", "an_task")
# A task of three pairs (docs/science.md "Tasks"), run beside the two single pairs.
TASK = {"template": {"clean": "I climbed up the {fruit} tree and picked",
                     "corrupted": "I climbed up the {fruit} tree and walked", "answer": " an", "wrong": " a"},
        "fills": [{"fruit": "apple"}, {"fruit": "pear"}, {"fruit": "plum"}]}


def snakemake(*args: str, cwd: Path = REPO, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([*SNAKEMAKE, *args], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=timeout)


# --- static checks (every `make test`) ---------------------------------------------------------------------------

def test_lint_is_clean():
    r = snakemake("--lint", "--configfile", DEMO)
    out = r.stdout + r.stderr
    assert r.returncode == 0 and "Lints for" not in out, out[-4000:]


def test_snakefmt_is_clean():
    """Format with `snakefmt Snakefile workflow/rules` (settings in pyproject.toml [tool.snakefmt])."""
    r = subprocess.run([sys.executable, "-m", "snakefmt", "--check", "Snakefile", "workflow/rules"], cwd=REPO,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]


def _planned_jobs(text: str) -> list[tuple[str, dict[str, str]]]:
    """(rule, resources) of each job a dry-run prints."""
    jobs, rule = [], None
    for line in text.splitlines():
        m = re.match(r"^(?:local)?rule (\w+):$", line.strip())
        if m:
            rule = m.group(1)
        m = re.match(r"^resources: (.*)$", line.strip())
        if m and rule:
            res = dict(kv.split("=", 1) for kv in re.split(r", (?=\w+=)", m.group(1)))
            jobs.append((rule, res))
            rule = None
    return jobs


def test_slurm_profile_sends_gpu_rules_to_the_gpu_partition():
    """Planned with the slurm profile on the real study with a second GPT-2 (gpt2-large and gpt2-medium, so the
    universality tiles are planned too; offline): gpu=1 jobs on `gpu`, others on `cpu`, and every set-resources
    entry names a rule of the workflow."""
    r = snakemake("-n", "--forceall", "--profile", "workflow/profiles/slurm", "--config",
                  'models=["gpt2-large","gpt2-medium"]')
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    jobs = _planned_jobs(r.stdout + r.stderr)
    assert jobs
    profile = yaml.safe_load((REPO / "workflow/profiles/slurm/config.yaml").read_text())
    rules = {rule for rule, _ in jobs}
    assert set(profile["set-resources"]) <= rules, set(profile["set-resources"]) - rules
    gpu_rules = set()
    for rule, res in jobs:
        if rule == "all":
            continue
        if int(res.get("gpu", 0)) > 0:
            gpu_rules.add(rule)
            assert res.get("slurm_partition") == "gpu", (rule, res)
        else:
            assert res.get("slurm_partition") == "cpu", (rule, res)
        assert "mem_mb" in res and "runtime" in res, (rule, res)
    assert gpu_rules == {r for r, v in profile["set-resources"].items() if v.get("slurm_partition") == "gpu"}


# --- a job that cannot read its input ------------------------------------------------------------------------------

def test_a_truncated_download_ends_its_job_with_one_line(tiny_dir, tmp_path):
    """A model folder whose model.safetensors was cut short (an interrupted download), run through Snakemake in a
    scratch copy: the congruence job fails and snakemake exits non-zero; the job's log ends with ONE line naming the
    rule, the file and what to do, also shown on the terminal. Another install of anneuron is on the PYTHONPATH
    given (one that fails on import): the job still imports the copy's library, which its Snakefile puts first on
    PYTHONPATH (docs/architecture.md)."""
    from configs import write_complete_config

    work = copy_repo(tmp_path / "repo")
    folder = Path(shutil.copytree(tiny_dir, work / "extra" / "broken"))
    weights = folder / "model.safetensors"
    size = weights.stat().st_size
    os.truncate(weights, size // 2)
    overlay = write_yaml(work / "tests/broken-overlay.yaml", {"models": ["extra/broken"], "data": {"seq_len": "auto"}})
    write_complete_config(work / "tests/broken.yaml", [DEMO, overlay], ["an_a"], repo=work)
    decoy = tmp_path / "elsewhere" / "anneuron" / "__init__.py"
    decoy.parent.mkdir(parents=True)
    decoy.write_text('raise ImportError("another install of anneuron, not this checkout\'s")\n')
    env = dict(ENV, PYTHONPATH=str(decoy.parents[1]))
    r = subprocess.run([*SNAKEMAKE, "results/broken/weights/tokens.parquet", "--cores", "1",
                        "--replace-workflow-config", "--configfile", "tests/broken.yaml"], cwd=work, env=env,
                       capture_output=True, text=True, timeout=300)
    line = (f"anneuron: congruence: extra/broken/model.safetensors is truncated or corrupted ({size // 2:,} bytes "
            f"where its header describes {size:,}; an interrupted download?): delete extra/broken and rerun (or fetch "
            "it again)")
    assert r.returncode != 0
    log = (work / "logs/congruence/broken.log").read_text()
    assert log.splitlines()[-1] == line and "Traceback" not in log, log[-3000:]
    assert line in r.stderr.splitlines(), r.stderr[-3000:]


# --- a completed run in a scratch copy (slow) --------------------------------------------------------------------

def copy_repo(dst: Path) -> Path:
    """The sources without outputs, environment symlinked: runs here never touch the user's results."""
    skip = {".venv", ".git", "results", "resources", "logs", "benchmarks", ".snakemake", "report.html",
            "report.zip", "__pycache__", ".pytest_cache"}
    shutil.copytree(REPO, dst, ignore=lambda d, names: [n for n in names if n in skip or n.endswith(".egg-info")])
    (dst / ".venv").symlink_to(REPO / ".venv")
    return dst


def write_yaml(path: Path, obj: dict) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(obj, sort_keys=False))
    return str(path)


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory) -> Path:
    """The demo model and a second small random GPT-2 run together to completion (few documents)."""
    from configs import write_complete_config

    from conftest import build_random_gpt2

    work = copy_repo(tmp_path_factory.mktemp("workflow") / "repo")
    build_random_gpt2(work / "extra" / "tiny-random", n_ctx=128, seed=7)
    overlay = write_yaml(work / "tests/run-overlay.yaml", {
        "models": ["resources/models/demo-planted", "extra/tiny-random"],
        "data": {"max_docs": 60, "shards": 2},
        "experiments": {"an_task": TASK},
        "stages": {"max_tokens": 2048, "lens_tokens": 256, "intervention_tokens": 256},
    })
    write_complete_config(work / RUN_CONFIG, [DEMO, overlay], list(EXPERIMENTS), repo=work)
    r = snakemake(*TEST_RUN, *CONFIG_ARGS, cwd=work,
                  timeout=RUN_TIMEOUT)
    assert r.returncode == 0, (r.stdout + r.stderr)[-6000:]
    return work




@pytest.fixture(scope="session")
def plans(run_dir) -> dict[str, list[dict]]:
    """What each one-value change would rerun (dry-runs through the Snakemake API, tests/dryrun_api.py)."""
    changes = {
        "bin_width": {"curves": {"bin_width": 0.1}},
        "top_pairs": {"watch": {"top_pairs": 4}},
        "standouts": {"watch": {"standouts": 3}},
        "prompt": {"experiments": {"though_even": {"clean": "He went out in the rain even",
                                                   "corrupted": "He went out in the rain today"}}},
        "model": {"demo": {"seed": 1}},
        "task_pair": {"experiments": {"an_task": dict(TASK, fills=[*TASK["fills"][:2], {"fruit": "lemon"}])}},
        "kurtosis": {"classes": {"kurtosis": 3.0}},
        "window": {"record": {"window": 12}},
        "lens": {"stages": {"lens_tokens": 128}},
        "interventions": {"stages": {"intervention_tokens": 128}},
        "stages_positions": {"stages": {"max_tokens": 512}},
        "stages_batch": {"stages": {"batch_size": 3}},
    }
    base = {"configfiles": [RUN_CONFIG], "replace_workflow_config": True}
    spec = {"unchanged": base, "everything": dict(base, forceall=True)}
    for name, change in changes.items():
        spec[name] = dict(base, configfiles=[RUN_CONFIG, write_yaml(run_dir / f"tests/change-{name}.yaml", change)])
    spec_file = run_dir / "tests/plans.json"
    spec_file.write_text(json.dumps(spec))
    r = subprocess.run([sys.executable, str(REPO / "tests/dryrun_api.py"), str(run_dir), str(spec_file)],
                       cwd=run_dir, env=ENV, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, (r.stdout + r.stderr)[-6000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def outputs(jobs: list[dict]) -> list[str]:
    return [o for j in jobs for o in j["outputs"]]


def of_model(paths: list[str], model: str) -> list[str]:
    return [p for p in paths if p.startswith(f"results/{model}/")]


@pytest.mark.slow
def test_each_model_gets_its_complete_results(run_dir, plans):
    everything = outputs(plans["everything"])
    for model in MODELS:
        mine = of_model(everything, model)
        assert mine, model
        missing = [p for p in mine if not (run_dir / p).exists()]
        assert not missing, missing
        root = run_dir / "results" / model
        for table in ("weights/tokens.parquet", "weights/neurons.parquet", "weights/pairs.parquet",
                      f"{DATASET}/predictions.parquet", f"{DATASET}/curves.parquet", "paper_check.parquet"):
            assert (root / table).exists(), (model, table)
        assert list((root / "figures").rglob("*.png")), model
    # The same jobs per model (the neurons each model watches aside): nothing of one model is shared or skipped.
    def shape(model: str) -> set[str]:  # (a pair's universality tiles live under its first model only)
        return {re.sub(r"L\d+N\d+", "LxNy", p.split("/", 2)[2]) for p in of_model(everything, model)
                if "/universality/tiles/" not in p}
    assert shape("demo-planted") == shape("tiny-random")
    import pyarrow.parquet as pq

    pairs = [pq.read_table(run_dir / f"results/{m}/weights/pairs.parquet").to_pylist()[:3] for m in MODELS]
    assert pairs[0] != pairs[1]


@pytest.mark.slow
def test_nothing_reruns_when_nothing_changed(plans):
    assert plans["unchanged"] == []


def rules(jobs: list[dict], model: str | None = None) -> set[str]:
    return {j["rule"] for j in jobs if model is None or of_model(j["outputs"], model)}


@pytest.mark.slow
def test_bin_width_reruns_only_curves_and_their_figures(plans):
    """The curves rule also writes predictions.parquet (predicted vs occurred), which the paper check reads, and the
    neuron pages show the curves; the manifest gathers the curves' config: they rerun with them."""
    jobs = plans["bin_width"]
    assert rules(jobs) <= {"curves", "dataset_figures", "paper_check", "pages", "manifest"}, rules(jobs)
    for model in MODELS:
        assert {"curves", "dataset_figures"} <= rules(jobs, model), model


@pytest.mark.slow
def test_top_pairs_reruns_record_and_downstream_but_not_congruence(plans):
    jobs = plans["top_pairs"]
    for model in MODELS:
        assert {"record", "curves", "dataset_figures"} <= rules(jobs, model), rules(jobs, model)
        assert len([j for j in jobs if j["rule"] == "record" and of_model(j["outputs"], model)]) == 2
    assert not rules(jobs) & {"congruence", "pairs", "neuron_classes", "weights_figures", "tokenize", "experiment"}


@pytest.mark.slow
def test_standouts_make_the_dataset_pass_wait_for_the_experiments(plans):
    """watch.standouts reruns the dataset pass on what every experiment found; the experiments themselves and
    the weights pass stay (and without standouts, record does not depend on experiments: see the prompt test)."""
    jobs = plans["standouts"]
    assert not rules(jobs) & {"congruence", "pairs", "neuron_classes", "tokenize", "experiment"}, rules(jobs)
    for model in MODELS:
        assert {"record", "curves", "dataset_figures"} <= rules(jobs, model), rules(jobs, model)
        for j in jobs:  # the watch rule reads them; record and curves read what it writes (watched.parquet)
            if j["rule"] == "watch" and of_model(j["outputs"], model):
                for table in ("neurons.parquet", "summary.json"):
                    assert {f"results/{model}/experiments/{e}/{table}" for e in EXPERIMENTS} <= set(j["inputs"])
            if j["rule"] in ("record", "curves") and of_model(j["outputs"], model):
                assert f"results/{model}/{DATASET}/watched.parquet" in j["inputs"]


@pytest.mark.slow
def test_class_thresholds_rerun_the_classes_and_the_weights_figures(plans):
    """classes.kurtosis reaches weights_figures through its typed config (the classes figure draws the thresholds)
    as well as neuron_classes; then what reads neurons.parquet (the pages, the paper check, the universality figures'
    class panel: the two models share a tokenizer; the stages figures, which draw the class shares), nothing else."""
    jobs = plans["kurtosis"]
    assert rules(jobs) <= {"neuron_classes", "weights_figures", "pages", "paper_check", "universality_figures",
                           "stages_figure", "stages_models_figure"}, rules(jobs)
    for model in MODELS:
        assert {"neuron_classes", "weights_figures"} <= rules(jobs, model), model


@pytest.mark.slow
def test_the_example_window_reruns_the_examples_not_the_recording(plans):
    """record.window is max_examples' and the example pass's (their typed configs), not record's."""
    jobs = plans["window"]
    assert rules(jobs) <= {"max_examples", "example_activations", "pages"}, rules(jobs)
    for model in MODELS:
        assert {"max_examples", "example_activations"} <= rules(jobs, model), model


@pytest.mark.slow
@pytest.mark.parametrize("change, rerun", [("lens", {"stages_layers"}), ("stages_positions", {"stages_layers"}),
                                           ("interventions", {"stages_interventions"}),
                                           ("stages_batch", {"stages_layers", "stages_interventions"})])
def test_stages_keys_rerun_only_the_stage(plans, change, rerun):
    """stages.lens_tokens and stages.max_tokens reach only stages_layers, stages.intervention_tokens only
    stages_interventions, stages.batch_size both (their typed configs); then the stage's figures, nothing else (no
    dataset pass, no weights pass)."""
    jobs = plans[change]
    assert rules(jobs) == {*rerun, "stages_figure", "stages_models_figure"}, rules(jobs)
    for model in MODELS:
        assert {*rerun, "stages_figure"} <= rules(jobs, model), model


@pytest.mark.slow
def test_stages_draw_every_model_side_by_side(run_dir):
    """Two models in the run: one stages figure each, and the figure of both against relative depth."""
    for model in MODELS:
        assert (run_dir / f"results/{model}/figures/{DATASET}/stages.png").stat().st_size > 10_000
    assert (run_dir / f"results/figures/{DATASET}/stages_models.png").stat().st_size > 10_000


@pytest.mark.slow
def test_changing_a_prompt_reruns_only_that_experiment(plans):
    """though_even's own job and figures, and what gathers all experiments (the cross-experiment summary, which
    the paper check reads)."""
    jobs = plans["prompt"]
    assert rules(jobs) <= {"experiment", "experiment_figures", "experiments_summary", "paper_check", "pages",
                           "manifest"}, rules(jobs)
    for j in jobs:
        if j["rule"] in ("experiment", "experiment_figures"):
            assert all("/though_even" in p for p in j["outputs"]), j
    for model in MODELS:
        assert {"experiment", "experiment_figures"} <= rules(jobs, model), model


@pytest.mark.slow
def test_changing_one_pair_of_a_task_reruns_only_that_task(plans):
    jobs = plans["task_pair"]
    assert rules(jobs) <= {"experiment", "experiment_figures", "experiments_summary", "paper_check", "pages",
                           "manifest"}, rules(jobs)
    for j in jobs:
        if j["rule"] in ("experiment", "experiment_figures"):
            assert all("/an_task" in p for p in j["outputs"]), j
    for model in MODELS:
        assert {"experiment", "experiment_figures"} <= rules(jobs, model), model


@pytest.mark.slow
def test_changing_the_model_reruns_all_of_it(plans):
    """demo.seed rebuilds the demo model (and its corpus): every job of that model reruns; the other model's
    weights pass, which needs no data, does not."""
    everything = set(outputs(plans["everything"]))
    planned = set(outputs(plans["model"]))
    assert set(of_model(list(everything), "demo-planted")) <= planned
    assert not [p for p in planned if p.startswith("results/tiny-random/weights/")]


@pytest.mark.slow
def test_report_shows_every_figure_with_its_caption(run_dir):
    r = snakemake("--report", "report.html", *CONFIG_ARGS, cwd=run_dir, timeout=600)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    page = (run_dir / "report.html").read_text()
    figures = sorted(p for p in (run_dir / "results").rglob("figures/**/*") if p.suffix in (".png", ".html"))
    assert figures
    missing = [str(p.relative_to(run_dir)) for p in figures if str(p.relative_to(run_dir)) not in page]
    assert not missing, missing
    captions = sorted((REPO / "workflow/report").rglob("*.rst"))
    assert any(c.name == "workflow.rst" for c in captions)


COUNT_ROWS = ("an_predicted", "an_occurred", "though_predicted", "though_occurred")


@pytest.mark.slow
def test_a_run_over_the_first_100_documents_says_its_counts_are_not_comparable(run_dir, tmp_path):
    """The issue's run, end to end: the `paper_check` rule rerun by Snakemake on the planted demo's artifacts with
    `data.max_docs: 100` (a configfile overlay, as docs/paper.md says) writes count rows "not comparable: …" that
    name max_docs; the same run with no max_docs names it nowhere, and its values are the same (only the settings
    differ). In a copy, so that the run the other tests read stays as it was."""
    import pyarrow.parquet as pq

    work = tmp_path / "repo"
    shutil.copytree(run_dir, work, symlinks=True)
    table = work / "results/demo-planted/paper_check.parquet"

    def check(max_docs: int | None) -> dict[str, dict]:
        overlay = write_yaml(work / f"tests/max-docs-{max_docs}.yaml", {"data": {"max_docs": max_docs}})
        r = snakemake(str(table.relative_to(work)), "--cores", "1", "--forcerun", "paper_check",
                      "--allowed-rules", "paper_check", "--rerun-triggers", "mtime",
                      "--replace-workflow-config", "--configfile", RUN_CONFIG, overlay, cwd=work)
        assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
        return {row["key"]: row for row in pq.read_table(table).to_pylist()}

    first_100, every_doc = check(100), check(None)
    for key in COUNT_ROWS:
        status = first_100[key]["status"]
        assert status.startswith("not comparable: ") and "max_docs = 100 (the post: None)" in status, status
        assert first_100[key]["difference"] is None
        assert "max_docs" not in every_doc[key]["status"], every_doc[key]
        assert every_doc[key]["status"].startswith("not comparable: "), every_doc[key]  # the demo's own data
        assert first_100[key]["ours"] == every_doc[key]["ours"] and first_100[key]["ours"] is not None
    for key, row in every_doc.items():
        assert "max_docs" not in row["status"], row
        if key not in COUNT_ROWS and "max_docs" not in row["settings"]:
            assert first_100[key]["status"] == row["status"], key  # what does not read the data is untouched


def _profile_grouping(profile: Path) -> dict:
    """The slurm profile's group settings as the dry-run API takes them."""
    cfg = yaml.safe_load(profile.read_text())
    pairs = lambda key: dict(e.split("=", 1) for e in cfg.get(key, []))  # noqa: E731
    return {"groups": pairs("groups"), "group_components": {k: int(v) for k, v in pairs("group-components").items()},
            "resources": {k: int(v) for k, v in pairs("resources").items()},
            "resource_scopes": pairs("set-resource-scopes")}


def test_real_study_job_shape_on_a_gpu_cluster(tmp_path):
    """GPT-2 Large + pile-10k with `gpus: 4`, grouped as the slurm profile groups: tiny rules are local, GPU jobs
    are exactly the GPU work (one record job per GPU, the experiments, congruence, the example pass), nothing else
    asks for a GPU, and a model's experiments share ONE group job that asks for one GPU, one experiment's memory
    and the sum of their runtimes (they run in series); with device: cpu nothing asks for a GPU and nothing is
    grouped. The README's job counts come from here."""
    cfg = tmp_path / "study.yaml"
    cfg.write_text("gpus: 4\n")
    cpu = tmp_path / "cpu.yaml"
    cpu.write_text("device: cpu\n")
    grouping = _profile_grouping(REPO / "workflow/profiles/slurm/config.yaml")
    assert grouping["resources"] == {"gpu": 1} and grouping["resource_scopes"] == {"gpu": "local"}
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"gpu": {"configfiles": ["config.yaml", str(cfg)], **grouping},
                                "cpu": {"configfiles": ["config.yaml", str(cpu)], **grouping}}))
    r = subprocess.run([sys.executable, "tests/dryrun_api.py", str(REPO), str(spec)], cwd=REPO, env=ENV,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    runs = json.loads(r.stdout.splitlines()[-1])
    jobs = runs["gpu"]
    local = sorted(j["rule"] for j in jobs if j["local"])
    cluster = [j for j in jobs if not j["local"]]
    gpu = sorted(j["rule"] for j in cluster if j["gpu"])
    assert set(local) == {"fetch_model", "fetch_dataset", "pairs", "neuron_classes", "watch", "dataset_figures",
                          "experiment_figures", "experiments_summary", "paper_check", "manifest", "stages_figure"}
    assert gpu == (["congruence", "example_activations"] + ["experiment"] * 4 + ["record"] * 4
                   + ["stages_interventions", "stages_layers"])
    assert sorted(j["rule"] for j in cluster if not j["gpu"]) == ["curves", "max_examples", "pages", "tokenize",
                                                                  "weights_figures"]
    experiments = [j for j in cluster if j["rule"] == "experiment"]
    assert {j["group"] for j in experiments} == {"gpu-gpt2-large#0"}
    assert all(j["group"] is None for j in cluster if j["rule"] != "experiment")
    asks = experiments[0]["group_resources"]
    assert (asks["gpu"], asks["mem_mb"], asks["runtime"]) == (1, 16000, 4 * 30), asks
    submissions = 1 + sum(j["group"] is None for j in cluster)
    allocations = 1 + sum(j["group"] is None and j["gpu"] > 0 for j in cluster)
    print(f"gpus: 4 -> {len(jobs)} jobs: {len(local)} local, {len(cluster)} on SLURM as {submissions} submissions, "
          f"{allocations} of them GPU allocations; the experiments' group job asks for {asks}")
    assert (len(jobs), len(local), submissions, allocations) == (31, 14, 14, 9)
    assert not [j for j in runs["cpu"] if j["gpu"] or j["group"]]
