"""Which tiles a study computes, decided when the Snakefile parses (no torch): for every pair of models of a
universality group (anneuron.config.universality_groups), the first in sorted id order as side `a`, the neuron
blocks of each side sized by the memory budget, and one tile job per (block of a, block of b). Adding a model adds
only its pairs' tiles; the existing ones keep their paths and parameters, so nothing reruns.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

# The tile's memory budget counts this many (na, nb) float64 matrices: the 3 accumulators of
# anneuron.universality.correlation.TileCorrelation and the finalisation's temporaries (the correlation, its two
# baseline twins, reductions); anneuron.bench universality measures peak RSS against it.
MATRICES_PER_TILE = 8


def block_size(budget_mb: float, n_a: int, n_b: int) -> int:
    """The side of a square tile (in neurons) whose matrices fit `budget_mb`: MATRICES_PER_TILE float64
    (side x side) matrices; capped at the larger model's neuron count (one tile then holds a whole pair)."""
    side = int((budget_mb * 2**20 / (8 * MATRICES_PER_TILE)) ** 0.5)
    if side < 1:
        raise ValueError(f"universality.tile_mb: {budget_mb} MB holds no tile")
    return min(side, max(n_a, n_b))


def blocks(n: int, side: int) -> list[tuple[int, int]]:
    """[lo, hi) flat-neuron ranges of `side` neurons (the last one shorter when side does not divide n)."""
    return [(lo, min(lo + side, n)) for lo in range(0, n, side)]


@dataclass(frozen=True)
class Tile:
    a: str  # model ids, a < b
    b: str
    i: int  # block indices
    j: int
    a_block: tuple[int, int]  # flat [lo, hi)
    b_block: tuple[int, int]


def pair_tiles(a: str, n_a: int, b: str, n_b: int, budget_mb: float) -> list[Tile]:
    """Every tile of one pair (a < b), in (i, j) order."""
    side = block_size(budget_mb, n_a, n_b)
    return [Tile(a, b, i, j, ba, bb) for i, ba in enumerate(blocks(n_a, side))
            for j, bb in enumerate(blocks(n_b, side))]


def plan(groups: list[list[str]], n_neurons: dict[str, int], budget_mb: float) -> dict[tuple[str, str], list[Tile]]:
    """(a, b) -> its tiles, for every pair within every group (model id -> layers · d_mlp in `n_neurons`)."""
    out: dict[tuple[str, str], list[Tile]] = {}
    for group in groups:
        for a, b in combinations(sorted(group), 2):
            out[(a, b)] = pair_tiles(a, n_neurons[a], b, n_neurons[b], budget_mb)
    return out


def partners(pairs: dict[tuple[str, str], list[Tile]], model: str) -> list[str]:
    """The other models `model` is correlated with, in id order."""
    return sorted({b if a == model else a for a, b in pairs if model in (a, b)})


def tiles_of(pairs: dict[tuple[str, str], list[Tile]], model: str) -> dict[str, tuple[str, list[Tile]]]:
    """other model -> (the side `model` is in its pair's tiles, those tiles in the OTHER model's flat order): merged
    in that order, a later tile wins only with a strictly larger ρ, so a tie goes to the other's lowest neuron."""
    out = {}
    for other in partners(pairs, model):
        a, b = sorted((model, other))
        side = "a" if model == a else "b"
        key = (lambda t: (t.j, t.i)) if side == "a" else (lambda t: (t.i, t.j))
        out[other] = (side, sorted(pairs[(a, b)], key=key))
    return out
