"""The manifest (anneuron.report.manifest): every stage config file of a model in one JSON and one page."""

from __future__ import annotations

import json
from html.parser import HTMLParser

from anneuron.report.manifest import manifest, manifest_html

HEAD = ["file", "stage", "device", "dtype", "model@revision", "dataset@revision", "pipeline commit", "versions",
        "config"]


class _Table(HTMLParser):
    """The page's title, header cells and rows of cell texts (entities decoded)."""

    def __init__(self):
        super().__init__()
        self.title, self.head, self.rows, self._tag = "", [], [], None

    def handle_starttag(self, tag, attrs):
        self._tag = tag
        if tag == "tr":
            self.rows.append([])
        elif tag == "td":
            self.rows[-1].append("")

    def handle_data(self, data):
        if self._tag == "title":
            self.title += data
        elif self._tag == "th":
            self.head.append(data)
        elif self._tag == "td":
            self.rows[-1][-1] += data

    def handle_endtag(self, tag):
        self._tag = None


def _parse(page: str) -> _Table:
    t = _Table()
    t.feed(page)
    t.rows = [r for r in t.rows if r]  # the header row holds th cells only
    return t


def _write(path, record: dict) -> str:
    path.write_text(json.dumps(record))
    return str(path)


def test_one_row_per_config_file_with_its_provenance(tmp_path):
    fetched = dict(stage="CongruenceConfig", config={"top_k": 16, "basis": "we"},
                   provenance=dict(device="cpu", dtype="float32", pipeline_commit="abc123",
                                   versions={"torch": "2.13.0"},
                                   model=dict(name="resources/models/m", repo_id="org/model", revision=None,
                                              commit="0123456789abcdef0123"),
                                   dataset=dict(name="pile-10k")))
    files = [_write(tmp_path / "weights.config.json", fetched), _write(tmp_path / "bare.config.json", {})]
    man = manifest(files)
    assert man == {files[0]: fetched, files[1]: {}}
    page = _parse(manifest_html(man, "gpt2-large"))
    assert page.title == "manifest: gpt2-large" and page.head == HEAD
    assert page.rows == [
        [files[0], "CongruenceConfig", "cpu", "float32", "org/model@0123456789ab", "pile-10k", "abc123",
         '{"torch": "2.13.0"}', '{"basis": "we", "top_k": 16}'],
        [files[1], "", "–", "–", "–", "–", "–", "{}", "{}"],  # no provenance: dashes, never a crash
    ]


def test_values_with_markup_are_escaped(tmp_path):
    rec = dict(stage="<b>stage</b>", config={"prompt": "a < b & c"},
               provenance=dict(device="cpu", model=dict(name="m&<x>"), pipeline_commit="it's"))
    page = manifest_html(manifest([_write(tmp_path / "odd.config.json", rec)]), "<m&m>")
    assert "<b>" not in page and "<x>" not in page and "<m&m>" not in page
    assert "<td>&lt;b&gt;stage&lt;/b&gt;</td>" in page and "<td>m&amp;&lt;x&gt;</td>" in page
    assert "<td>{&quot;prompt&quot;: &quot;a &lt; b &amp; c&quot;}</td>" in page and "<td>it&#x27;s</td>" in page
    parsed = _parse(page)
    assert parsed.title == "manifest: <m&m>"
    assert parsed.rows[0][1] == "<b>stage</b>" and parsed.rows[0][-1] == '{"prompt": "a < b & c"}'


def test_an_empty_manifest_is_a_page_with_an_empty_table():
    page = manifest_html({}, "m")
    assert page.startswith("<!DOCTYPE html>") and page.endswith("<tbody></tbody></table></body></html>\n")
    assert _parse(page).rows == []
