from anneuron.jobs import setup_logging

from anneuron.io import atomic_path, write_parquet
from anneuron.report.paper_check import paper_check, run_settings, to_html
from anneuron.stage_config import PaperCheckConfig

setup_logging(snakemake)
p = snakemake.params
settings = run_settings(PaperCheckConfig.from_dict(p.cfg))
table = paper_check(p.results, p.model, p.dataset, settings)
write_parquet(snakemake.output.table, table)
with atomic_path(snakemake.output.html) as tmp:
    tmp.write_text(to_html(table, p.model, settings))
