from pathlib import Path

from anneuron.jobs import setup_logging

from anneuron.experiments.figures import experiment_figures

setup_logging(snakemake)
experiment_figures(Path(snakemake.input.summary).parent, snakemake.output[0], snakemake.wildcards.exp)
