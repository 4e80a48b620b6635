"""Atomic writes: every output appears whole or not at all, so an interrupted run resumes cleanly. Checked reads:
a stage input that is truncated, corrupted or not the table it should be fails with one line naming the file
(`InputError`), never read as data."""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

# Parquet tables are written with a CRC32 checksum on every page and read with the checksums verified, so a flipped
# byte inside a page fails instead of being read as data (a truncated file has lost its footer: that fails too).
PAGE_CHECKSUMS = dict(write_page_checksum=True)


class InputError(ValueError):
    """A stage input that cannot be used. Its str is the whole message, one line that names the file
    (`anneuron: <file>: <what is wrong>`); a rule script's log ends with it (scripts/_common.py)."""

    def __init__(self, message: str):
        message = " ".join(message.split())  # one line, whatever the underlying error printed
        super().__init__(message if message.startswith("anneuron: ") else f"anneuron: {message}")


class UnreadableFileError(InputError):
    """A file that is not the readable Parquet table it should be: truncated (half-copied, a killed writer),
    corrupted (a flipped byte: footer, page checksum), not Parquet at all, or missing required columns."""


def _reason(err: BaseException) -> str:
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    return lines[0] if lines else type(err).__name__


@contextlib.contextmanager
def reading(path: str | Path) -> Iterator[None]:
    """Turn the errors Arrow raises on a bad file, inside the block, into one `UnreadableFileError` naming `path`."""
    import pyarrow as pa

    try:
        yield
    except FileNotFoundError as e:
        raise UnreadableFileError(f"{path}: no such file") from e
    except (pa.ArrowException, OSError, EOFError, UnicodeDecodeError) as e:  # the last: a flipped byte in a name
        raise UnreadableFileError(f"{path}: not a readable Parquet file (truncated or corrupted): {_reason(e)}") from e


def _same_kind(got, want) -> bool:
    """Types that hold the same kind of values (a wider or narrower integer or float, a large string or list)."""
    import pyarrow.types as t

    if got == want:
        return True
    for kind in (t.is_integer, t.is_floating, lambda x: t.is_string(x) or t.is_large_string(x), t.is_boolean):
        if kind(got) and kind(want):
            return True
    lists = (t.is_list, t.is_large_list)
    if any(f(got) for f in lists) and any(f(want) for f in lists):
        return _same_kind(got.value_type, want.value_type)
    return False


def _check_schema(path: str | Path, got, schema, columns: list[str] | None = None) -> None:
    """`got` (the file's Arrow schema) has every field of `schema` (or those among `columns`), each holding the same
    kind of values (`_same_kind`: tables written with a wider integer type still read)."""
    if schema is None:
        return
    for f in schema:
        if columns is not None and f.name not in columns:
            continue
        if f.name not in got.names:
            raise UnreadableFileError(f"{path}: not the expected table: no column {f.name!r} (has "
                                      f"{', '.join(got.names) or 'none'})")
        if not _same_kind(got.field(f.name).type, f.type):
            raise UnreadableFileError(f"{path}: not the expected table: column {f.name!r} is "
                                      f"{got.field(f.name).type}, expected {f.type}")


def open_parquet(path: str | Path, schema=None, columns: list[str] | None = None):
    """A `pyarrow.parquet.ParquetFile` whose footer has been read and checked, with page checksums verified on every
    read; `schema` (a pyarrow Schema, e.g. from anneuron.contracts): columns the file must have, with these types
    (extra columns allowed; with `columns`, only those among them). One-line `UnreadableFileError` otherwise. Reads
    from the returned file should run inside `reading(path)` (or use `read_parquet` / `iter_parquet`)."""
    import pyarrow.parquet as pq

    if not Path(path).is_file():
        raise UnreadableFileError(f"{path}: no such file")
    with reading(path):
        pf = pq.ParquetFile(path, page_checksum_verification=True)
        got = pf.schema_arrow
    if columns is not None:
        missing = [c for c in columns if c not in got.names]
        if missing:
            raise UnreadableFileError(f"{path}: not the expected table: no column {missing[0]!r} (has "
                                      f"{', '.join(got.names) or 'none'})")
    _check_schema(path, got, schema, columns)
    return pf


