from _common import setup_logging

from anneuron.experiments import stable_experiments, write_summary
from anneuron.plots.experiments import summary_figures

setup_logging(snakemake)
exps = snakemake.params.experiments
neuron_files = dict(zip(exps, snakemake.input.neurons))
stable = stable_experiments(dict(zip(exps, snakemake.input.summaries)))
write_summary({e: neuron_files[e] for e in stable}, snakemake.output.table)
summary_figures(snakemake.output.table, neuron_files, snakemake.output.svg, not_counted=set(exps) - set(stable))
