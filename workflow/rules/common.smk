# Shared names and helpers for every stage: the resolved models, dataset id, output paths (anneuron.contracts,
# docs/contracts.md) and the input functions. The Snakefile has validated the config and resolved every model.
from pathlib import Path

from anneuron import contracts as K
from anneuron import fetch as F
from anneuron import resolve as R
from anneuron import stage_config as S
from anneuron.universality import plan as UP

# Stage files register the final outputs of one model here; `all` requests them for every model.
TARGETS = []
# The priority of the rules on a run's longest chain (model and corpus → tokens → weights pass → watch list → dataset
# pass → example windows → pages): the scheduler starts them before the experiments and figures, which then fill
# the free cores beside them instead of holding the chain up.
CRITICAL_PATH = 1

# With `fetch: true` (the default) a hub model or dataset is downloaded once by a local rule (fetch.smk) into a
# folder under resources/hub/, and every other job is only ever given that folder: compute nodes need no network.
if config["fetch"]:
    SPECS = {mid: s if s.local else s.fetched_into(F.model_folder(mid)) for mid, s in SPECS.items()}
DATASET_ID = C.dataset_id(config["dataset"])
HUB_DATASET = config["fetch"] and not C.is_local_dataset(config["dataset"])
DATASET = F.dataset_folder(DATASET_ID) if HUB_DATASET else config["dataset"]
N_SHARDS = S.n_shards(config)  # `data.shards: auto` = one record shard per GPU the study says it has (`gpus`)
# GPU rules ask the scheduler for a GPU only when their device can be one (`device: auto` or `cuda`)
GPU = int(config["device"] != "cpu")
# On a cluster, a model's prompt experiments (seconds of GPU work each, after loading the model) share group jobs:
# one allocation runs several one after another (the slurm profile sets how many, `group-components`, and one GPU
# per group, `resources: gpu=1` scoped `local`). Only when they use a GPU: on CPUs nothing would keep the group's
# jobs in series when its resources are computed. Ignored by local runs.
EXPERIMENT_GROUP = "gpu-{model}" if GPU else None


def scaled(base):
    """A resource (MB, minutes) that grows with each attempt: a retry after an out-of-memory or timeout gets more."""
    return lambda wc, attempt: base * attempt


TOKENIZERS = C.by_tokenizer(SPECS)


def model_ids():
    return list(SPECS)


def model_name(mid):
    """The hub name or folder behind a model id."""
    return SPECS[mid].name


def model_folder(mid):
    """The model folder as an input file when it is local (so a rule that builds it runs first)."""
    spec = SPECS[mid]
    return [str(Path(spec.name))] if spec.local else []


def model_input(wildcards):
    return model_folder(wildcards.model)


def tokenizer_id(mid):
    return SPECS[mid].tokenizer_id


def seq_len(tid):
    return C.seq_len_for(config, TOKENIZERS[tid])


def token_shards(tid):
    return expand(K.PATHS["token_shard"], dataset=DATASET_ID, tokenizer=tid, i=range(N_SHARDS))


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
    """Every experiment when the dataset pass watches experiment standouts (watch.standouts), else none: then the
    dataset pass neither waits for the experiments nor reruns when a prompt changes."""
    return list(config["experiments"]) if config["watch"]["standouts"] else []


def standout_files(key):
    """Input function: each experiment's `key` output (exp_neurons, exp_summary) when watching standouts."""
    return lambda wc: [K.path(key, model=wc.model, exp=e) for e in standout_experiments()]


# Universality (universality.smk): the groups of models correlated with each other, every pair's tiles (decided
# here, from the resolved shapes and universality.tile_mb) and the models that get universality outputs.
UNIVERSALITY_GROUPS = C.universality_groups(config, SPECS)
UNIVERSALITY_TILES = UP.plan(
    UNIVERSALITY_GROUPS,
    {mid: s.n_neurons for mid, s in SPECS.items()},
    config["universality"]["tile_mb"],
)
UNIVERSAL_MODELS = sorted({m for g in UNIVERSALITY_GROUPS for m in g})


def universality_tile(wc):
    """The plan's tile of these wildcards."""
    return next(t for t in UNIVERSALITY_TILES[(wc.model, wc.other)] if (t.i, t.j) == (int(wc.i), int(wc.j)))


def tile_files(key, model):
    """`key` (universality_tile or universality_tile_pairs) of every tile of `model`, in merge order."""
    return [
        K.path(key, model=t.a, other=t.b, i=t.i, j=t.j)
        for side, tiles in UP.tiles_of(UNIVERSALITY_TILES, model).values()
        for t in tiles
    ]
