# Universality (anneuron.universality, docs/science.md "Universality"): for every pair of models that share a
# tokenizer (universality.models), the Pearson correlation of every neuron with every neuron of the other model over
# the same tokens, tiled into neuron blocks sized by universality.tile_mb (one job per tile, one GPU each on a
# cluster); per model the tiles merge into neurons/summary/pairs, its neurons' properties, and the figures. The
# plan (UNIVERSALITY_TILES) and its helpers are in common.smk.


rule universality_tile:
    input:
        shards=lambda wc: token_shards(tokenizer_id(wc.model)),
        model=model_input,
        other=lambda wc: model_folder(wc.other),
    output:
        neurons=K.PATHS["universality_tile"],
        pairs=K.PATHS["universality_tile_pairs"],
    wildcard_constraints:
        other=r"[^/]+",
        j=r"\d+",
    params:
        models=lambda wc: [model_name(wc.model), model_name(wc.other)],
        a_block=lambda wc: list(universality_tile(wc).a_block),
        b_block=lambda wc: list(universality_tile(wc).b_block),
        cfg=S.UniversalityTileConfig.of(config).to_dict(),
    log:
        "logs/universality_tile/{model}/{other}/tile-{i}-{j}.log",
    benchmark:
        "benchmarks/universality_tile/{model}/{other}/tile-{i}-{j}.tsv"
    retries: 1  # preemption, out of memory (each attempt gets more memory and time)
    threads: 2
    resources:
        gpu=GPU,
        mem_mb=scaled(int(config["universality"]["tile_mb"]) + 8000),
        runtime=scaled(120 if GPU else 480),
    conda:
        "../../envs/gpu.yaml"
    script:
        "../../scripts/universality_tile.py"


rule universality:
    input:
        tiles=lambda wc: tile_files("universality_tile", wc.model),
        pairs=lambda wc: tile_files("universality_tile_pairs", wc.model),
    output:
        neurons=K.PATHS["universality_neurons"],
        summary=K.PATHS["universality_summary"],
        pairs=K.PATHS["universality_pairs"],
        config=K.PATHS["universality_config"],
    params:
        others=lambda wc: {o: SPECS[o].d_mlp for o in UP.partners(UNIVERSALITY_TILES, wc.model)},
        d_mlp=lambda wc: SPECS[wc.model].d_mlp,
        n_neurons=lambda wc: SPECS[wc.model].n_neurons,
        tiles=lambda wc: {
            o: [side, [[t.a, t.b, t.i, t.j] for t in tiles]]
            for o, (side, tiles) in UP.tiles_of(UNIVERSALITY_TILES, wc.model).items()
        },
        cfg=S.UniversalityConfig.of(config).to_dict(),
    log:
        "logs/universality/{model}.log",
    benchmark:
        "benchmarks/universality/{model}.tsv"
    localrule: True
    threads: 1
    resources:
        mem_mb=4000,
        runtime=20,
    conda:
        "../../envs/cpu.yaml"
    script:
        "../../scripts/universality.py"


rule universality_properties:
    input:
        shards=lambda wc: token_shards(tokenizer_id(wc.model)),
        model=model_input,
    output:
        K.PATHS["universality_properties"],
    params:
        model=lambda wc: model_name(wc.model),
        cfg=S.UniversalityPropertiesConfig.of(config).to_dict(),
    log:
        "logs/universality_properties/{model}.log",
    benchmark:
        "benchmarks/universality_properties/{model}.tsv"
    retries: 1
    threads: 2
    resources:
        gpu=GPU,
        mem_mb=scaled(8000),
        runtime=scaled(60 if GPU else 240),
    conda:
        "../../envs/gpu.yaml"
    script:
        "../../scripts/universality_properties.py"


rule universality_figures:
    input:
        summary=K.PATHS["universality_summary"],
        neurons=K.PATHS["universality_neurons"],
        properties=K.PATHS["universality_properties"],
        classes=K.PATHS["neurons"],
        shards=lambda wc: token_shards(tokenizer_id(wc.model)),
        models=lambda wc: model_folder(wc.model)
        + [f for o in UP.partners(UNIVERSALITY_TILES, wc.model) for f in model_folder(o)],
    output:
        report(
            directory(K.PATHS["figures_universality"]),
            patterns=["{name}.png"],
            caption="../report/universality/figures.rst",
            category="6. universality",
            subcategory="{model}",
            labels={"model": "{model}", "figure": "{name}"},
        ),
    params:
        model=lambda wc: model_name(wc.model),
        others={o: model_name(o) for o in SPECS},
        cfg=S.UniversalityFiguresConfig.of(config).to_dict(),
    log:
        "logs/universality_figures/{model}.log",
    benchmark:
        "benchmarks/universality_figures/{model}.tsv"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=30,
    conda:
        "../../envs/cpu.yaml"
    script:
        "../../scripts/universality_figures.py"


TARGETS.append(
    lambda mid: (
        [
            K.path(key, model=mid)
            for key in ("universality_summary", "universality_pairs", "universality_properties", "figures_universality")
        ]
        if mid in UNIVERSAL_MODELS
        else []
    )
)
