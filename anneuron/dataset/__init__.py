"""The dataset pass: the corpus streamed through the model, recording what the watched neurons do and predict.

Reads token shards, the model and `watched.parquet`; writes the per-shard token and top-k tables, `max_examples`,
the proportion curves and predicted/occurred counts, and their figures (workflow/rules/dataset.smk)."""
