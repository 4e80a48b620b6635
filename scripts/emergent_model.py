from anneuron.jobs import setup_logging

from anneuron.demos.emergent import build_emergent_model
from anneuron.demos.training import TrainConfig
from anneuron.stage_config import EmergentModelConfig

setup_logging(snakemake)
cfg = EmergentModelConfig.from_dict(snakemake.params.cfg)
build_emergent_model(snakemake.input.train, snakemake.output[0],
                     TrainConfig(n_ctx=snakemake.params.n_ctx, **cfg.recipe()), probe_seed=cfg.probe_seed)
