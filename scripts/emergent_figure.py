import json
from pathlib import Path

from anneuron.jobs import setup_logging

from anneuron.demos.figures import loss_curve
from anneuron.io import save_figure

setup_logging(snakemake)
record = json.loads((Path(snakemake.input.model) / "training.json").read_text())
save_figure(loss_curve(record), snakemake.output.png)
