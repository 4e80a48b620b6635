from _common import setup_logging

from anneuron.data import tokenize_dataset
from anneuron.models import tokenizer_for
from anneuron.tokenizer import gpt2_tokenizer

setup_logging(snakemake)
data = snakemake.params.data
tokenizer = gpt2_tokenizer() if snakemake.wildcards.tokenizer == "gpt2" else tokenizer_for(snakemake.params.model)
tokenize_dataset(
    snakemake.params.dataset,
    tokenizer,
    list(snakemake.output.shards),
    seq_len=snakemake.params.seq_len,
    chunking=data["chunking"],
    text_column=data["text_column"],
    split=data["split"],
    max_docs=data["max_docs"],
    max_tokens=data["max_tokens"],
    manifest=snakemake.output.manifest,
)
