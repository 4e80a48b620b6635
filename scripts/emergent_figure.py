from pathlib import Path

from anneuron.jobs import setup_logging

from anneuron.demos.figures import loss_curve
from anneuron.io import read_json, save_figure

setup_logging(snakemake)
record = read_json(Path(snakemake.input.model) / "training.json", "delete the model folder and rerun")
save_figure(loss_curve(record), snakemake.output.png)
