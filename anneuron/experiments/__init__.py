"""Prompt experiments: on clean/corrupted prompt pairs, which layers, positions and single neurons carry the logit
difference (logit lens, activation and attribution patching, standouts).

Reads the model and the `experiments:` config; writes each experiment's tables, `summary.json`, figures and the
cross-experiment summary (workflow/rules/experiments.smk)."""
