"""The result-tree comparison (anneuron/devtools/compare.py) on small trees: exit codes and what it reports."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from anneuron.devtools.compare import main

NAN = float("nan")


def _png(path: Path, pixels: np.ndarray, **save) -> None:
    Image.fromarray(pixels).save(path, **save)


def _image() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (12, 20, 4), dtype=np.uint8)


@pytest.fixture
def tree(tmp_path) -> Path:
    """A small result tree: a table (with NaN and a list column), a figure as PNG and SVG, a JSON summary."""
    a = tmp_path / "a"
    (a / "figures").mkdir(parents=True)
    pq.write_table(pa.table({"layer": [0, 1, 2], "score": [0.5, NAN, -1.0], "tokens": [["a"], [], ["b", "c"]]}),
                   a / "table.parquet")
    _png(a / "figures/fig.png", _image())
    (a / "figures/fig.svg").write_text("<svg>\n<path d='M 0 0'/>\n</svg>\n")
    (a / "summary.json").write_text(json.dumps({"ld": 1.5, "commit": "abc"}, indent=2) + "\n")
    return a


def _copy(a: Path) -> Path:
    b = a.with_name("b")
    shutil.copytree(a, b)
    return b


def _run(capsys, *args: str | Path) -> tuple[int, dict, str]:
    """Exit code, the JSON last line, the whole output."""
    code = main([str(x) for x in args])
    out = capsys.readouterr().out
    return code, json.loads(out.strip().splitlines()[-1]), out


def test_identical_trees_pass(tree, capsys):
    b = _copy(tree)
    code, summary, out = _run(capsys, tree, b)
    assert code == 0 and summary["ok"] and summary["identical"] == summary["files"] == 4
    assert summary["not_identical"] == {}
    assert out.splitlines()[-2].split()[:3] == ["all", "4", "4"]  # the summary table's total row


def test_a_changed_parquet_value_names_its_column_and_row(tree, capsys):
    b = _copy(tree)
    pq.write_table(pa.table({"layer": [0, 1, 2], "score": [0.5, NAN, -1.5], "tokens": [["a"], [], ["b", "c"]]}),
                   b / "table.parquet")
    code, summary, out = _run(capsys, tree, b, "--pixels")
    assert code == 1 and not summary["ok"] and summary["not_identical"] == {"table.parquet": "different"}
    assert "score: 1 rows differ, max |Δ| 0.5, first row 2: -1.0 vs -1.5" in out
    assert "layer:" not in out and "tokens:" not in out  # NaN equals NaN; only the changed column is named


def test_a_table_written_differently_is_equal_but_not_identical(tree, capsys):
    b = _copy(tree)
    pq.write_table(pq.read_table(tree / "table.parquet"), b / "table.parquet", compression="gzip")
    code, summary, out = _run(capsys, tree, b)
    assert code == 1 and summary["tables_equal"] == 1 and "tables equal" in out


def test_a_png_reencoded_with_the_same_pixels(tree, capsys):
    b = _copy(tree)
    _png(b / "figures/fig.png", _image(), compress_level=0)
    assert (b / "figures/fig.png").read_bytes() != (tree / "figures/fig.png").read_bytes()
    code, summary, out = _run(capsys, tree, b)
    assert code == 1 and summary["pixels_identical"] == 1
    assert "pixels identical  figures/fig.png  bytes differ, pixels identical" in out
    code, summary, _ = _run(capsys, tree, b, "--pixels")
    assert code == 0 and summary["ok"]


def test_a_png_with_one_pixel_changed(tree, capsys):
    b = _copy(tree)
    pixels = _image()
    pixels[3, 7, 0] ^= 128  # one channel of one pixel, by exactly 128
    _png(b / "figures/fig.png", pixels)
    code, summary, out = _run(capsys, tree, b, "--pixels")
    assert code == 1 and summary["not_identical"] == {"figures/fig.png": "different"}
    assert f"1 of 240 pixels differ, max |Δ| 128, mean |Δ| {128 / (240 * 4):.4g}" in out


def test_a_text_file_reports_its_first_differing_line(tree, capsys):
    b = _copy(tree)
    (b / "summary.json").write_text(json.dumps({"ld": 1.5, "commit": "abd"}, indent=2) + "\n")
    code, _, out = _run(capsys, tree, b)
    assert code == 1 and "summary.json  line 3 (4 vs 4 lines), column 16: '  \"commit\": \"abc\"' vs " \
                          "'  \"commit\": \"abd\"'" in out


def test_a_missing_file_fails_unless_ignored(tree, capsys):
    b = _copy(tree)
    (b / "figures/fig.svg").unlink()
    (b / "extra.txt").write_text("x")
    code, summary, out = _run(capsys, tree, b)
    assert code == 1 and summary["only_in_A"] == 1 and summary["only_in_B"] == 1
    assert "only in A         figures/fig.svg" in out and "only in B         extra.txt" in out
    code, summary, _ = _run(capsys, tree, b, "--ignore", "*.svg", "--ignore", "extra.*")
    assert code == 0 and summary["ignored"] == 2 and summary["identical"] == 3


def test_runs_as_a_module_and_a_missing_tree_is_exit_code_2(tree):
    b = _copy(tree)
    r = subprocess.run([sys.executable, "-m", "anneuron.devtools.compare", str(tree), str(b)], capture_output=True,
                       text=True)
    assert r.returncode == 0 and json.loads(r.stdout.splitlines()[-1])["ok"]
    r = subprocess.run([sys.executable, "-m", "anneuron.devtools.compare", str(tree), str(tree.with_name("none"))],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "is not a folder" in r.stderr


def test_tolerance_accepts_rounding_and_timings_but_not_a_changed_result(tree, capsys):
    """Two runs that round differently (another thread count) pass with --tolerance; a real change never does."""
    b = _copy(tree)
    pq.write_table(pa.table({"layer": [0, 1, 2], "score": [0.5 + 1e-9, NAN, -1.0], "tokens": [["a"], [], ["b", "c"]]}),
                   b / "table.parquet")
    (b / "summary.json").write_text(json.dumps({"ld": 1.5 * (1 + 1e-7), "commit": "abc", "seconds": 9.0}, indent=2))
    (tree / "summary.json").write_text(json.dumps({"ld": 1.5, "commit": "abc", "seconds": 3.0}, indent=2))
    (b / "figures/fig.svg").write_text("<svg>\n<path d='M 0.12341 0'/>\n</svg>\n")
    (tree / "figures/fig.svg").write_text("<svg>\n<path d='M 0.12339 0'/>\n</svg>\n")
    code, summary, _ = _run(capsys, tree, b)
    assert code == 1 and summary["different"] == 3
    code, summary, _ = _run(capsys, tree, b, "--tolerance")
    assert code == 0 and summary["within_tolerance"] == 3 and summary["identical"] == 1

    for changed in ({"ld": 1.5001, "commit": "abc", "seconds": 9.0}, {"ld": 1.5, "commit": "abd", "seconds": 3.0},
                    {"ld": 1.5, "commit": "abc"}):
        (b / "summary.json").write_text(json.dumps(changed))
        code, summary, _ = _run(capsys, tree, b, "--tolerance")
        assert code == 1 and summary["not_identical"]["summary.json"] == "different", changed
    (b / "summary.json").write_text((tree / "summary.json").read_text())
    pq.write_table(pa.table({"layer": [0, 1, 3], "score": [0.5, NAN, -1.0], "tokens": [["a"], [], ["b", "c"]]}),
                   b / "table.parquet")  # an integer never passes by tolerance
    code, summary, out = _run(capsys, tree, b, "--tolerance")
    assert code == 1 and summary["not_identical"]["table.parquet"] == "different" and "layer: values differ" in out


def test_tolerance_on_pixels_is_a_share_of_places(tree, capsys):
    b = _copy(tree)
    pixels = _image()
    pixels[3, 7, 0] ^= 128  # 1 of 240 pixels: 0.4 %, above the 0.1 % a moved antialiased edge may change
    _png(b / "figures/fig.png", pixels)
    code, summary, out = _run(capsys, tree, b, "--tolerance")
    assert code == 1 and "0.42% of pixels differ" in out
    from anneuron.devtools.compare import Tolerance, compare_file

    r = compare_file(tree / "figures/fig.png", b / "figures/fig.png", "fig.png", Tolerance(png_fraction=0.005))
    assert r.status == "within tolerance"
