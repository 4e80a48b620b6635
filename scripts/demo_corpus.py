from anneuron.jobs import setup_logging

from anneuron.demos.planted import write_demo_corpus

setup_logging(snakemake)
write_demo_corpus(snakemake.output[0], n_docs=snakemake.params.docs, seed=snakemake.params.seed)
