from anneuron.jobs import setup_logging

from anneuron.dataset.max_examples import build_max_examples
from anneuron.io import write_parquet
from anneuron.resolve import resolve
from anneuron.stage_config import MaxExamplesConfig

setup_logging(snakemake)
p = snakemake.params
cfg = MaxExamplesConfig.from_dict(p.cfg)
tokenizer = resolve(p.model).tokenizer()
table = build_max_examples(list(snakemake.input.topk), list(snakemake.input.tokens), tokenizer, k=cfg.top_k_examples,
                           window=cfg.window)
write_parquet(snakemake.output[0], table)
