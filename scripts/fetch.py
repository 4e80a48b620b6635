from anneuron.jobs import setup_logging

from anneuron.fetch import fetch
from anneuron.stage_config import FetchConfig

setup_logging(snakemake)
cfg = FetchConfig.from_dict(snakemake.params.cfg)
fetch(cfg.repo, cfg.repo_type, snakemake.output[0], revision=cfg.revision, patterns=cfg.patterns)
