from anneuron.jobs import setup_logging

from anneuron.stage_config import UniversalityFiguresConfig
from anneuron.universality.figures import figures_job

setup_logging(snakemake)
i, p = snakemake.input, snakemake.params
figures_job(snakemake.output[0], i.summary, i.neurons, i.properties, i.classes, p.model, p.others, i.shards,
            UniversalityFiguresConfig.from_dict(p.cfg))
