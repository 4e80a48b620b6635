from anneuron.jobs import setup_logging

from anneuron.demos.emergent_corpus import write_corpus

setup_logging(snakemake)
write_corpus(snakemake.output[0], n_docs=snakemake.params.docs, seed=snakemake.params.seed)
