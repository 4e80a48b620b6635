from anneuron.jobs import setup_logging

from anneuron.demos.emergent_corpus import write_corpus
from anneuron.stage_config import CorpusConfig

setup_logging(snakemake)
cfg = CorpusConfig.from_dict(snakemake.params.cfg)
write_corpus(snakemake.output[0], n_docs=cfg.docs, seed=cfg.seed)
