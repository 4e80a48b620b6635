"""The README's joint-patching contrast: `an_a` restored vs k for several demo-emergent runs on one axis.

    python docs/figures/emergent/joint_contrast.py OUT.png LABEL=RUN_DIR [LABEL=RUN_DIR ...]

RUN_DIR is a finished workflow directory (results/demo-emergent/experiments/an_a/joint.parquet inside).
"""

import sys
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from anneuron.figures import style
from anneuron.io import save_figure


def main(out: str, runs: list[str]) -> None:
    style()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for i, spec in enumerate(runs):
        label, run = spec.split("=", 1)
        j = pd.read_parquet(Path(run) / "results/demo-emergent/experiments/an_a/joint.parquet")
        for side, ls in (("answer", "-"), ("wrong", "--")):
            s = j[j.side == side].sort_values("k")
            ax.plot(s.k, s.score, ls, marker="o", color=f"C{i}", label=label if side == "answer" else None)
    ax.axhline(1.0, color="0.4", lw=0.8, ls=":")
    ax.axhline(0.0, color="0.2", lw=0.8)
    ax.set_xscale("log")
    ax.set_xticks([1, 2, 5, 10, 20, 50], ["1", "2", "5", "10", "20", "50"])
    ax.set_xlabel("k neurons of layer 1 patched together (top-k by single score; dashed: bottom-k)")
    ax.set_ylabel("patch score (fraction of LD restored)")
    ax.set_title("demo-emergent, an_a: how many neurons carry the answer")
    ax.legend(fontsize=8, loc="center right")
    save_figure(fig, Path(out).with_suffix(""))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
