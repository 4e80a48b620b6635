"""Two result trees, file by file: the proof that a change of code left what the pipeline computes as it was.

    python -m anneuron.devtools.compare A B [--pixels | --tolerance] [--ignore GLOB ...]

A and B are two result folders (e.g. `results/demo-planted` of two checkouts). Every file is compared by its bytes;
a file that differs is then read for what differs: a PNG's decoded pixels (how many, max and mean difference), a
Parquet file's table (pyarrow `Table.equals`, NaN equal to NaN; which columns differ and where), a text file's
first differing line. Files found in one tree only are listed. The output ends with a table of counts by file type
and one JSON line. Exit code 0 only when every file is byte-identical (with `--pixels`: or a PNG with identical
pixels), 1 otherwise, 2 when a tree is missing. Results are reproducible by design, so nothing is skipped unless
asked: `--ignore GLOB` (fnmatch on the path inside the tree, `*` also matches `/`) leaves matching files out.

`--tolerance` is for two runs that may legitimately round differently (the same workflow run locally and through
SLURM, where a job may get another thread count, so float sums reorder): a file whose bytes differ still passes
when it is equal within `Tolerance` — Parquet: same schema and rows, floats within rtol/atol, everything else
equal; JSON: the same keys and values, floats within rtol/atol, a run's own timings (`seconds`, `gflops`) left out;
PNG: the same size, pixels differing in at most `png_fraction` of places (a moved antialiased edge); SVG: equal
after every decimal number is rounded to `svg_digits` significant digits. Anything else must be identical bytes.
"""

from __future__ import annotations

import argparse
import filecmp
import fnmatch
import json
import math
import re
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

IDENTICAL = "identical"
PIXELS_IDENTICAL = "pixels identical"
TABLES_EQUAL = "tables equal"
CLOSE = "within tolerance"
DIFFERENT = "different"
ONLY_A = "only in A"
ONLY_B = "only in B"
IGNORED = "ignored"
STATUSES = (IDENTICAL, PIXELS_IDENTICAL, TABLES_EQUAL, CLOSE, DIFFERENT, ONLY_A, ONLY_B, IGNORED)
TEXT = {".svg", ".html", ".json", ".js", ".css", ".txt", ".tsv", ".csv", ".yaml", ".md", ".rst"}
SHOWN = 100  # characters of a differing line shown on each side of the first differing character


@dataclass(frozen=True)
class Tolerance:
    """How far two runs' files may differ and still hold the same results (see the module docstring)."""

    rtol: float = 1e-5
    atol: float = 1e-6
    png_fraction: float = 1e-3
    svg_digits: int = 3
    measured_keys: frozenset[str] = frozenset({"seconds", "gflops"})


@dataclass(frozen=True)
class Result:
    """One file's verdict; `detail` says what differs (empty when nothing does)."""

    path: str
    status: str
    detail: str = ""


def files(root: Path) -> set[str]:
    """Every file under root, as a POSIX path relative to it."""
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def _pixels(path: Path):
    """(height, width, 4) RGBA values 0-255, as int16 so that differences do not wrap."""
    import numpy as np
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGBA"), dtype=np.int16)


def compare_png(a: Path, b: Path) -> tuple[str, str]:
    """Decoded RGBA pixels; differences in 0-255 units per channel, the mean over every channel of every pixel."""
    pa_, pb = _pixels(a), _pixels(b)
    if pa_.shape != pb.shape:
        return DIFFERENT, f"size {pa_.shape[1]}×{pa_.shape[0]} vs {pb.shape[1]}×{pb.shape[0]} pixels"
    diff = abs(pa_ - pb)
    n = int(diff.any(axis=-1).sum())
    if n == 0:
        return PIXELS_IDENTICAL, "bytes differ, pixels identical"
    return DIFFERENT, (f"{n:,} of {diff.shape[0] * diff.shape[1]:,} pixels differ, max |Δ| {diff.max()}, "
                       f"mean |Δ| {diff.mean():.4g}")


