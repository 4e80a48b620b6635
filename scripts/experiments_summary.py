from _common import setup_logging

from anneuron.experiments import write_summary
from anneuron.plots.experiments import summary_figures

setup_logging(snakemake)
neuron_files = dict(zip(snakemake.params.experiments, snakemake.input))
write_summary(neuron_files, snakemake.output.table)
summary_figures(snakemake.output.table, neuron_files, snakemake.output.svg)
