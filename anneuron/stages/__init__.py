"""Stages of inference (Lad, Gurnee & Tegmark 2024; docs/science.md "Stages of inference"): where in depth a model's
next-token prediction forms, sharpens and is suppressed, measured over the corpus.

Reads the dataset pass's token shards (`resources/tokens/...`, the first `stages.max_tokens` positions) and the
weights pass's neuron classes; writes, per model and dataset, `stages/layers.parquet` (the logit lens at every layer
boundary in both conventions, attention and MLP output norms, attention to the previous five tokens),
`stages/interventions.parquet` (every block deleted, every adjacent pair swapped: KL from the intact model, top-1
agreement) and the stages figure; with several models, one figure of every model against relative depth.
Modules: `stream` (rows of the shards, batches, row-clustered running means), `layer_stats`, `interventions`,
`figures`.
"""
