"""anneuron.io: checked reads. A stage input that is truncated (half-copied), corrupted (a flipped byte in the footer or
in a page) or not Parquet at all fails with one line naming the file, and is never read as data; a rule script's log
ends with that line."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from functools import partial
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from anneuron.contracts import SHARD, TOPK
from anneuron.data import Row, read_shard_rows, write_shards
from anneuron.dataset.max_examples import RowTokens, build_max_examples
from anneuron.io import (
    REBUILD,
    InputError,
    UnreadableFileError,
    iter_parquet,
    open_parquet,
    read_parquet,
    write_parquet,
)

BAD = "not a readable Parquet file (truncated or corrupted): "


@pytest.fixture
def shards(tmp_path) -> list[Path]:
    rows = [Row([50256] + list(range(100 + 7 * i, 130 + 7 * i)), [i] * 31, None) for i in range(12)]
    paths = [tmp_path / "tokens" / f"shard-{i}.parquet" for i in range(2)]
    write_shards(rows, paths)
    return paths


def footer(raw: bytes) -> tuple[int, int]:
    """(start, length) of the Parquet footer (the file metadata before the 4-byte length and `PAR1`)."""
    n = struct.unpack("<i", raw[-8:-4])[0]
    return len(raw) - 8 - n, n


def truncate(p: Path) -> None:
    raw = p.read_bytes()
    p.write_bytes(raw[:len(raw) // 2])


def flip(p: Path, at: int, width: int = 4) -> None:
    raw = bytearray(p.read_bytes())
    for j in range(at, at + width):
        raw[j] ^= 0xFF
    p.write_bytes(bytes(raw))


def flip_footer(where: str):
    def corrupt(p: Path) -> None:
        start, n = footer(p.read_bytes())
        flip(p, {"start": start, "middle": start + n // 2, "length": start + n}[where])
    return corrupt


def not_parquet(p: Path) -> None:
    p.write_text("chunk,tokens\n0,[50256, 1, 2]\n")


def page_end(p: Path, column: int) -> int:
    """The offset just past the pages of one column chunk of the first row group."""
    md = pq.ParquetFile(p).metadata.row_group(0).column(column)
    start = md.dictionary_page_offset if md.has_dictionary_page else md.data_page_offset
    return start + md.total_compressed_size


def page_byte(p: Path) -> None:
    """One byte near the end of the `tokens` pages: only the page checksum can tell (the footer is intact)."""
    flip(p, page_end(p, 1) - 3, width=1)


CORRUPTIONS = {
    "half": truncate, "footer_start": flip_footer("start"), "footer_middle": flip_footer("middle"),
    "footer_length": flip_footer("length"), "not_parquet": not_parquet, "empty": lambda p: p.write_bytes(b""),
    "page_checksum": page_byte,
}


def one_line(err: Exception, path: Path) -> str:
    msg = str(err)
    assert "\n" not in msg and msg.startswith(f"anneuron: {path}: "), msg
    return msg


@pytest.mark.parametrize("how", list(CORRUPTIONS))
def test_bad_token_shard_is_one_line_naming_it(shards, how):
    bad = shards[1]
    CORRUPTIONS[how](bad)
    readers = {
        "read_shard_rows": lambda: list(read_shard_rows(bad)),
        "RowTokens": lambda: RowTokens(shards),
        "read_parquet": lambda: read_parquet(bad, schema=SHARD),
        "iter_parquet": lambda: list(iter_parquet(bad, columns=["tokens"])),
    }
    for name, read in readers.items():
        with pytest.raises(UnreadableFileError) as e:
            read()
        msg = one_line(e.value, bad)
        assert msg.startswith(f"anneuron: {bad}: {BAD}") and len(msg) > len(f"anneuron: {bad}: {BAD}"), (name, msg)
    assert isinstance(e.value, InputError) and isinstance(e.value, ValueError)
    assert list(read_shard_rows(shards[0]))  # the good shard still reads


def test_no_single_byte_flip_is_read_as_other_rows(shards):
    """Every byte of a shard flipped in turn: the read fails (one line), or gives exactly the original rows (bytes
    no reader depends on, such as statistics). Page checksums catch the data pages, the footer's thrift and the schema
    check the rest."""
    p = shards[0]
    raw = p.read_bytes()
    want = [(r.tokens, r.docs, r.next_after) for r in read_shard_rows(p)]
    failed = same = 0
    for i in range(len(raw)):
        b = bytearray(raw)
        b[i] ^= 0xFF
        p.write_bytes(bytes(b))
        try:
            got = [(r.tokens, r.docs, r.next_after) for r in read_shard_rows(p)]
        except UnreadableFileError as e:
            one_line(e, p)
            failed += 1
            continue
        assert got == want, f"byte {i} flipped: read as other rows"
        same += 1
    assert failed > 0.8 * len(raw), (failed, same)


def test_wrong_table_and_missing_file(shards, tmp_path):
    other = tmp_path / "pairs.parquet"
    write_parquet(other, pa.table({"rank": [1], "layer": [0]}))
    with pytest.raises(UnreadableFileError, match=r"not the expected table: no column 'chunk'") as e:
        list(read_shard_rows(other))
    one_line(e.value, other)
    typed = tmp_path / "typed.parquet"
    write_parquet(typed, pa.table({"chunk": ["a"], "tokens": [[1]], "docs": [[0]], "next_after": [None]}))
    with pytest.raises(UnreadableFileError, match=r"column 'chunk' is string, expected int64"):
        read_parquet(typed, schema=SHARD)
    missing = tmp_path / "nope" / "shard-9.parquet"
    with pytest.raises(UnreadableFileError, match="no such file") as e:
        open_parquet(missing)
    one_line(e.value, missing)


def test_written_tables_carry_page_checksums(shards, tmp_path):
    p = tmp_path / "t.parquet"
    write_parquet(p, pa.table({"x": list(range(1000))}))
    for f in (p, shards[0]):
        raw = f.read_bytes()
        flip(f, page_end(f, 0) - 2, width=1)
        with pytest.raises(UnreadableFileError, match="CRC|checksum"):
            read_parquet(f)
        f.write_bytes(raw)
        assert read_parquet(f).num_rows


def topk_table(layers: int = 2) -> pa.Table:
    rows = [dict(layer=l, neuron=n, rank=1, value=1.0 + n, chunk=n % 3, pos=2, doc=n % 3)
            for l in range(layers) for n in range(4)]
    return pa.Table.from_pylist(rows, schema=TOPK)


@pytest.mark.parametrize("how", ["half", "footer_start", "not_parquet"])
def test_bad_topk_shard_names_it(shards, tmp_path, how):
    from anneuron.tokenizer import gpt2_tokenizer

    topk = [tmp_path / "topk" / f"shard-{i}.parquet" for i in range(2)]
    for p in topk:
        write_parquet(p, topk_table())
    good = build_max_examples(topk, shards, gpt2_tokenizer(), k=2, window=4)
    assert good.num_rows == 8
    CORRUPTIONS[how](topk[0])
    with pytest.raises(UnreadableFileError) as e:
        build_max_examples(topk, shards, gpt2_tokenizer(), k=2, window=4)
    assert one_line(e.value, topk[0]).startswith(f"anneuron: {topk[0]}: {BAD}")


def test_dataset_file_named(tmp_path):
    from anneuron.data import DataError, iter_documents

    p = tmp_path / "corpus.parquet"
    pq.write_table(pa.table({"text": ["a b c"] * 50}), p)
    truncate(p)
    with pytest.raises(UnreadableFileError) as e:
        list(iter_documents(str(p), text_column="text", split="train", max_docs=None))
    one_line(e.value, p)
    j = tmp_path / "corpus.jsonl"
    j.write_text('{"text": "a"}\n{"text": "b", "x\n')
    with pytest.raises(DataError, match=r"corpus.jsonl: line 2 is not JSON") as e:
        list(iter_documents(str(j), text_column="text", split="train", max_docs=None))
    assert str(e.value).startswith("anneuron: dataset ")


SCRIPT = """
import sys, types
from anneuron.jobs import setup_logging
snakemake = types.SimpleNamespace(log=[{log!r}], rule="tokenize")
setup_logging(snakemake)
print("tokenize:  50%|#####     | 1/2", end="\\r", file=sys.stderr)  # a progress bar leaves its line open
from anneuron.data import read_shard_rows
list(read_shard_rows({shard!r}))
"""


def test_rule_log_ends_with_the_one_line(shards, tmp_path):
    """What a rule script does with it (anneuron.jobs): exit status 1, the log's last line is the message, after
    the rule's name, and it is shown on the terminal too."""
    bad = shards[0]
    truncate(bad)
    log = tmp_path / "logs" / "job.log"
    log.parent.mkdir()
    code = SCRIPT.format(log=str(log), shard=str(bad))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, HF_HUB_OFFLINE="1"))
    assert r.returncode == 1, r.stderr
    last = log.read_text().splitlines()[-1]
    assert last.startswith(f"anneuron: tokenize: {bad}: {BAD}Parquet magic bytes not found"), log.read_text()[-2000:]
    assert last.endswith(f": {REBUILD}") and "Traceback" not in log.read_text()
    assert r.stderr.strip() == last