def read_parquet(path: str | Path, columns: list[str] | None = None, schema=None, filters=None):
    """The whole table (or `columns`; only the rows matching `filters`, as in `pyarrow.parquet.read_table`), checked
    as `open_parquet` checks it and fully decoded with page checksums verified: a bad file is one
    `UnreadableFileError`. Filters are applied after reading, not through the footer's statistics (a corrupted
    statistic would silently drop rows)."""
    import pyarrow.parquet as pq

    if filters is None:
        pf = open_parquet(path, schema, columns)
        with reading(path):
            return pf.read(columns=columns)
    terms = [t for conj in filters for t in (conj if isinstance(conj, list) else [conj])]  # DNF, or one AND
    needed = None if columns is None else list(dict.fromkeys([*columns, *(t[0] for t in terms)]))
    pf = open_parquet(path, schema, needed)
    with reading(path):
        table = pf.read(columns=needed).filter(pq.filters_to_expression(filters))
    return table if columns is None else table.select(columns)


def iter_parquet(path: str | Path, columns: list[str] | None = None, schema=None,
                 batch_size: int = 65536) -> Iterator:
    """Record batches of a table, streamed, checked as `read_parquet` checks it (a bad page fails when reached)."""
    pf = open_parquet(path, schema, columns)
    with reading(path):
        yield from pf.iter_batches(batch_size=batch_size, columns=columns)


def remove_stale_temporaries(path: str | Path) -> list[Path]:
    """Remove the temporaries a killed writer of `path` left beside it (`atomic_path`: the file
    `.NAME.XXXXXXXX.tmpSUFFIX`; `atomic_dir`: the folder `.NAME.XXXXXXXX.tmp`); returns what was removed. A stage's
    outputs have one writer at a time (its job), so this never touches a live write."""
    path = Path(path)
    if not path.parent.is_dir():
        return []
    stem = f".{glob.escape(path.name)}.*"
    removed = []
    for p in sorted(path.parent.glob(f"{stem}.tmp{glob.escape(path.suffix)}")):
        if p.is_file() and not p.is_symlink():
            p.unlink(missing_ok=True)
            removed.append(p)
    for p in sorted(path.parent.glob(f"{stem}.tmp")):
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    return removed


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds. Temporaries an earlier,
    killed write of `path` left behind are removed first (a SIGKILL runs no cleanup)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp" + path.suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Build a folder under a temporary name, then swap it in (stale temporaries removed first, as `atomic_path`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        yield tmp
        os.chmod(tmp, 0o755)
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def write_json(path: str | Path, obj) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def write_parquet(path: str | Path, table) -> None:
    """Write a pyarrow Table or polars DataFrame atomically."""
    import pyarrow.parquet as pq

    if hasattr(table, "to_arrow"):
        table = table.to_arrow()
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, **PAGE_CHECKSUMS)


def save_figure(fig, path_stem: str | Path) -> list[Path]:
    """Save a matplotlib figure as PNG and SVG atomically; returns both paths. `path_stem` has no suffix
    (or a .png suffix, which is replaced)."""
    import matplotlib.pyplot as plt

    stem = Path(path_stem)
    if stem.suffix in (".png", ".svg"):
        stem = stem.with_suffix("")
    out = []
    for ext in ("png", "svg"):
        target = stem.with_name(stem.name + "." + ext)
        with atomic_path(target) as tmp:
            fig.savefig(tmp, format=ext, dpi=130, bbox_inches="tight", metadata=_fig_metadata(ext))
        out.append(target)
    plt.close(fig)
    return out


def _fig_metadata(ext: str) -> dict:
    """Strip dates/versions so reruns give byte-identical figures."""
    return {"Date": None} if ext == "svg" else {"Software": None}
