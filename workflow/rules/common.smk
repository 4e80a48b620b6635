# Shared names and helpers for every stage: model / dataset / tokenizer ids and paths (docs/contracts.md).
from pathlib import Path

from anneuron import config as C
from anneuron import models as M

# Folders and files that rules of this workflow build, so they may be named in a config before they exist.
PRODUCED = {
    "resources/models/demo-planted": C.Produced(tokenizer="gpt2", n_ctx=256),
    "resources/data/demo-planted.parquet": C.Produced(),
    "resources/models/demo-emergent": C.Produced(tokenizer="gpt2", n_ctx=128),
    "resources/data/demo-emergent-train.parquet": C.Produced(),
    "resources/data/demo-emergent-heldout.parquet": C.Produced(),
}

# Stage files register the final outputs of one model here; `all` requests them for every model.
TARGETS = []


def model_ids():
    return [M.model_id(m) for m in config["models"]]


def model_name(mid):
    """The hub name or folder behind a model id."""
    return {M.model_id(m): m for m in config["models"]}[mid]


def model_input(wildcards):
    """The model folder as an input file when it is local (so a rule that builds it runs first)."""
    name = model_name(wildcards.model)
    return [str(Path(name))] if M.is_local(name) else []


DATASET = config["dataset"]
DATASET_ID = C.dataset_id(DATASET)
N_SHARDS = config["data"]["shards"]


def tokenizer_id(mid):
    return C.tokenizer_id(model_name(mid), PRODUCED)


def models_of_tokenizer(tid):
    return [m for m in config["models"] if C.tokenizer_id(m, PRODUCED) == tid]


def token_shards(tid):
    return expand(
        "resources/tokens/{dataset}/{tokenizer}/shard-{i}.parquet",
        dataset=DATASET_ID,
        tokenizer=tid,
        i=range(N_SHARDS),
    )


def dataset_input():
    """The dataset file as an input when it is local."""
    return [DATASET] if C.is_local_dataset(DATASET) else []


def all_targets():
    return [t for mid in model_ids() for target in TARGETS for t in target(mid)]


wildcard_constraints:
    model=r"[^/]+",
    dataset=r"[^/]+",
    tokenizer=r"[^/]+",
    i=r"\d+",


def standout_experiments():
    """Answer and wrong token per experiment when the dataset pass watches experiment standouts (watch.standouts),
    else nothing: then the dataset pass neither waits for the experiments nor reruns when a prompt changes."""
    if not config["watch"]["standouts"]:
        return {}
    return {n: {"answer": e["answer"], "wrong": e["wrong"]} for n, e in config["experiments"].items()}


def standout_files(table):
    """Input function: each experiment's `table` (neurons.parquet, summary.json) when watching standouts."""
    return lambda wc: [f"results/{wc.model}/experiments/{e}/{table}" for e in standout_experiments()]