def _column_difference(name: str, ca, cb) -> str | None:
    """None when two columns hold equal values (NaN equal to NaN), else where they first differ."""
    import polars as pl

    if ca.equals(cb):
        return None
    sa, sb = pl.from_arrow(ca), pl.from_arrow(cb)
    if sa.equals(sb):
        return None
    rows = sa.ne_missing(sb).arg_true()
    if rows.is_empty():  # values polars calls equal but arrow does not (e.g. -0.0 and 0.0)
        return f"{name}: values differ"
    i = rows[0]
    size = ""
    if sa.dtype.is_numeric() and sb.dtype.is_numeric():  # how far apart, where both hold a number
        delta = (sa.cast(pl.Float64) - sb.cast(pl.Float64)).abs().fill_nan(None).max()
        size = f", max |Δ| {delta:.3g}" if delta is not None else ""
    return f"{name}: {len(rows):,} rows differ{size}, first row {i}: {sa[i]!r} vs {sb[i]!r}"


def compare_parquet(a: Path, b: Path) -> tuple[str, str]:
    """The tables: equal (bytes differ only by encoding or metadata), or which columns differ and how."""
    import pyarrow.parquet as pq

    ta, tb = pq.read_table(a), pq.read_table(b)
    if ta.equals(tb):
        return TABLES_EQUAL, "bytes differ, tables equal"
    names_a, names_b = ta.schema.names, tb.schema.names
    notes = [f"column {c} only in A" for c in names_a if c not in names_b]
    notes += [f"column {c} only in B" for c in names_b if c not in names_a]
    common = [c for c in names_a if c in names_b]
    same_type = [c for c in common if ta.schema.field(c).type == tb.schema.field(c).type]
    notes += [f"{c}: type {ta.schema.field(c).type} vs {tb.schema.field(c).type}" for c in common
              if c not in same_type]
    if ta.num_rows != tb.num_rows:
        notes.append(f"{ta.num_rows:,} vs {tb.num_rows:,} rows")
    else:
        notes += [d for c in same_type if (d := _column_difference(c, ta.column(c), tb.column(c)))]
    if not notes and names_a != names_b:
        notes.append(f"column order {names_a} vs {names_b}")
    if not notes:
        return TABLES_EQUAL, "bytes differ, tables equal (NaN in the same places)"
    return DIFFERENT, "; ".join(notes)


def compare_text(a: Path, b: Path) -> tuple[str, str]:
    """The first line that differs, around its first differing character."""
    la, lb = (p.read_text(encoding="utf-8", errors="replace").splitlines() for p in (a, b))
    if la == lb:
        return DIFFERENT, "the same lines; line endings or the final newline differ"
    i = next((i for i, (x, y) in enumerate(zip(la, lb)) if x != y), min(len(la), len(lb)))
    x, y = (lines[i] if i < len(lines) else "<end of file>" for lines in (la, lb))
    col = next((j for j, (p, q) in enumerate(zip(x, y)) if p != q), min(len(x), len(y)))
    lo = max(0, col - SHOWN)
    return DIFFERENT, (f"line {i + 1} ({len(la):,} vs {len(lb):,} lines), column {col + 1}: "
                       f"{x[lo:col + SHOWN]!r} vs {y[lo:col + SHOWN]!r}")



# --- equal within a tolerance (--tolerance) --------------------------------------------------------------------------

def _floats(col):
    """A (possibly nested list) float column as one flat float64 array, nulls as NaN."""
    import numpy as np
    import pyarrow.compute as pc
    import pyarrow.types as pt

    while pt.is_list(col.type) or pt.is_large_list(col.type) or pt.is_fixed_size_list(col.type):
        col = pc.list_flatten(col)
    if col.null_count:
        col = pc.fill_null(col, float("nan"))
    return np.asarray(col.to_numpy(zero_copy_only=False), dtype=np.float64)


def _is_float_column(t) -> bool:
    import pyarrow.types as pt

    while pt.is_list(t) or pt.is_large_list(t) or pt.is_fixed_size_list(t):
        t = t.value_type
    return pt.is_floating(t)


