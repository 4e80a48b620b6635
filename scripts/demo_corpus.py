from anneuron.demo import write_demo_corpus

from _common import setup_logging

setup_logging(snakemake)
write_demo_corpus(snakemake.output[0], n_docs=snakemake.params.docs, seed=snakemake.params.seed)
