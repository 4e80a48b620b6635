from anneuron.jobs import setup_logging

from anneuron.demos.emergent import build_emergent_model
from anneuron.stage_config import EmergentModelConfig

# demo-emergent's recipe from another training seed (the seed is in the config object): one script per rule
setup_logging(snakemake)
cfg = EmergentModelConfig.from_dict(snakemake.params.cfg)
build_emergent_model(snakemake.input.train, snakemake.output[0], cfg.train, probe_seed=cfg.probe_seed)
