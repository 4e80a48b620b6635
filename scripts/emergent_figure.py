import json
from pathlib import Path

from _common import setup_logging

from anneuron.io import save_figure
from anneuron.plots.training import loss_curve

setup_logging(snakemake)
record = json.loads((Path(snakemake.input.model) / "training.json").read_text())
save_figure(loss_curve(record), snakemake.output.png)