def parquet_close(a: Path, b: Path, tol: Tolerance) -> str | None:
    """None when the tables agree within tol, else why not."""
    import numpy as np
    import pyarrow.parquet as pq

    ta, tb = pq.read_table(a), pq.read_table(b)
    if ta.schema.remove_metadata() != tb.schema.remove_metadata():
        return "schemas differ"
    if ta.num_rows != tb.num_rows:
        return f"{ta.num_rows:,} vs {tb.num_rows:,} rows"
    for name in ta.column_names:
        ca, cb = ta.column(name).combine_chunks(), tb.column(name).combine_chunks()
        if ca.equals(cb):
            continue
        if not _is_float_column(ca.type):
            return f"{name}: values differ"
        va, vb = _floats(ca), _floats(cb)
        if va.shape != vb.shape:
            return f"{name}: list lengths differ"
        if not np.allclose(va, vb, rtol=tol.rtol, atol=tol.atol, equal_nan=True):
            return f"{name}: floats differ beyond tolerance (max |Δ| {float(np.nanmax(np.abs(va - vb))):.3g})"
    return None


def values_close(x, y, tol: Tolerance, where: str = "") -> str | None:
    """JSON-like values: None when equal with floats within tol (a run's own timings left out), else where not."""
    if isinstance(x, dict) and isinstance(y, dict):
        if set(x) != set(y):
            return f"{where}: keys differ: {sorted(set(x) ^ set(y))}"
        return next((e for k in x if k not in tol.measured_keys
                     if (e := values_close(x[k], y[k], tol, f"{where}.{k}"))), None)
    if isinstance(x, list) and isinstance(y, list):
        if len(x) != len(y):
            return f"{where}: lengths {len(x)} vs {len(y)}"
        return next((e for i, (p, q) in enumerate(zip(x, y)) if (e := values_close(p, q, tol, f"{where}[{i}]"))),
                    None)
    if isinstance(x, float) or isinstance(y, float):
        numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (x, y))
        if numbers and (math.isclose(x, y, rel_tol=tol.rtol, abs_tol=tol.atol) or (x != x and y != y)):
            return None
    return None if x == y else f"{where}: {x!r} vs {y!r}"


def json_close(a: Path, b: Path, tol: Tolerance) -> str | None:
    return values_close(json.loads(a.read_text()), json.loads(b.read_text()), tol, a.name)


def png_close(a: Path, b: Path, tol: Tolerance) -> str | None:
    pa_, pb = _pixels(a), _pixels(b)
    if pa_.shape != pb.shape:
        return "sizes differ"
    share = float((pa_ != pb).any(axis=-1).mean())
    return None if share <= tol.png_fraction else f"{share:.2%} of pixels differ"


_DECIMAL = re.compile(r"-?\d+\.\d+(?:e-?\d+)?")


def svg_close(a: Path, b: Path, tol: Tolerance) -> str | None:
    def rounded(text: str) -> str:
        return _DECIMAL.sub(lambda m: f"{float(m.group()):.{tol.svg_digits}g}", text)

    return None if rounded(a.read_text()) == rounded(b.read_text()) else "differs beyond number rounding"


CLOSE_CHECKS = {".parquet": parquet_close, ".json": json_close, ".png": png_close, ".svg": svg_close}

def compare_file(a: Path, b: Path, rel: str, tol: Tolerance | None = None) -> Result:
    """Bytes first; only a file that differs is decoded by its type (PNG, Parquet, text), and with `tol`, a file
    that differs is then checked for equality within it."""
    if filecmp.cmp(a, b, shallow=False):
        return Result(rel, IDENTICAL)
    suffix = Path(rel).suffix.lower()
    how = {".png": compare_png, ".parquet": compare_parquet}.get(suffix, compare_text if suffix in TEXT else None)
    if how is None:
        return Result(rel, DIFFERENT, f"bytes differ ({a.stat().st_size:,} vs {b.stat().st_size:,} bytes)")
    try:
        result = Result(rel, *how(a, b))
        if tol is None or result.status != DIFFERENT or suffix not in CLOSE_CHECKS:
            return result
        why = CLOSE_CHECKS[suffix](a, b, tol)
        return Result(rel, CLOSE, result.detail) if why is None else Result(rel, DIFFERENT, f"{result.detail}; {why}")
    except Exception as e:  # a file that cannot be read as its type: still a difference, with the reason
        return Result(rel, DIFFERENT, f"bytes differ; not readable as {suffix}: {type(e).__name__}: {e}")


