from anneuron.jobs import setup_logging

from anneuron.demos.emergent import build_emergent_model
from anneuron.demos.training import TrainConfig

setup_logging(snakemake)
p = snakemake.params
build_emergent_model(snakemake.input.train, snakemake.output[0], TrainConfig(seed=p.seed, n_ctx=p.n_ctx, **p.recipe),
                     probe_seed=p.probe_seed)
