# Fetch once, offline after (anneuron.fetch): hub models and the hub dataset are downloaded by local rules, on the
# submit host (the only place that needs the network), at the revisions in `revisions:` (default branch otherwise,
# resolved to a commit and recorded in fetched.json). Every compute job reads the folders they write.


localrules:
    fetch_model,
    fetch_dataset,


rule fetch_model:
    output:
        directory(K.PATHS["hub_model"]),
    params:
        cfg=lambda wc: S.FetchConfig.of_model(SPECS[wc.model]).to_dict(),
    log:
        "logs/fetch_model/{model}.log",
    benchmark:
        "benchmarks/fetch_model/{model}.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=120,
    conda:
        "../../envs/cpu.yaml"
    script:
        "../../scripts/fetch.py"


rule fetch_dataset:
    output:
        directory(K.PATHS["hub_dataset"]),
    params:
        cfg=S.FetchConfig.of_dataset(config).to_dict(),
    log:
        "logs/fetch_dataset/{dataset}.log",
    benchmark:
        "benchmarks/fetch_dataset/{dataset}.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=120,
    conda:
        "../../envs/cpu.yaml"
    script:
        "../../scripts/fetch.py"
