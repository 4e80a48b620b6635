
from anneuron.jobs import setup_logging

from anneuron.experiments.figures import summary_figures
from anneuron.experiments.standouts import overview_table, stable_experiments, write_summary
from anneuron.io import REBUILD, read_json, write_parquet

setup_logging(snakemake)
exps = snakemake.params.experiments
neuron_files = dict(zip(exps, snakemake.input.neurons))
summary_files = dict(zip(exps, snakemake.input.summaries))
stable = stable_experiments(summary_files)
write_summary({e: neuron_files[e] for e in stable}, snakemake.output.table)
write_parquet(snakemake.output.overview, overview_table(summary_files, stable))
rules = {read_json(f, REBUILD).get("standout_rule") for f in summary_files.values()} - {None}
summary_figures(snakemake.output.table, neuron_files, snakemake.output.svg, not_counted=set(exps) - set(stable),
                rule="; ".join(sorted(rules)) or None)
