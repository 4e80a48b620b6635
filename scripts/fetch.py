from anneuron.jobs import setup_logging

from anneuron.fetch import fetch

setup_logging(snakemake)
p = snakemake.params
fetch(p.repo, p.get("repo_type", "model"), snakemake.output[0], revision=p.revision, patterns=p.patterns)
