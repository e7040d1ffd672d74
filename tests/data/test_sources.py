import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lmforge.core.errors import DataError
from lmforge.data.config import SourceConfig
from lmforge.data.sources import LoadStats, load_source


def load(**kw):
    stats = LoadStats()
    return load_source(SourceConfig(**kw), stats), stats


def test_txt_units(tmp_path):
    f = tmp_path / "a.txt"
    f.write_text("first line\nsecond line\n  \nnew paragraph\n", encoding="utf-8")
    assert [d.text for d in load(path=f)[0]] == ["first line\nsecond line\n  \nnew paragraph\n"]
    lines = load(path=f, txt_unit="line")[0]
    assert [d.text for d in lines] == ["first line", "second line", "new paragraph"]
    assert [d.meta["id"] for d in lines] == ["0", "1", "3"]
    assert [d.text for d in load(path=f, txt_unit="paragraph")[0]] == [
        "first line\nsecond line",
        "new paragraph",
    ]


def test_directory_recurses_in_sorted_order_skipping_hidden_and_other_files(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / ".cache").mkdir()
    (tmp_path / "b.txt").write_text("b")
    (tmp_path / "sub" / "a.txt").write_text("a")
    (tmp_path / "a.txt").write_text("a0")
    (tmp_path / ".cache" / "c.txt").write_text("hidden")
    (tmp_path / "notes.md").write_text("ignored")
    docs, stats = load(path=tmp_path)
    assert [d.meta["source"] for d in docs] == ["a.txt", "b.txt", "sub/a.txt"]
    assert stats.files == 3 and stats.documents == 3


def test_limit_stops_reading_early(tmp_path):
    for name in "abc":
        (tmp_path / f"{name}.txt").write_text("1\n2\n3\n")
    docs, stats = load(path=tmp_path, txt_unit="line", limit=4)
    assert [(d.meta["source"], d.text) for d in docs] == [
        ("a.txt", "1"),
        ("a.txt", "2"),
        ("a.txt", "3"),
        ("b.txt", "1"),
    ]
    assert stats.files == 2 and stats.documents == 4


def test_jsonl_with_labels_empty_text_and_multi_label(tmp_path):
    f = tmp_path / "d.jsonl"
    rows = [{"body": "好评", "y": 1}, {"body": "", "y": "neg"}, {"body": "x", "y": [1, 2]}]
    f.write_text("\n\n".join(json.dumps(r, ensure_ascii=False) for r in rows), encoding="utf-8")
    docs, _ = load(path=f, text_column="body", label_column="y")
    assert [(d.text, d.label) for d in docs] == [("好评", "1"), ("", "neg"), ("x", ["1", "2"])]
    assert [d.meta for d in docs][0] == {"source": "d.jsonl", "id": "0"}


def test_jsonl_errors_name_the_line_and_the_keys(tmp_path):
    f = tmp_path / "d.jsonl"
    f.write_text('{"body": "a", "y": 1}\n')
    with pytest.raises(DataError, match="d.jsonl:1 has no column 'text'; its columns are: body, y"):
        load(path=f)
    f.write_text('{"text": "ok"}\n{not json}\n')
    with pytest.raises(DataError, match=r"d\.jsonl:2 is not valid JSON"):
        load(path=f)


def test_json_array_file(tmp_path):
    f = tmp_path / "d.json"
    f.write_text(json.dumps([{"text": "a"}, {"text": "b"}], indent=2))
    assert [d.text for d in load(path=f)[0]] == ["a", "b"]


def test_csv_with_quoted_newlines_bom_and_missing_column(tmp_path):
    c = tmp_path / "d.csv"
    c.write_text('\ufeffreview,stars\n"great,\nreally",5\nbad,1\n', encoding="utf-8")
    docs, _ = load(path=c, text_column="review", label_column="stars")
    assert [(d.text, d.label) for d in docs] == [("great,\nreally", "5"), ("bad", "1")]
    with pytest.raises(
        DataError, match="d.csv has no column 'text'; its columns are: review, stars"
    ):
        load(path=c)
    with pytest.raises(DataError, match="has no column 'label'"):
        load(path=c, text_column="review", label_column="label")


def test_long_csv_fields_load(tmp_path):
    c = tmp_path / "long.csv"
    c.write_text("text\n" + "x" * 200_000 + "\n")
    assert len(load(path=c)[0][0].text) == 200_000


def test_tsv(tmp_path):
    t = tmp_path / "d.tsv"
    t.write_text("text\tlabel\nhello, world\tpos\n", encoding="utf-8")
    docs, _ = load(path=t, label_column="label")
    assert [(d.text, d.label) for d in docs] == [("hello, world", "pos")]


def test_parquet_with_labels_and_missing_column_error(tmp_path):
    p = tmp_path / "d.parquet"
    table = pa.table({"content": ["a", None], "label": [1, 2], "tags": [["x"], ["y", "z"]]})
    pq.write_table(table, p)
    docs, _ = load(path=p, text_column="content", label_column="label")
    assert [(d.text, d.label) for d in docs] == [("a", "1"), ("", "2")]
    assert [d.label for d in load(path=p, text_column="content", label_column="tags")[0]] == [
        ["x"],
        ["y", "z"],
    ]
    with pytest.raises(
        DataError, match="has no column 'text'; its columns are: content, label, tags"
    ):
        load(path=p)


def test_undecodable_bytes_are_counted_not_fatal(tmp_path):
    f = tmp_path / "latin.txt"
    f.write_bytes("caf\u00e9 costs \u00a35".encode("latin-1"))
    docs, stats = load(path=f)
    assert docs[0].text == "caf\ufffd costs \ufffd5"
    assert stats.undecodable_bytes == 2 and stats.undecodable_files == ["latin.txt"]
    docs, stats = load(path=f, encoding="latin-1")
    assert docs[0].text == "café costs £5" and stats.undecodable_bytes == 0


def test_replacement_characters_already_in_the_file_are_not_counted(tmp_path):
    f = tmp_path / "a.txt"
    f.write_bytes("ok \ufffd ".encode() + b"\xff")
    _, stats = load(path=f)
    assert stats.undecodable_bytes == 1


def test_unsupported_extension_and_empty_directory(tmp_path):
    f = tmp_path / "x.docx"
    f.write_text("x")
    with pytest.raises(DataError, match=r"cannot tell the format.*\.txt, \.jsonl"):
        load(path=f)
    assert [d.text for d in load(path=f, format="txt")[0]] == ["x"]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="holds no data files"):
        load(path=empty)


def test_unreadable_file_is_named(tmp_path, monkeypatch):
    f = tmp_path / "secret.txt"
    f.write_text("x")

    def denied(self):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "read_bytes", denied)
    with pytest.raises(DataError, match=r"cannot read .*secret\.txt: Permission denied"):
        load(path=f)


def test_builtin_source_counts_documents():
    docs, stats = load(builtin="bbc-news", limit=7)
    assert len(docs) == 7 and stats.documents == 7 and stats.files == 0