def test_a_killed_writes_temporaries_go_with_the_next_write(tmp_path):
    """A SIGKILL runs no `finally`: the next atomic write of the same output removes what the killed one left (and
    nothing of another output's)."""
    from anneuron.io import atomic_dir, atomic_path

    (tmp_path / ".t.parquet.k1ll3d00.tmp.parquet").write_bytes(b"PAR1 half")
    (tmp_path / ".t.parquet.k1ll3d00.tmp.json").write_text("{}")  # not t.parquet's: another suffix
    (tmp_path / ".other.parquet.k1ll3d00.tmp.parquet").write_bytes(b"PAR1")
    (tmp_path / ".figs.k1ll3d00.tmp").mkdir()
    (tmp_path / ".figs.k1ll3d00.tmp" / "a.png").write_bytes(b"png")
    write_parquet(tmp_path / "t.parquet", pa.table({"x": [1]}))
    with atomic_dir(tmp_path / "figs") as d:
        (d / "b.png").write_bytes(b"png")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".other.parquet.k1ll3d00.tmp.parquet", ".t.parquet.k1ll3d00.tmp.json", "figs", "t.parquet"]
    with atomic_path(tmp_path / "other.parquet") as t:
        t.write_bytes(b"x")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".other")]


def test_filtered_reads_match_pyarrow(tmp_path):
    """`filters` as pyarrow.parquet.read_table takes them, applied after a full, checked read."""
    p = tmp_path / "neurons.parquet"
    t = pa.table({"layer": [0, 0, 1, 1], "neuron": [3, 4, 5, 6], "standout": [True, False, True, True]})
    write_parquet(p, t)
    for columns, filters in [(["layer", "neuron"], [("standout", "=", True)]), (None, [("layer", "=", 1)]),
                             (["neuron"], [[("layer", "=", 0)], [("neuron", ">", 5)]])]:
        assert read_parquet(p, columns=columns, filters=filters).equals(
            pq.read_table(p, columns=columns, filters=filters))


