"""Glue shared by the thin rule scripts: send logging and stderr to the rule's log file; the watch list."""

import logging
import sys


def setup_logging(snakemake) -> None:
    """Route this job's logging, warnings and tracebacks to its `log:` file (progress bars too)."""
    if snakemake.log:
        fh = open(snakemake.log[0], "w", buffering=1)
        sys.stderr = fh
        logging.basicConfig(stream=fh, level=logging.INFO, format="%(asctime)s %(name)s %(message)s", force=True)


def watched_neurons(snakemake, tokenizer=None):
    """The watch list of a dataset-pass rule (record and curves must agree on it column for column)."""
    from anneuron.experiments import stable_experiments
    from anneuron.watch import standout_entries, watch_list

    p, inp = snakemake.params, snakemake.input
    stable = stable_experiments(dict(zip(p.experiments, inp.standout_checks)))
    files = {e: f for e, f in zip(p.experiments, inp.standouts) if e in stable}
    return watch_list(inp.pairs, p.watch, p.top_pairs, tokenizer=tokenizer,
                      standouts=standout_entries(files, p.experiments), n_standouts=p.standouts)
