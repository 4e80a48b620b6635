"""Documents in, token shards out (chunking: docs/science.md; the token shard: docs/contracts.md), streaming, never
the whole dataset in RAM."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import pyarrow as pa
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from anneuron.contracts import SHARD
from anneuron.io import PAGE_CHECKSUMS, InputError, atomic_path, iter_parquet, open_parquet, write_json

SHARD_SCHEMA = SHARD  # docs/contracts.md


class DataError(InputError):
    """A dataset or a data setting that cannot be used (one line: anneuron.io.InputError)."""


@dataclass(frozen=True)
class Row:
    """One model input row: BOS first; `docs[j]` is the source document of `tokens[j]` (BOS takes its row's
    first document); `next_after` the stream's token after the last one (None at the end)."""

    tokens: list[int]
    docs: list[int]
    next_after: int | None


def iter_documents(dataset: str, *, text_column: str, split: str, max_docs: int | None) -> Iterator[str]:
    """Texts from a hub dataset (streamed), a Parquet/JSONL file, or a folder of them, in a fixed order."""
    path = Path(dataset).expanduser()
    if path.exists():
        texts = _local_texts(path, text_column)
    elif path.suffix in (".parquet", ".jsonl", ".json") or dataset.startswith(("/", "./", "resources/")):
        raise DataError(f"dataset {dataset}: no such file or folder")
    else:
        texts = _hub_texts(dataset, text_column, split)
    for i, text in enumerate(texts):
        if max_docs is not None and i >= max_docs:
            return
        yield text


def _local_texts(path: Path, column: str) -> Iterator[str]:
    # hidden files are skipped: an interrupted copy or write leaves its temporary there (.NAME.XXXX.tmp.parquet)
    files = sorted(p for p in path.rglob("*") if p.suffix in (".parquet", ".jsonl") and not p.name.startswith(".")
                   ) if path.is_dir() else [path]
    if not files:
        raise DataError(f"dataset {path}: no .parquet or .jsonl files in it")
    for f in files:
        if f.suffix == ".parquet":
            names = open_parquet(f).schema_arrow.names  # a truncated or corrupted file fails here, naming it
            if column not in names:
                raise DataError(f"dataset {f}: no column {column!r} (has {', '.join(names)})")
            for batch in iter_parquet(f, columns=[column], batch_size=1024):
                yield from (t or "" for t in batch.column(0).to_pylist())
        else:
            with open(f, "rb") as fh:  # bytes: a corrupted byte is a bad line, not an undecodable file
                for n, line in enumerate(fh, 1):
                    if line.strip():
                        try:
                            obj = json.loads(line)
                        except ValueError as e:  # JSONDecodeError, or UnicodeDecodeError for bytes that are not UTF-8
                            raise DataError(f"dataset {f}: line {n} is not JSON (truncated or corrupted): {e}") from e
                        if column not in obj:
                            raise DataError(f"dataset {f}: line {n} has no key {column!r}")
                        yield obj[column] or ""


def _hub_texts(name: str, column: str, split: str) -> Iterator[str]:
    import datasets

    try:
        ds = datasets.load_dataset(name, split=split, streaming=True)
        for ex in ds:
            yield ex[column]
    except (ConnectionError, OSError, FileNotFoundError) as e:
        raise DataError(
            f"dataset {name}: cannot be streamed from the Hugging Face hub ({type(e).__name__}); give a local "
            "Parquet/JSONL file or folder with a text column, or pre-fill the HF cache and set HF_HUB_OFFLINE=1"
        ) from e


def tokenize_documents(texts: Iterable[str], tokenizer, batch: int = 256) -> Iterator[list[int]]:
    """Token ids per document (no BOS), tokenizing in batches with the fast tokenizer."""
    buf: list[str] = []
    for t in texts:
        buf.append(t)
        if len(buf) == batch:
            yield from tokenizer(buf, add_special_tokens=False)["input_ids"]
            buf = []
    if buf:
        yield from tokenizer(buf, add_special_tokens=False)["input_ids"]


