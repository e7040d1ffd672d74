import json

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
    f.write_text("first line\nsecond line\n\nnew paragraph\n", encoding="utf-8")
    assert [d.text for d in load(path=f)[0]] == ["first line\nsecond line\n\nnew paragraph\n"]
    assert [d.text for d in load(path=f, txt_unit="line")[0]] == [
        "first line",
        "second line",
        "new paragraph",
    ]
    assert [d.text for d in load(path=f, txt_unit="paragraph")[0]] == [
        "first line\nsecond line",
        "new paragraph",
    ]


def test_directory_recurses_in_sorted_order_with_limit(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "b.txt").write_text("b")
    (tmp_path / "sub" / "a.txt").write_text("a")
    (tmp_path / "a.txt").write_text("a0")
    (tmp_path / "notes.md").write_text("ignored")
    docs, stats = load(path=tmp_path)
    assert [d.meta["source"] for d in docs] == ["a.txt", "b.txt", "sub/a.txt"]
    assert stats.files == 3 and stats.documents == 3
    assert len(load(path=tmp_path, limit=2)[0]) == 2


def test_jsonl_with_labels_and_errors(tmp_path):
    f = tmp_path / "d.jsonl"
    f.write_text(
        json.dumps({"body": "好评", "y": 1}, ensure_ascii=False)
        + "\n\n"
        + json.dumps({"body": "x", "y": [1, 2]})
        + "\n",
        encoding="utf-8",
    )
    docs, _ = load(path=f, text_column="body", label_column="y")
    assert [(d.text, d.label) for d in docs] == [("好评", "1"), ("x", ["1", "2"])]
    with pytest.raises(DataError, match="has no column 'text'; its columns are: body, y"):
        load(path=f)
    f.write_text('{"text": "ok"}\n{not json}\n')
    with pytest.raises(DataError, match=r"d.jsonl:2 is not valid JSON"):
        load(path=f)


def test_csv_and_tsv(tmp_path):
    c = tmp_path / "d.csv"
    c.write_text('review,stars\n"great, really",5\nbad,1\n', encoding="utf-8")
    docs, _ = load(path=c, text_column="review", label_column="stars")
    assert [(d.text, d.label) for d in docs] == [("great, really", "5"), ("bad", "1")]
    with pytest.raises(DataError, match="has no column 'text'; its columns are: review, stars"):
        load(path=c)
    t = tmp_path / "d.tsv"
    t.write_text("text\tlabel\nhello\tpos\n", encoding="utf-8")
    assert [(d.text, d.label) for d in load(path=t, label_column="label")[0]] == [("hello", "pos")]


def test_parquet_with_missing_column_error(tmp_path):
    p = tmp_path / "d.parquet"
    pq.write_table(pa.table({"content": ["a", "b"], "label": ["x", "y"]}), p)
    docs, _ = load(path=p, text_column="content", label_column="label")
    assert [(d.text, d.label) for d in docs] == [("a", "x"), ("b", "y")]
    with pytest.raises(DataError, match="has no column 'text'; its columns are: content, label"):
        load(path=p)


def test_undecodable_bytes_are_counted_not_fatal(tmp_path):
    f = tmp_path / "latin.txt"
    f.write_bytes("caf\u00e9 costs \u00a35".encode("latin-1"))
    docs, stats = load(path=f)
    assert docs[0].text == "caf\ufffd costs \ufffd5"
    assert stats.undecodable_bytes == 2 and stats.undecodable_files == [str(f)]
    docs, stats = load(path=f, encoding="latin-1")
    assert docs[0].text == "café costs £5" and stats.undecodable_bytes == 0


def test_unsupported_extension_and_empty_directory(tmp_path):
    f = tmp_path / "x.docx"
    f.write_text("x")
    with pytest.raises(DataError, match="cannot tell the format"):
        load(path=f)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="holds no supported files"):
        load(path=empty)


def test_builtin_source_counts_documents():
    docs, stats = load(builtin="bbc-news", limit=7)
    assert len(docs) == 7 and stats.documents == 7