def compare_trees(a: str | Path, b: str | Path, ignore: tuple[str, ...] = (), tol: Tolerance | None = None
                  ) -> list[Result]:
    """One Result per file of either tree, sorted by path."""
    a, b = Path(a), Path(b)
    in_a, in_b = files(a), files(b)
    out = []
    for rel in sorted(in_a | in_b):
        if any(fnmatch.fnmatchcase(rel, g) for g in ignore):
            out.append(Result(rel, IGNORED))
        elif rel not in in_b:
            out.append(Result(rel, ONLY_A))
        elif rel not in in_a:
            out.append(Result(rel, ONLY_B))
        else:
            out.append(compare_file(a / rel, b / rel, rel, tol))
    return out


def passed(results: list[Result], pixels: bool = False, tolerance: bool = False) -> bool:
    """Every file byte-identical (or ignored); with `pixels`, a PNG whose pixels are identical passes too; with
    `tolerance`, so does every file equal within the tolerance (and every table equal)."""
    ok = {IDENTICAL, IGNORED} | ({PIXELS_IDENTICAL} if pixels or tolerance else set())
    ok |= {TABLES_EQUAL, CLOSE} if tolerance else set()
    return all(r.status in ok for r in results)


def _kind(path: str) -> str:
    name = Path(path).name
    return Path(name).suffix.lower() or name


def summary_table(results: list[Result]) -> str:
    """Counts of each status by file type (suffix), and the total."""
    by_kind: dict[str, Counter] = {}
    for r in results:
        by_kind.setdefault(_kind(r.path), Counter())[r.status] += 1
    total = sum(by_kind.values(), Counter())
    head = ["type", "files", *STATUSES]
    rows = [[k, sum(c.values()), *(c[s] for s in STATUSES)] for k, c in sorted(by_kind.items())]
    rows.append(["all", sum(total.values()), *(total[s] for s in STATUSES)])
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    return "\n".join("  ".join(str(x).rjust(w) if j else str(x).ljust(w) for j, (x, w) in enumerate(zip(line, widths)))
                     for line in [head, *rows])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="compare two result trees file by file",
                                 epilog="exit code 0: every file byte-identical (--pixels: or PNG pixels identical)")
    ap.add_argument("a", type=Path, help="one result tree (e.g. results/demo-planted before a change)")
    ap.add_argument("b", type=Path, help="the other")
    ap.add_argument("--pixels", action="store_true", help="a PNG whose decoded pixels are identical passes")
    ap.add_argument("--tolerance", action="store_true",
                    help="a file equal within the default Tolerance passes (two runs that may round differently)")
    ap.add_argument("--ignore", action="append", default=[], metavar="GLOB",
                    help="leave out files whose path inside the tree matches (repeatable)")
    args = ap.parse_args(argv)
    for root in (args.a, args.b):
        if not root.is_dir():
            print(f"compare: {root} is not a folder", file=sys.stderr)
            return 2
    start = time.perf_counter()
    results = compare_trees(args.a, args.b, tuple(args.ignore), Tolerance() if args.tolerance else None)
    seconds = time.perf_counter() - start
    for r in results:
        if r.status not in (IDENTICAL, IGNORED):
            print(f"{r.status:<16}  {r.path}" + (f"  {r.detail}" if r.detail else ""))
    print(summary_table(results))
    ok = passed(results, args.pixels, args.tolerance)
    counts = Counter(r.status for r in results)
    print(json.dumps(dict(a=str(args.a), b=str(args.b), ok=ok, files=len(results),
                          **{s.replace(" ", "_"): counts[s] for s in STATUSES}, seconds=round(seconds, 3),
                          not_identical={r.path: r.status for r in results if r.status not in (IDENTICAL, IGNORED)},
                          ignore=args.ignore, pixels=args.pixels, tolerance=args.tolerance)))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
