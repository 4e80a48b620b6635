"""Gurnee et al. (2024) classes of neurons from the moments of their cosine congruence with the unembedding
(docs/science.md): a heavy right tail (high kurtosis, positive skew) raises a few tokens -> `prediction`; a heavy
left tail -> `suppression`; a spread-out but not heavy-tailed row (high variance, kurtosis <= K) -> `partition`;
else `other`.

Moments are population moments, kurtosis NOT excess (a Gaussian scores 3). Gurnee's own skew/kurtosis helpers have
an operator-precedence bug; these follow the textbook definitions (scipy skew(bias=True),
kurtosis(fisher=False, bias=True)); dense rows: anneuron.weights.congruence.moments_dense."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

CLASSES = ("prediction", "suppression", "partition", "other")


def classify(var: np.ndarray, skew: np.ndarray, kurt: np.ndarray, kurtosis: float, partition_var: float
             ) -> np.ndarray:
    """(N,) class names from cosine moments. kurtosis = K, partition_var = V. NaN moments -> `other`."""
    var, skew, kurt = (np.asarray(a, dtype=np.float64) for a in (var, skew, kurt))
    heavy = kurt > kurtosis  # False for NaN
    out = np.full(var.shape, "other", dtype=object)
    out[(kurt <= kurtosis) & (var > partition_var)] = "partition"
    out[heavy & (skew > 0)] = "prediction"
    out[heavy & (skew < 0)] = "suppression"
    return out


def with_classes(neurons: pa.Table, kurtosis: float, partition_var: float) -> pa.Table:
    """The neuron table with its `neuron_class` column (from cos_var, cos_skew, cos_kurt), replacing any old one."""
    cls = classify(*(neurons.column(c).to_numpy() for c in ("cos_var", "cos_skew", "cos_kurt")),
                   kurtosis=kurtosis, partition_var=partition_var)
    if "neuron_class" in neurons.column_names:
        neurons = neurons.drop_columns(["neuron_class"])
    return neurons.append_column("neuron_class", pa.array(list(cls), pa.string()))
