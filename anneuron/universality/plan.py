"""Which tiles a study computes, decided when the Snakefile parses (no torch): for every pair of models of a
universality group (anneuron.config.universality_groups), the first in sorted id order as side `a`, the neuron
blocks of each side sized by the memory budget, and one tile job per (block of a, block of b). Adding a model adds
only its pairs' tiles; the existing ones keep their paths and parameters, so nothing reruns.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

# A tile's memory budget (universality.tile_mb) counts everything the tile allocates (anneuron.universality.
# correlation.TileCorrelation; anneuron.bench universality measures its peak RSS against the budget): per neuron
# pair, its 3 float64 and 3 float32 cross-product sums (the correlations are computed in place of the float64 ones);
# per neuron of the side and token of a chunk, the chunk's 4 float32 block activations (A, B and their rotations,
# centred in place); and a fixed workspace for the column vectors, the reductions' per-thread partials and the fold's
# float64 blocks (9 MB measured at side 3,000). The forward passes that produce a chunk (the models, one batch's
# hooked layers) are the job's.
BYTES_PER_PAIR = 3 * 8 + 3 * 4
BYTES_PER_CHUNK_CELL = 4 * 4
WORKSPACE_BYTES = 16 * 2**20
CHUNK_TOKENS = 4096  # tokens per TileCorrelation.update: enough for the GEMMs' full rate (anneuron.bench universality)


def tile_bytes(side: int, chunk_tokens: int = CHUNK_TOKENS) -> int:
    """What a square tile of `side` neurons allocates."""
    return BYTES_PER_PAIR * side * side + BYTES_PER_CHUNK_CELL * chunk_tokens * side + WORKSPACE_BYTES


def block_size(budget_mb: float, n_a: int, n_b: int, chunk_tokens: int = CHUNK_TOKENS) -> int:
    """The largest side of a square tile (in neurons) whose `tile_bytes` fit `budget_mb`; capped at the larger
    model's neuron count (one tile then holds a whole pair)."""
    budget = budget_mb * 2**20
    a, b, c = BYTES_PER_PAIR, BYTES_PER_CHUNK_CELL * chunk_tokens, WORKSPACE_BYTES - budget
    side = max(int((-b + max(b * b - 4 * a * c, 0) ** 0.5) / (2 * a)), 0)  # the root of a·s² + b·s + c = 0
    while tile_bytes(side + 1, chunk_tokens) <= budget:  # float rounding of the root, either way
        side += 1
    while side > 0 and tile_bytes(side, chunk_tokens) > budget:
        side -= 1
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
