"""anneuron: find the MLP neurons of GPT-2 that predict specific tokens, and show the evidence.

The library holds the science (no Snakemake inside); `workflow/` orchestrates it and `scripts/` glue the two.
"""

__version__ = "0.1.0"
