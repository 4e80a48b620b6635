# Prompt experiments (docs/science.md, docs/contracts.md, docs/paper.md): one GPU job per (model, experiment) — logit lens, layer × position
# patching, attribution and exact neuron patching, joint patching — then what stands out across experiments.
import re

EXPERIMENTS = list(config["experiments"])
EXP_TABLE_PATHS = {t: K.PATHS[f"exp_{t}"] for t in K.EXPERIMENT_TABLES}
EXP_NAMES = "|".join(re.escape(e) for e in EXPERIMENTS) or "(?!)"  # only configured names are experiments


rule experiment:
    input:
        model_input,
    output:
        **EXP_TABLE_PATHS,
        summary=K.PATHS["exp_summary"],
        config=K.PATHS["exp_config"],
    wildcard_constraints:
        exp=EXP_NAMES,
    params:
        model=lambda wc: model_name(wc.model),
        cfg=lambda wc: S.experiment_config(config, wc.exp).to_dict(),
    log:
        "logs/experiment/{model}/{exp}.log",
    benchmark:
        "benchmarks/experiment/{model}/{exp}.tsv"
    retries: 1
    group:
        EXPERIMENT_GROUP
    threads: 1  # GPU-bound on a GPU; on a CPU its many small matrix products run no faster on more threads
    resources:
        gpu=GPU,
        mem_mb=scaled(16000),
        runtime=scaled(30),
    conda:
        "../../envs/gpu.yaml"
    script:
        "../../scripts/experiment.py"


rule experiment_figures:
    input:
        summary=K.PATHS["exp_summary"],
        tables=list(EXP_TABLE_PATHS.values()),
    output:
        report(
            directory(K.PATHS["figures_experiment"]),
            patterns=["{name}.png"],
            caption="../report/experiments/experiment.rst",
            category="3. experiments",
            subcategory="{model}",
            labels={"model": "{model}", "experiment": "{exp}", "figure": "{name}"},
        ),
    wildcard_constraints:
        exp=EXP_NAMES,
    log:
        "logs/experiment_figures/{model}/{exp}.log",
    benchmark:
        "benchmarks/experiment_figures/{model}/{exp}.tsv"
    localrule: True  # tiny: on the submit host, not a cluster job
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../../envs/cpu.yaml"
    script:
        "../../scripts/experiment_figures.py"


rule experiments_summary:
    input:
        neurons=expand(K.PATHS["exp_neurons"], exp=EXPERIMENTS, allow_missing=True),
        summaries=expand(K.PATHS["exp_summary"], exp=EXPERIMENTS, allow_missing=True),
    output:
        table=K.PATHS["experiments_summary"],
        overview=K.PATHS["experiments_overview"],
        figure=report(
            K.PATHS["figures_experiments_summary"],
            caption="../report/experiments/summary.rst",
            category="3. experiments",
            subcategory="{model}",
            labels={"model": "{model}", "experiment": "all", "figure": "summary"},
        ),
        svg=K.PATHS["figures_experiments_summary_svg"],
    params:
        experiments=EXPERIMENTS,
    log:
        "logs/experiments_summary/{model}.log",
    benchmark:
        "benchmarks/experiments_summary/{model}.tsv"
    localrule: True  # tiny: on the submit host, not a cluster job
    threads: 1
    resources:
        mem_mb=4000,
        runtime=10,
    conda:
        "../../envs/cpu.yaml"
    script:
        "../../scripts/experiments_summary.py"


TARGETS.append(
    lambda mid: [
        K.path(k, model=mid) for k in ("experiments_summary", "experiments_overview", "figures_experiments_summary")
    ]
    + [K.path("figures_experiment", model=mid, exp=exp) for exp in EXPERIMENTS]
)
