"""What the demo rules build, known before they run: the shapes, context and tokenizer of the demo models and the
corpus files, so that the config check can resolve a demo model that does not exist yet (with no torch import)."""

from __future__ import annotations

from anneuron.resolve import Produced

PLANTED_MODEL = "resources/models/demo-planted"
EMERGENT_MODEL = "resources/models/demo-emergent"
PLANTED = Produced(n_layers=4, d_model=256, d_mlp=1024, n_ctx=256)
N_HEAD = 4  # the planted model's attention heads
EMERGENT_N_CTX = 128
DATA_FILES = ("resources/data/demo-planted.parquet", "resources/data/demo-emergent-train.parquet",
              "resources/data/demo-emergent-heldout.parquet")


def produced_models(config: dict) -> dict[str, Produced]:
    """Model folder -> Produced, for the folders the demo rules build (demo-emergent's shape is in the config)."""
    e = config["demo"]["emergent"]
    return {PLANTED_MODEL: PLANTED,
            EMERGENT_MODEL: Produced(n_layers=e["n_layer"], d_model=e["d_model"], d_mlp=e["d_mlp"],
                                     n_ctx=EMERGENT_N_CTX)}
