from pathlib import Path

from anneuron.jobs import setup_logging

from anneuron.demos.real import Package, fetch

setup_logging(snakemake)
out = Path(snakemake.output[0])
got = fetch(Package(**snakemake.params.package), out.parent)  # a FetchError: one line saying what to fetch (jobs)
assert got == out, f"fetched {got}, expected {out}"
