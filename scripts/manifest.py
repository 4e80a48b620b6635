from anneuron.jobs import setup_logging

from anneuron.io import atomic_path, write_json
from anneuron.report.manifest import manifest, manifest_html

setup_logging(snakemake)
man = manifest(list(snakemake.input))
write_json(snakemake.output.json, man)
with atomic_path(snakemake.output.html) as tmp:
    tmp.write_text(manifest_html(man, snakemake.wildcards.model))
