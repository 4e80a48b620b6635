"""The tile plan: adding a model adds only its pairs' tiles (the existing tiles keep their names and blocks, and the
tile job's config holds no model list, so nothing reruns), blocks cover every neuron once, and each model's merge
order runs over the other model's flat ids."""

from __future__ import annotations

from anneuron.universality import plan as P


def test_adding_a_model_adds_only_its_pairs():
    n = {"a": 1000, "b": 700, "c": 1000}
    budget = P.tile_bytes(300) / 2**20  # side 300
    two = P.plan([["a", "b"]], n, budget)
    three = P.plan([["c", "a", "b"]], n, budget)
    assert set(three) == {("a", "b"), ("a", "c"), ("b", "c")}
    assert three[("a", "b")] == two[("a", "b")]  # same tiles: same paths and params
    assert P.partners(three, "b") == ["a", "c"]


def test_blocks_cover_every_neuron_once_and_tiles_cover_every_pair():
    tiles = P.pair_tiles("a", 1000, "b", 700, P.tile_bytes(300) / 2**20)
    assert len(tiles) == 4 * 3
    covered = {(x, y) for t in tiles for x in range(*t.a_block) for y in range(*t.b_block)}
    assert len(covered) == 1000 * 700
    assert tiles[-1].a_block == (900, 1000) and tiles[-1].b_block == (600, 700)


def test_merge_order_follows_the_other_models_flat_ids():
    pairs = P.plan([["a", "b"]], {"a": 10, "b": 10}, P.tile_bytes(4) / 2**20)  # side 4: blocks 0-4, 4-8, 8-10
    side_a, tiles_a = P.tiles_of(pairs, "a")["b"]
    side_b, tiles_b = P.tiles_of(pairs, "b")["a"]
    assert (side_a, side_b) == ("a", "b")
    assert [t.b_block[0] for t in tiles_a] == sorted(t.b_block[0] for t in tiles_a)  # b's ids ascending for a
    assert [t.a_block[0] for t in tiles_b] == sorted(t.a_block[0] for t in tiles_b)  # a's ids ascending for b
