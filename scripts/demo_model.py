from anneuron.jobs import setup_logging

from anneuron.demos.planted import write_planted_model
from anneuron.stage_config import DemoModelConfig

setup_logging(snakemake)
write_planted_model(snakemake.output[0], seed=DemoModelConfig.from_dict(snakemake.params.cfg).seed)
