"""Universality (Gurnee et al. 2024): is a neuron of one model the same neuron in another? The Pearson correlation
of every neuron's activations with every neuron of every other model sharing its tokenizer, over the same token rows,
against a rotated baseline; then what the universal neurons are like.

Reads the dataset pass's token shards, the model folders and the weights pass's neuron table; writes, per model,
`results/{model}/universality/` (the tiles of each pair under the pair's first model, `neurons.parquet`,
`summary.parquet`, `pairs.parquet`, `properties.parquet`) and `figures/universality/`
(workflow/rules/universality.smk). Importing the package imports no torch: `plan` runs while the Snakefile parses.
"""
