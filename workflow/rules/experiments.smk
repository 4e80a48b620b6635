# Prompt experiments (docs/science.md, docs/contracts.md, docs/paper.md): one GPU job per (model, experiment) — logit lens, layer × position
# patching, attribution and exact neuron patching, joint patching — then what stands out across experiments.
import re

EXPERIMENTS = list(config["experiments"])
EXPERIMENT_TABLES = ("predictions", "logit_lens", "layers", "neurons", "joint")
EXP_NAMES = "|".join(re.escape(e) for e in EXPERIMENTS) or "(?!)"  # only configured names are experiments


rule experiment:
    input:
        model_input,
    output:
        **{t: f"results/{{model}}/experiments/{{exp}}/{t}.parquet" for t in EXPERIMENT_TABLES},
        summary="results/{model}/experiments/{exp}/summary.json",
    wildcard_constraints:
        exp=EXP_NAMES,
    params:
        model=lambda wc: model_name(wc.model),
        device=config["device"],
        dtype=config["dtype"],
        experiment=lambda wc: config["experiments"][wc.exp],
        patching=config["patching"],
    log:
        "logs/experiment/{model}/{exp}.log",
    benchmark:
        "benchmarks/experiment/{model}/{exp}.tsv"
    threads: 1  # GPU-bound on a GPU; on a CPU its many small matrix products run no faster on more threads
    resources:
        gpu=1,
        mem_mb=16000,
        runtime=60,
    conda:
        "../../envs/gpu.yaml"
    script:
        "../../scripts/experiment.py"


rule experiment_figures:
    input:
        summary="results/{model}/experiments/{exp}/summary.json",
        tables=expand("results/{{model}}/experiments/{{exp}}/{t}.parquet", t=EXPERIMENT_TABLES),
    output:
        report(
            directory("results/{model}/figures/experiments/{exp}"),
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
        neurons=expand("results/{{model}}/experiments/{exp}/neurons.parquet", exp=EXPERIMENTS),
        summaries=expand("results/{{model}}/experiments/{exp}/summary.json", exp=EXPERIMENTS),
    output:
        table="results/{model}/experiments/summary.parquet",
        figure=report(
            "results/{model}/figures/experiments/summary.png",
            caption="../report/experiments/summary.rst",
            category="3. experiments",
            subcategory="{model}",
            labels={"model": "{model}", "experiment": "all", "figure": "summary"},
        ),
        svg="results/{model}/figures/experiments/summary.svg",
    params:
        experiments=EXPERIMENTS,
    log:
        "logs/experiments_summary/{model}.log",
    benchmark:
        "benchmarks/experiments_summary/{model}.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=10,
    conda:
        "../../envs/cpu.yaml"
    script:
        "../../scripts/experiments_summary.py"


TARGETS.append(
    lambda mid: [f"results/{mid}/experiments/summary.parquet", f"results/{mid}/figures/experiments/summary.png"]
    + [f"results/{mid}/figures/experiments/{exp}" for exp in EXPERIMENTS]
)