# --- a model folder's files (an interrupted download) ----------------------------------------------------------------

def model_copy(tiny_dir: Path, tmp_path: Path) -> Path:
    import shutil

    return Path(shutil.copytree(tiny_dir, tmp_path / "models" / "x"))


def header_length(p: Path) -> int:
    return int.from_bytes(p.read_bytes()[:8], "little")


def rewrite_header(p: Path, edit) -> None:
    """The safetensors header's JSON text edited by `edit`, its length field kept consistent."""
    raw = p.read_bytes()
    n = header_length(p)
    header = edit(raw[8:8 + n].decode()).encode()
    p.write_bytes(len(header).to_bytes(8, "little") + header + raw[8 + n:])


SAFETENSORS_DAMAGE = {  # name -> how (each leaves a file the safetensors loader refuses)
    "empty": lambda p: p.write_bytes(b""),
    "cut_in_length": lambda p: p.write_bytes(p.read_bytes()[:5]),
    "cut_in_header": lambda p: p.write_bytes(p.read_bytes()[:8 + header_length(p) // 2]),
    "cut_after_header": lambda p: p.write_bytes(p.read_bytes()[:8 + header_length(p)]),
    "cut_in_data": truncate,
    "one_byte_short": lambda p: p.write_bytes(p.read_bytes()[:-1]),
    "one_byte_more": lambda p: p.write_bytes(p.read_bytes() + b"\0"),
    "length_field": lambda p: flip(p, 6, width=1),
    "header_not_json": lambda p: flip(p, 8, width=1),
    "offset_changed": lambda p: rewrite_header(p, lambda h: h.replace('"data_offsets":[0,', '"data_offsets":[4,', 1)),
    "shape_changed": lambda p: rewrite_header(p, lambda h: h.replace('"shape":[192]', '"shape":[191]', 1)),
}


@pytest.mark.parametrize("how", list(SAFETENSORS_DAMAGE))
def test_a_damaged_safetensors_file_is_named_as_the_loader_would_refuse_it(tiny_dir, tmp_path, how):
    """Against the reference, the safetensors loader: each damaged file is one it refuses (with a message that
    names no file), and `check_safetensors` refuses it first, naming it and what to do."""
    from safetensors.torch import load_file

    from anneuron.io import check_safetensors

    p = model_copy(tiny_dir, tmp_path) / "model.safetensors"
    check_safetensors(p, "REMEDY")  # whole: passes, as the loader does
    load_file(p)
    SAFETENSORS_DAMAGE[how](p)
    with pytest.raises(Exception) as loader:
        load_file(p)
    assert str(p) not in str(loader.value)
    with pytest.raises(InputError) as e:
        check_safetensors(p, "REMEDY")
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"anneuron: {p} is truncated or corrupted (") and msg.endswith(
        "; an interrupted download?): REMEDY"), msg


def test_the_loaders_name_a_truncated_download(tiny_dir, tmp_path):
    """load_model and load_engine (every job's way to a model) check the folder first: one line naming the file and
    what to do, in the words the job's log ends with (anneuron.jobs)."""
    from anneuron.jobs import failure_line

    from anneuron.dataset.engines import load_engine
    from anneuron.models import load_model

    folder = model_copy(tiny_dir, tmp_path)
    weights = folder / "model.safetensors"
    size = weights.stat().st_size
    truncate(weights)
    for load in (load_model, partial(load_engine, engine="auto")):
        with pytest.raises(InputError) as e:
            load(str(folder), device="cpu", dtype="float32")
        assert failure_line(e.value, "congruence") == (
            f"anneuron: congruence: {weights} is truncated or corrupted ({size // 2:,} bytes where its header "
            f"describes {size:,}; an interrupted download?): delete {folder} and rerun (or fetch it again)")


@pytest.mark.parametrize("damage", ["garbled_config", "no_config", "truncated_tokenizer", "truncated_vocab",
                                    "cut_merges", "missing_shard", "no_weights"])
def test_a_damaged_model_folder_names_its_file(tiny_dir, tmp_path, damage):
    """Config, tokenizer and weights index: the resolver (which the Snakefile runs while parsing) and the loaders
    refuse the folder with one line naming the file; the config check turns it into its own one line."""
    from anneuron.config import ConfigError, resolve_models
    from anneuron.io import check_model_config, check_model_weights
    from anneuron.resolve import check_model_files, resolve

    folder = model_copy(tiny_dir, tmp_path)
    check_model_files(str(folder))  # whole: passes
    if damage == "garbled_config":
        culprit = folder / "config.json"
        culprit.write_bytes(b"\x89\xff{" + culprit.read_bytes()[3:])
    elif damage == "no_config":
        culprit = folder / "config.json"
        culprit.unlink()
    elif damage == "truncated_tokenizer":
        culprit = folder / "tokenizer.json"
        truncate(culprit)
    elif damage == "truncated_vocab":
        culprit = folder / "vocab.json"
        culprit.write_text('{"!": 0, "\\"": 1, "#')
    elif damage == "cut_merges":
        culprit = folder / "merges.txt"
        culprit.write_text("#version: 0.2\nĠ t\nĠ a\nh e\nĠt he\nĠ")
    elif damage == "missing_shard":
        culprit = folder / "model-00002-of-00002.safetensors"
        (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {
            "a": "model.safetensors", "b": culprit.name}}))
    else:
        culprit = folder
        (folder / "model.safetensors").unlink()
    check = check_model_weights if damage in ("missing_shard", "no_weights") else check_model_config
    with pytest.raises(InputError) as e:
        check(folder)
    with pytest.raises(InputError) as via_loader:
        check_model_files(str(folder))
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"anneuron: {culprit} ") and str(via_loader.value) == msg
    assert msg.endswith(f": delete {folder} and rerun (or fetch it again)"), msg
    if check is check_model_config and damage != "no_config":  # (without config.json the resolver says so itself)
        with pytest.raises(InputError) as parsed:
            resolve(str(folder))
        assert str(parsed.value) == msg
        with pytest.raises(ConfigError) as cfg:
            resolve_models({"models": [str(folder)], "revisions": {}})
        assert str(cfg.value) == f"config: models: {e.value.detail}"
