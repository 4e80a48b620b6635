from _common import setup_logging, watched_neurons

from anneuron.curves import summarize
from anneuron.io import write_parquet
from anneuron.models import tokenizer_for
from anneuron.watch import resolve_tokens

setup_logging(snakemake)
p = snakemake.params
tokenizer = tokenizer_for(p.model)
watched = watched_neurons(snakemake, tokenizer)
watched = resolve_tokens(watched, snakemake.input.neurons, tokenizer)
curves, predictions = summarize(list(snakemake.input.tokens), watched, p.bin_width, p.min_count, tokenizer)
write_parquet(snakemake.output.curves, curves)
write_parquet(snakemake.output.predictions, predictions)
