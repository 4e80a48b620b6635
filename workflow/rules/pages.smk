# Neuron pages (anneuron.pages, docs/contracts.md): a targeted pass over the rows that hold max-activating examples
# records every window's activations of its neuron (`example_activations`, one GPU job), then `pages` writes a
# static site, results/{model}/pages/index.html, from the weights, dataset and experiment tables.


# The experiment tables the pages read.
PAGES_EXP_KEYS = ["exp_neurons", "exp_summary", "exp_contrast"]
# gpu=1 when the workflow is planned where the configured device is CUDA, as for congruence (weights.smk). The
# SLURM profile sends a rule to the gpu partition only when it names it under set-resources.
EXAMPLES_GPU = GPU


rule example_activations:
    input:
        examples=K.PATHS["max_examples"],
        tokens=lambda wc: token_shards(tokenizer_id(wc.model)),
        model=model_input,
    output:
        K.PATHS["example_activations"],
    wildcard_constraints:
        dataset=DATASET_RE,
    params:
        model=lambda wc: model_name(wc.model),
        cfg=S.ExampleActivationsConfig.of(config).to_dict(),
    log:
        "logs/example_activations/{model}/{dataset}.log",
    benchmark:
        "benchmarks/example_activations/{model}/{dataset}.tsv"
    priority: CRITICAL_PATH
    retries: 1  # preemption, out of memory (each attempt gets more memory and time); deterministic errors fail once
    threads: 2
    resources:
        gpu=EXAMPLES_GPU,
        mem_mb=scaled(16000),
        runtime=scaled(60 if GPU else 240),
    conda:
        "../../envs/gpu.yaml"
    script:
        "../../scripts/example_activations.py"


rule pages:
    input:
        neurons=K.PATHS["neurons"],
        tokens=K.PATHS["weights_tokens"],
        pairs=K.PATHS["pairs"],
        congruence=K.PATHS["weights_summary"],
        examples=lambda wc: K.path("example_activations", model=wc.model, dataset=DATASET_ID),
        watched=lambda wc: K.path("watched", model=wc.model, dataset=DATASET_ID),
        curves=lambda wc: K.path("curves", model=wc.model, dataset=DATASET_ID),
        predictions=lambda wc: K.path("predictions", model=wc.model, dataset=DATASET_ID),
        experiments=lambda wc: [K.path(k, model=wc.model, exp=e) for e in config["experiments"] for k in PAGES_EXP_KEYS],
        summary=lambda wc: ([K.path("experiments_summary", model=wc.model)] if config["experiments"] else []),
        # each neuron's twins in the other models, when this model is in a universality group
        universality=lambda wc: (
            [K.path(k, model=wc.model) for k in ("universality_neurons", "universality_summary")]
            if wc.model in UNIVERSAL_MODELS
            else []
        ),
    output:
        index=report(
            K.PATHS["pages_index"],
            caption="../report/pages/pages.rst",
            category="5. neuron pages",
            subcategory="{model}",
            labels={"model": "{model}", "page": "neuron pages"},
        ),
        assets=directory(K.PATHS["pages_assets"]),
        data=directory(K.PATHS["pages_data"]),
    params:
        model=lambda wc: wc.model,
        dataset=DATASET_ID,
        experiments=list(config["experiments"]),
        # only for the report's caption, which links to them: the neurons named in watch.neurons
        highlights=lambda wc: [K.neuron_name(layer, n) for layer, n, _ in watch_entries(config, wc.model)],
    log:
        "logs/pages/{model}.log",
    benchmark:
        "benchmarks/pages/{model}.tsv"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=60,
    conda:
        "../../envs/cpu.yaml"
    script:
        "../../scripts/pages.py"


TARGETS.append(
    lambda mid: [
        K.path("example_activations", model=mid, dataset=DATASET_ID),
        K.path("pages_index", model=mid),
    ]
)
