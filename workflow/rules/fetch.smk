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
        repo=lambda wc: SPECS[wc.model].hub,
        revision=lambda wc: SPECS[wc.model].revision,
        patterns=F.MODEL_PATTERNS,
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
        repo=config["dataset"],
        revision=lambda wc: config["revisions"].get(wc.dataset),
        patterns=F.dataset_patterns(config["data"]["config_name"], config["data"]["data_files"]),
        repo_type="dataset",
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
