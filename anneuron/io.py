"""Atomic writes: every output appears whole or not at all, so an interrupted run resumes cleanly. Checked reads:
a stage input that is truncated, corrupted or not the table it should be, and a model folder's damaged file (weights,
config, tokenizer: an interrupted download), fail with one line naming the file and what to do (`InputError`), never
read as data and never as a loader's traceback that names no file."""

from __future__ import annotations

import contextlib
import glob
import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

# Parquet tables are written with a CRC32 checksum on every page and read with the checksums verified, so a flipped
# byte inside a page fails instead of being read as data (a truncated file has lost its footer: that fails too).
PAGE_CHECKSUMS = dict(write_page_checksum=True)


class OneLineError(Exception):
    """A failure the user can act on, said in one line (what is wrong, what to do): a job that raises it ends its log
    with that line, naming the rule, instead of a traceback (anneuron.jobs). `detail` is the line without a leading
    `anneuron: `."""

    @property
    def detail(self) -> str:
        return " ".join(str(self).split()).removeprefix("anneuron: ")


class InputError(OneLineError, ValueError):
    """A stage input that cannot be used. Its str is the whole message, one line that names the file and what to do
    (`anneuron: <file>: <what is wrong>: <what to do>`); `detail` is that line without its `anneuron: `, for a caller
    that names its context (a rule script's log ends with `anneuron: <rule>: <detail>`: anneuron.jobs)."""

    def __init__(self, message: str):
        super().__init__("anneuron: " + " ".join(message.split()).removeprefix("anneuron: "))  # one line


# A Parquet table a stage reads is written by an earlier rule (or fetched, or yours): what to do about a bad one.
REBUILD = ("delete it and rerun (the workflow writes it again; a fetched file: delete the folder it was fetched into; "
           "a file you provided: replace it)")


class UnreadableFileError(InputError):
    """A file that is not the readable Parquet table it should be: truncated (half-copied, a killed writer),
    corrupted (a flipped byte: footer, page checksum), not Parquet at all, or missing required columns."""

    def __init__(self, message: str):
        super().__init__(f"{message}: {REBUILD}")


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


# Bytes per element of the safetensors dtypes (the format's own list); a tensor's data span must hold exactly its
# shape's elements.
SAFETENSORS_DTYPES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2, "F16": 2,
                      "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}
_MAX_SAFETENSORS_HEADER = 100 * 2**20  # the format's own limit


def model_remedy(folder: str | Path) -> str:
    """What to do about a damaged file of a model folder: it was downloaded, converted or built by a rule."""
    return f"delete {folder} and rerun (or fetch it again)"


def _damaged(path: Path, detail: str, remedy: str) -> InputError:
    return InputError(f"{path} is truncated or corrupted ({detail}; an interrupted download?): {remedy}")


def read_json(path: str | Path, remedy: str):
    """A JSON file parsed; a missing file or one that is not JSON (truncated, garbled) is one `InputError` naming it
    and `remedy`."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path} is missing: {remedy}")
    try:
        return json.loads(path.read_bytes())
    except ValueError as e:  # JSONDecodeError and UnicodeDecodeError both are
        raise _damaged(path, f"not JSON: {_reason(e)}", remedy) from e


def check_safetensors(path: str | Path, remedy: str) -> None:
    """What the safetensors loader checks before it reads a tensor, without reading one: an 8-byte little-endian
    header length, a JSON header, tensors' data spans that follow one another from 0 with exactly their shape's
    bytes, and a file exactly as long as the header and those spans. A truncated file fails here naming itself,
    not in the loader as `SafetensorError: incomplete metadata`."""
    path = Path(path)
    size = path.stat().st_size
    if size < 8:
        raise _damaged(path, f"{size} bytes, not even the header's length", remedy)
    with path.open("rb") as f:
        n = int.from_bytes(f.read(8), "little")
        if n > min(size - 8, _MAX_SAFETENSORS_HEADER):
            raise _damaged(path, f"a {n:,}-byte header announced, {size - 8:,} bytes follow", remedy)
        header = f.read(n)
    try:
        tensors = {k: v for k, v in json.loads(header).items() if k != "__metadata__"}
        spans = sorted((int(t["data_offsets"][0]), int(t["data_offsets"][1]), name, t["dtype"],
                        math.prod(int(d) for d in t["shape"])) for name, t in tensors.items())
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as e:
        raise _damaged(path, f"its header is not a safetensors header: {_reason(e)}", remedy) from e
    end = 0
    for start, stop, name, dtype, count in spans:
        nbytes = SAFETENSORS_DTYPES[dtype] * count if dtype in SAFETENSORS_DTYPES else stop - start
        if start != end or stop - start != nbytes:
            raise _damaged(path, f"tensor {name} spans bytes {start:,}-{stop:,}, expected {end:,}-{end + nbytes:,}",
                           remedy)
        end = stop
    if 8 + n + end != size:
        raise _damaged(path, f"{size:,} bytes where its header describes {8 + n + end:,}", remedy)


def _check_merges(path: Path, remedy: str) -> None:
    """A BPE merges file: UTF-8, one pair per line. (A file cut inside a line's second token still passes.)"""
    try:
        lines = path.read_bytes().decode("utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise _damaged(path, f"not UTF-8: {_reason(e)}", remedy) from e
    for i, line in enumerate(lines, 1):
        if line and not line.startswith("#version") and len(line.split(" ")) != 2:
            raise _damaged(path, f"line {i:,} is not a pair of tokens", remedy)


def check_model_config(folder: str | Path) -> None:
    """A model folder's small files, as any reader of them (the resolver, a tokenizer) needs them: config.json and
    every other JSON file (tokenizer.json, vocab.json, the weights index...) parse, merges.txt holds pairs. One
    `InputError` naming the file and what to do otherwise."""
    folder = Path(folder)
    remedy = model_remedy(folder)
    read_json(folder / "config.json", remedy)
    for path in sorted(folder.glob("*.json")):
        read_json(path, remedy)
    if (folder / "merges.txt").is_file():
        _check_merges(folder / "merges.txt", remedy)


def check_model_weights(folder: str | Path) -> None:
    """A model folder's weights, before a loader reads them: every shard the index lists is there, and every
    safetensors file is whole (`check_safetensors`). One `InputError` naming the file and what to do otherwise."""
    folder = Path(folder)
    remedy = model_remedy(folder)
    files = sorted(folder.glob("*.safetensors"))
    if not files and not list(folder.glob("*.bin")):
        raise InputError(f"{folder} holds no weights (no *.safetensors or *.bin file): {remedy}")
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        for shard in sorted(set(read_json(index, remedy).get("weight_map", {}).values())):
            if not (folder / shard).is_file():
                raise InputError(f"{folder / shard} is missing ({index.name} lists it): {remedy}")
    for path in files:
        check_safetensors(path, remedy)


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
