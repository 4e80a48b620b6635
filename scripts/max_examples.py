from anneuron.jobs import setup_logging

from anneuron.dataset.max_examples import build_max_examples
from anneuron.io import write_parquet
from anneuron.resolve import resolve

setup_logging(snakemake)
p = snakemake.params
tokenizer = resolve(p.model).tokenizer()
table = build_max_examples(list(snakemake.input.topk), list(snakemake.input.tokens), tokenizer, k=p.top_k,
                           window=p.window)
write_parquet(snakemake.output[0], table)
