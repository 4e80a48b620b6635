import sys
from pathlib import Path

from anneuron.jobs import setup_logging

from anneuron.demos.real import FetchError, Package, fetch

setup_logging(snakemake)
out = Path(snakemake.output[0])
try:
    got = fetch(Package(**snakemake.params.package), out.parent)
except FetchError as e:  # one line, in the log and on the terminal: what to install or fetch
    print(f"anneuron: {e}", file=sys.stderr)
    print(f"anneuron: {e}", file=sys.__stderr__)
    sys.exit(1)
assert got == out, f"fetched {got}, expected {out}"