def chunk_rows(docs: Iterable[list[int]], seq_len: int, mode: str, bos: int, eos: int, *,
               max_tokens: int | None) -> Iterator[Row]:
    """Cut documents into model rows of at most `seq_len` tokens, BOS included (docs/science.md "Chunking").

    concat: documents joined with EOS into one stream, cut into rows of BOS + seq_len-1 stream tokens; the last
    partial row is kept, so no text is dropped. truncate: one row per document, BOS + its first seq_len-1 tokens.
    `max_tokens` caps the total number of tokens in the rows (BOS included).
    """
    if seq_len < 2:
        raise DataError(f"data.seq_len must be at least 2, got {seq_len}")
    budget = max_tokens if max_tokens is not None else float("inf")
    body = seq_len - 1

    def emit(toks: list[int], ds: list[int], nxt: int | None) -> Iterator[Row]:
        nonlocal budget
        if budget <= 1 or not toks:
            return
        keep = int(min(len(toks), budget - 1))
        if keep < len(toks):
            nxt = toks[keep]
        budget -= keep + 1
        yield Row([bos] + toks[:keep], [ds[0]] + ds[:keep], nxt)

    if mode == "truncate":
        for d, toks in enumerate(docs):
            if budget <= 1:
                return
            if toks:
                yield from emit(toks[:body], [d] * min(len(toks), body), toks[body] if len(toks) > body else None)
        return
    if mode != "concat":
        raise DataError(f"data.chunking must be concat or truncate, got {mode!r}")
    toks: list[int] = []
    ds: list[int] = []
    for d, doc in enumerate(docs):
        if budget <= 1:
            return
        if d > 0:
            toks.append(eos)
            ds.append(d - 1)  # the separator belongs to the document it ends
        toks.extend(doc)
        ds.extend([d] * len(doc))
        while len(toks) > body:  # a full row, and we know the token after it
            yield from emit(toks[:body], ds[:body], toks[body])
            del toks[:body], ds[:body]
    yield from emit(toks, ds, None)


def write_shards(rows: Iterable[Row], out_paths: list[str | Path], rows_per_group: int = 256) -> dict:
    """Round-robin rows over the shards (row `chunk` goes to shard chunk % n), streaming, atomically.

    Returns counts for the manifest. Row order inside a shard is by `chunk`.
    """
    n = len(out_paths)
    tmps = [atomic_path(p) for p in out_paths]
    tmp_paths = [t.__enter__() for t in tmps]
    try:
        writers = [pq.ParquetWriter(p, SHARD_SCHEMA, **PAGE_CHECKSUMS) for p in tmp_paths]
        buffers: list[list[tuple]] = [[] for _ in range(n)]
        stats = {"rows": 0, "tokens": 0, "shards": n, "rows_per_shard": [0] * n}

        def flush(i: int) -> None:
            if buffers[i]:
                c, t, d, x = zip(*buffers[i])
                writers[i].write_table(pa.table(
                    {"chunk": list(c), "tokens": list(t), "docs": list(d), "next_after": list(x)},
                    schema=SHARD_SCHEMA))
                buffers[i] = []

        bar = tqdm(rows, desc="tokenize", unit=" rows", mininterval=2)
        for chunk, row in enumerate(bar):
            i = chunk % n
            buffers[i].append((chunk, row.tokens, row.docs, row.next_after))
            stats["rows"] += 1
            stats["tokens"] += len(row.tokens)
            stats["rows_per_shard"][i] += 1
            if len(buffers[i]) >= rows_per_group:
                flush(i)
        for i in range(n):
            flush(i)
            writers[i].close()
    except BaseException as e:
        for t in tmps:
            t.__exit__(type(e), e, None)
        raise
    for t in tmps:
        t.__exit__(None, None, None)
    return stats


def tokenize_dataset(dataset: str, tokenizer, out_paths: list[str | Path], *, seq_len: int, chunking: str,
                     text_column: str, split: str, max_docs: int | None, max_tokens: int | None,
                     manifest: str | Path | None = None) -> dict:
    """The `tokenize` stage: dataset -> token shards (+ a JSON manifest of counts and settings)."""
    docs = tokenize_documents(iter_documents(dataset, text_column=text_column, split=split, max_docs=max_docs),
                              tokenizer)
    bos = tokenizer.bos_token_id
    eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else bos
    rows = chunk_rows(docs, seq_len, chunking, bos=bos, eos=eos, max_tokens=max_tokens)
    stats = write_shards(rows, out_paths)
    stats.update(dataset=dataset, seq_len=seq_len, chunking=chunking, max_docs=max_docs, max_tokens=max_tokens)
    if manifest is not None:
        write_json(manifest, stats)
    return stats


def read_shard_rows(path: str | Path) -> Iterator[Row]:
    """Rows of one token shard, in chunk order, streamed by row group. A truncated or corrupted shard, or a file
    that is not a token shard, is one `anneuron.io.UnreadableFileError` naming it, never rows."""
    for batch in iter_parquet(path, schema=SHARD_SCHEMA, batch_size=256):
        d = batch.to_pydict()
        for t, ds, x in zip(d["tokens"], d["docs"], d["next_after"]):
            yield Row(t, ds, x)
