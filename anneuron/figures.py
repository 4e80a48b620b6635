"""Figures (matplotlib, headless). One module per stage; `style()` is the shared look."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from anneuron.io import save_figure  # noqa: E402,F401


def style() -> None:
    """A readable, consistent look for every figure (applied by each plotting function)."""
    plt.rcParams.update({
        "figure.dpi": 110, "font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10,
        "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True, "grid.alpha": 0.3,
        "svg.hashsalt": "anneuron", "legend.frameon": False,
    })
