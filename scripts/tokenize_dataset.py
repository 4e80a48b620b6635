from anneuron.jobs import setup_logging

from anneuron.data import tokenize_dataset
from anneuron.resolve import resolve
from anneuron.stage_config import DataConfig
from anneuron.tokenizer import gpt2_tokenizer

setup_logging(snakemake)
cfg = DataConfig.from_dict(snakemake.params.cfg)
tokenize_dataset(
    snakemake.params.dataset,
    gpt2_tokenizer() if snakemake.wildcards.tokenizer == "gpt2" else resolve(snakemake.params.model).tokenizer(),
    list(snakemake.output.shards),
    seq_len=cfg.seq_len,
    chunking=cfg.chunking,
    text_column=cfg.text_column,
    split=cfg.split,
    max_docs=cfg.max_docs,
    max_tokens=cfg.max_tokens,
    manifest=snakemake.output.manifest,
)
