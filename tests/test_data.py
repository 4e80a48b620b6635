import json

import pyarrow.parquet as pq
import pytest

from anneuron.data import DataError, chunk_rows, iter_documents, read_shard_rows, tokenize_dataset

BOS = EOS = 0
DOCS = [[1, 2, 3], [4, 5], [], [6, 7, 8, 9, 10]]
ALL_TEXTS = dict(text_column="text", split="train", max_docs=None)  # every document's `text`


def rows(*args, max_tokens=None):
    return [(r.tokens, r.docs, r.next_after)
            for r in chunk_rows(DOCS, *args, bos=BOS, eos=EOS, max_tokens=max_tokens)]


def test_concat_exact_rows():
    # stream: 1 2 3 E 4 5 E E 6 7 8 9 10 (separators belong to the document they end)
    assert rows(5, "concat") == [
        ([0, 1, 2, 3, 0], [0, 0, 0, 0, 0], 4),
        ([0, 4, 5, 0, 0], [1, 1, 1, 1, 2], 6),
        ([0, 6, 7, 8, 9], [3, 3, 3, 3, 3], 10),
        ([0, 10], [3, 3], None),
    ]


def test_truncate_exact_rows():
    assert rows(3, "truncate") == [
        ([0, 1, 2], [0, 0, 0], 3),
        ([0, 4, 5], [1, 1, 1], None),
        ([0, 6, 7], [3, 3, 3], 8),
    ]


def test_max_tokens_caps_total():
    out = rows(5, "concat", max_tokens=7)
    assert sum(len(t) for t, _, _ in out) == 7
    assert out[-1] == ([0, 4], [1, 1], 5)


def test_bad_args():
    with pytest.raises(DataError):
        rows(1, "concat")
    with pytest.raises(DataError):
        rows(4, "bogus")


@pytest.mark.parametrize("n_shards", [1, 3])
def test_shards_lose_no_token(tmp_path, n_shards):
    from anneuron.demos.planted import write_demo_corpus
    from anneuron.tokenizer import gpt2_tokenizer

    corpus = tmp_path / "c.parquet"
    write_demo_corpus(corpus, n_docs=20, seed=3)
    tok = gpt2_tokenizer()
    paths = [tmp_path / f"shard-{i}.parquet" for i in range(n_shards)]
    stats = tokenize_dataset(str(corpus), tok, paths, seq_len=32, chunking="concat", max_tokens=None, **ALL_TEXTS,
                             manifest=tmp_path / "m.json")
    assert json.loads((tmp_path / "m.json").read_text())["rows"] == stats["rows"]
    got = {}
    for i, p in enumerate(paths):
        t = pq.read_table(p)
        chunks = t.column("chunk").to_pylist()
        assert chunks == sorted(chunks) and all(c % n_shards == i for c in chunks)
        for c, r in zip(chunks, read_shard_rows(p)):
            got[c] = r
    assert sorted(got) == list(range(stats["rows"]))
    stream = [t for c in sorted(got) for t in got[c].tokens[1:]]
    docs = tok(list(iter_documents(str(corpus), **ALL_TEXTS)), add_special_tokens=False)["input_ids"]
    want = [t for i, d in enumerate(docs) for t in ([tok.eos_token_id] if i else []) + d]
    assert stream == want
    assert all(len(r.tokens) <= 32 and r.tokens[0] == tok.bos_token_id for r in got.values())


def test_jsonl_and_missing(tmp_path):
    f = tmp_path / "d.jsonl"
    f.write_text(json.dumps({"text": "a b"}) + "\n" + json.dumps({"text": "c"}) + "\n")
    assert list(iter_documents(str(f), **ALL_TEXTS)) == ["a b", "c"]
    assert list(iter_documents(str(f), **dict(ALL_TEXTS, max_docs=1))) == ["a b"]
    with pytest.raises(DataError, match="no key"):
        list(iter_documents(str(f), **dict(ALL_TEXTS, text_column="body")))
    with pytest.raises(DataError, match="no such file"):
        list(iter_documents(str(tmp_path / "nope.parquet"), **ALL_TEXTS))
    f.write_bytes(json.dumps({"text": "a b"}).encode() + b"\n" + b'{"text": "\xff\xfe"}\n')  # a byte not UTF-8
    with pytest.raises(DataError, match=r"line 2 is not JSON"):
        list(iter_documents(str(f), **ALL_TEXTS))
