from anneuron.jobs import setup_logging

from anneuron.dataset.curves import summarize
from anneuron.dataset.watch import read_watched
from anneuron.io import write_parquet
from anneuron.provenance import provenance
from anneuron.resolve import resolve
from anneuron.stage_config import CurvesConfig

setup_logging(snakemake)
p = snakemake.params
cfg = CurvesConfig.from_dict(p.cfg)
tokenizer = resolve(p.model).tokenizer()
watched = read_watched(snakemake.input.watched)
curves, predictions = summarize(list(snakemake.input.tokens), watched, cfg.bin_width, cfg.min_count, tokenizer,
                                readout=cfg.readout, binning=cfg.binning, counts=cfg.counts)
write_parquet(snakemake.output.curves, curves)
write_parquet(snakemake.output.predictions, predictions)
cfg.write(snakemake.output.config, model=p.model, provenance=provenance(p.model))
