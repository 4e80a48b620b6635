import json
import logging
from pathlib import Path

from anneuron.jobs import setup_logging

from anneuron.pages import Sources, build_site

setup_logging(snakemake)
p, inp = snakemake.params, snakemake.input
sources = Sources.of(p.model, p.dataset, list(p.experiments))
# the files this job was given (the same paths: anneuron.contracts), named explicitly
sources.neurons, sources.tokens, sources.pairs = Path(inp.neurons), Path(inp.tokens), Path(inp.pairs)
sources.congruence, sources.examples = Path(inp.congruence), Path(inp.examples)
sources.watched, sources.curves, sources.predictions = Path(inp.watched), Path(inp.curves), Path(inp.predictions)
sources.experiments_summary = Path(inp.summary[0]) if inp.summary else None
sources.universality, sources.universality_summary = [Path(f) for f in inp.universality] or [None, None]
stats = build_site(Path(snakemake.output.index).parent, sources, p.model)
logging.getLogger("pages").info("pages: %s", json.dumps(stats))
