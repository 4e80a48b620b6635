# Dataset -> token shards, once per (dataset, tokenizer); every model with that tokenizer shares them.


rule tokenize:
    input:
        dataset=dataset_input(),
        # a folder's own tokenizer (GPT-2's offline one needs no folder, so the demo corpus need not wait for its model)
        model=lambda wc: [] if wc.tokenizer == "gpt2" else model_folder(TOKENIZERS[wc.tokenizer][0].id),
    output:
        shards=expand(K.PATHS["token_shard"], i=range(N_SHARDS), allow_missing=True),
        manifest=K.PATHS["token_manifest"],
    params:
        dataset=lambda wc, input: input.dataset[0] if len(input.dataset) else DATASET,  # local file, else hub name
        model=lambda wc: TOKENIZERS[wc.tokenizer][0].name,
        cfg=lambda wc: S.DataConfig.of(config, seq_len(wc.tokenizer)).to_dict(),
    log:
        "logs/tokenize/{dataset}/{tokenizer}.log",
    benchmark:
        "benchmarks/tokenize/{dataset}/{tokenizer}.tsv"
    priority: CRITICAL_PATH
    threads: 1
    resources:
        mem_mb=4000,
        runtime=120,
    conda:
        "../../envs/cpu.yaml"
    script:
        "../../scripts/tokenize_dataset.py"


TARGETS.append(
    lambda mid: [
        K.path("token_manifest", dataset=DATASET_ID, tokenizer=tokenizer_id(mid)),
    ]
)
