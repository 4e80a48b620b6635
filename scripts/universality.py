from anneuron.jobs import setup_logging

from anneuron.stage_config import UniversalityConfig
from anneuron.universality.merge import merge_model

setup_logging(snakemake)
p = snakemake.params
cfg = UniversalityConfig.from_dict(p.cfg)
o = snakemake.output
merge_model(p.d_mlp, p.n_neurons, p.others, p.tiles, cfg.threshold, cfg.top_pairs, o.neurons, o.summary, o.pairs)
cfg.write(o.config, model=snakemake.wildcards.model, others=sorted(p.others))
