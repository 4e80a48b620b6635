"""The weights pass: which tokens each MLP neuron writes towards, from the weights alone (no data).

Reads a model folder (or hub snapshot); writes `tokens.parquet`, `neuron_stats.parquet`, `pairs.parquet`,
`neurons.parquet` and the weights figures (workflow/rules/weights.smk)."""
