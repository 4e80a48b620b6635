from anneuron.jobs import setup_logging

from anneuron.demos.planted import write_demo_corpus
from anneuron.stage_config import CorpusConfig

setup_logging(snakemake)
cfg = CorpusConfig.from_dict(snakemake.params.cfg)
write_demo_corpus(snakemake.output[0], n_docs=cfg.docs, seed=cfg.seed)
