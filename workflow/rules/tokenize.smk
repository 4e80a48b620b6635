# Dataset -> token shards, once per (dataset, tokenizer); every model with that tokenizer shares them.


rule tokenize:
    input:
        dataset_input(),
    output:
        shards=expand("resources/tokens/{{dataset}}/{{tokenizer}}/shard-{i}.parquet", i=range(N_SHARDS)),
        manifest="resources/tokens/{dataset}/{tokenizer}/manifest.json",
    params:
        dataset=lambda wc, input: input[0] if len(input) else DATASET,  # the local file, else the hub name
        model=lambda wc: models_of_tokenizer(wc.tokenizer)[0],
        seq_len=lambda wc: C.seq_len_for(config, models_of_tokenizer(wc.tokenizer), PRODUCED),
        data=config["data"],
    log:
        "logs/tokenize/{dataset}/{tokenizer}.log",
    benchmark:
        "benchmarks/tokenize/{dataset}/{tokenizer}.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=120,
    conda:
        "../../envs/cpu.yaml"
    script:
        "../../scripts/tokenize.py"


TARGETS.append(
    lambda mid: [
        f"resources/tokens/{DATASET_ID}/{tokenizer_id(mid)}/manifest.json",
    ]
)
