# Stages of inference (docs/science.md "Stages of inference", docs/contracts.md): per-layer statistics of the model
# over the first stages.max_tokens positions of the token shards (`stages_layers`), every block deleted and every
# adjacent pair swapped (`stages_interventions`), then the stages figure beside the weights pass's neuron classes;
# with several models, one figure of all of them against relative depth. Every family of anneuron/architecture.py
# (tests/stages/). Changing stages.* reruns only these rules.


rule stages_layers:
    input:
        shards=lambda wc: token_shards(tokenizer_id(wc.model)),
        model=model_input,
    output:
        table=K.PATHS["stages_layers"],
        config=K.PATHS["stages_layers_config"],
    wildcard_constraints:
        dataset=DATASET_RE,
    params:
        model=lambda wc: model_name(wc.model),
        dataset=DATASET,
        cfg=S.StagesLayersConfig.of(config).to_dict(),
    log:
        "logs/stages_layers/{model}/{dataset}.log",
    benchmark:
        "benchmarks/stages_layers/{model}/{dataset}.tsv"
    threads: 2
    resources:
        gpu=GPU,
        mem_mb=scaled(16000),
        runtime=scaled(30 if GPU else 120),
    conda:
        "../../envs/gpu.yaml"
    script:
        "../../scripts/stages_layers.py"


rule stages_interventions:
    input:
        shards=lambda wc: token_shards(tokenizer_id(wc.model)),
        model=model_input,
    output:
        table=K.PATHS["stages_interventions"],
        config=K.PATHS["stages_interventions_config"],
    wildcard_constraints:
        dataset=DATASET_RE,
    params:
        model=lambda wc: model_name(wc.model),
        dataset=DATASET,
        cfg=S.StagesInterventionsConfig.of(config).to_dict(),
    log:
        "logs/stages_interventions/{model}/{dataset}.log",
    benchmark:
        "benchmarks/stages_interventions/{model}/{dataset}.tsv"
    threads: 2
    resources:
        gpu=GPU,
        mem_mb=scaled(16000),
        runtime=scaled(30 if GPU else 120),
    conda:
        "../../envs/gpu.yaml"
    script:
        "../../scripts/stages_interventions.py"


rule stages_figure:
    input:
        layers=K.PATHS["stages_layers"],
        interventions=K.PATHS["stages_interventions"],
        neurons=K.PATHS["neurons"],
    output:
        png=report(
            K.PATHS["figures_stages"],
            caption="../report/stages/stages.rst",
            category="2. dataset pass",
            subcategory="{model}",
            labels={"model": "{model}", "figure": "stages of inference"},
        ),
        svg=K.PATHS["figures_stages_svg"],
    wildcard_constraints:
        dataset=DATASET_RE,
    log:
        "logs/stages_figure/{model}/{dataset}.log",
    benchmark:
        "benchmarks/stages_figure/{model}/{dataset}.tsv"
    localrule: True  # tiny: on the submit host, not a cluster job
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../../envs/cpu.yaml"
    script:
        "../../scripts/stages_figure.py"


rule stages_models_figure:
    input:
        layers=expand(K.PATHS["stages_layers"], model=model_ids(), allow_missing=True),
        interventions=expand(K.PATHS["stages_interventions"], model=model_ids(), allow_missing=True),
        neurons=expand(K.PATHS["neurons"], model=model_ids()),
    output:
        png=report(
            K.PATHS["figures_stages_models"],
            caption="../report/stages/models.rst",
            category="2. dataset pass",
            subcategory="all models",
            labels={"model": "all", "figure": "stages of inference"},
        ),
        svg=K.PATHS["figures_stages_models_svg"],
    wildcard_constraints:
        dataset=DATASET_RE,
    params:
        models=model_ids(),
    log:
        "logs/stages_models_figure/{dataset}.log",
    benchmark:
        "benchmarks/stages_models_figure/{dataset}.tsv"
    localrule: True  # tiny: on the submit host, not a cluster job
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../../envs/cpu.yaml"
    script:
        "../../scripts/stages_models_figure.py"


TARGETS.append(
    lambda mid: [
        K.path(k, model=mid, dataset=DATASET_ID) for k in ("stages_layers", "stages_interventions", "figures_stages")
    ]
    + ([K.path("figures_stages_models", dataset=DATASET_ID)] if len(model_ids()) > 1 and mid == model_ids()[0] else [])
)
