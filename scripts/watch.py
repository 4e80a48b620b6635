from anneuron.jobs import setup_logging

from anneuron.dataset.watch import resolve_tokens, watch_list, watched_table
from anneuron.experiments.standouts import experiment_answers, stable_experiments, standout_entries
from anneuron.io import write_parquet
from anneuron.provenance import provenance
from anneuron.resolve import resolve
from anneuron.stage_config import WatchConfig

setup_logging(snakemake)
p, inp = snakemake.params, snakemake.input
cfg = WatchConfig.from_dict(p.cfg)
tokenizer = resolve(p.model).tokenizer()
summaries = dict(zip(p.experiments, inp.standout_checks))
stable = stable_experiments(summaries)
answers = experiment_answers(summaries)  # the token each standout's curve uses
files = {e: f for e, f in zip(p.experiments, inp.standouts) if e in stable}
watched = watch_list(inp.pairs, [tuple(e) for e in cfg.neurons], cfg.top_pairs, tokenizer=tokenizer,
                     standouts=standout_entries(files, answers), n_standouts=cfg.standouts)
watched = resolve_tokens(watched, inp.stats, tokenizer)
write_parquet(snakemake.output.table, watched_table(watched))
cfg.write(snakemake.output.config, model=p.model, experiments=answers, provenance=provenance(p.model))
