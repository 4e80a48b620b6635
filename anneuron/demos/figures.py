"""How a trained demo model got where it is: train and validation loss by step, and the step kept."""

from __future__ import annotations

import matplotlib.pyplot as plt

from anneuron.figures import style


def loss_curve(record: dict):
    """`record` is a training.json (anneuron.demos.training): its `curve` of {step, train, val} and `step_chosen`."""
    style()
    curve = record["curve"]
    steps = [p["step"] for p in curve]
    fig, ax = plt.subplots(figsize=(6, 3.4))
    ax.plot(steps, [p["train"] for p in curve], label="train (fixed windows)", color="tab:blue")
    ax.plot(steps, [p["val"] for p in curve], label="validation (held-back documents)", color="tab:orange")
    ax.axvline(record["step_chosen"], color="0.3", ls="--", lw=1, label=f"kept: step {record['step_chosen']}")
    low = min(min(p["train"], p["val"]) for p in curve)
    ax.set_ylim(low - 0.05 * record["val_loss"], 1.3 * record["val_loss"])  # the plateau, not the first drop
    ax.set_xlabel("step")
    ax.set_ylabel("loss: cross-entropy, 50,257 tokens (nats)")
    cfg = record["config"]
    ax.set_title(f"{cfg['n_layer']} layers, d_model {cfg['d_model']}, d_mlp {cfg['d_mlp']}, seed {cfg['seed']}\n"
                 f"train {record['train_loss']:.3f}, val {record['val_loss']:.3f}, "
                 f"{record['train_seconds'] / 60:.1f} min", fontsize=10)
    ax.legend()
    return fig
