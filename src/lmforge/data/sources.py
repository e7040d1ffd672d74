"""Reading a recipe's data sources: built-ins, or local .txt/.jsonl/.csv/.tsv/.parquet files.

Every document gets ``meta["source"]`` (file path relative to the source directory) and,
for records, ``meta["id"]`` (its 0-based index in the file); error messages use 1-based
line numbers, as editors do.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

from lmforge.core.errors import DataError
from lmforge.data.config import SourceConfig
from lmforge.data.document import Document
from lmforge.data.images import (
    attach_images,
    is_image_folder,
    pixel_rows,
    read_image_folder,
    uniform_channels,
)

FORMATS = {
    ".txt": "txt",
    ".jsonl": "jsonl",
    ".json": "jsonl",
    ".csv": "csv",
    ".tsv": "csv",
    ".parquet": "parquet",
}
_SUPPORTED = ", ".join(FORMATS)
_BLANK_LINE = re.compile(r"\n[ \t]*\n")


@dataclass
class LoadStats:
    """What loading one source found; saved per source in the data stage's stats.json."""

    files: int = 0
    documents: int = 0
    undecodable_bytes: int = 0  # replaced with U+FFFD, counted rather than fatal
    undecodable_files: list[str] = field(default_factory=list)


def read_text(path: Path, encoding: str, stats: LoadStats, name: str | None = None) -> str:
    """Decode a file; undecodable bytes become U+FFFD and are counted, never fatal."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror}") from None
    try:
        text = raw.decode(encoding)
    except LookupError:
        raise DataError(
            f"unknown encoding {encoding!r} for {path}; set encoding in the source"
        ) from None
    except UnicodeDecodeError:
        text = raw.decode(encoding, errors="replace")
        # count only the replacement characters decoding introduced, not ones in the file
        bad = text.count("\ufffd") - raw.decode(encoding, errors="ignore").count("\ufffd")
        stats.undecodable_bytes += max(bad, 1)
        stats.undecodable_files.append(name or str(path))
    return text.removeprefix("\ufeff")  # a BOM would otherwise glue onto the first column name


def _format_of(path: Path, cfg: SourceConfig) -> str:
    if cfg.format != "auto":
        return cfg.format
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise DataError(
            f"cannot tell the format of {path} from its extension; supported: {_SUPPORTED} "
            "(or set format in the source)"
        )
    return fmt


def _files(path: Path, fmt: str) -> list[Path]:
    """``path`` itself, or the matching files under it, recursively and sorted."""
    if path.is_file():
        return [path]
    exts = {ext for ext, f in FORMATS.items() if fmt in ("auto", f)}
    files = sorted(
        p
        for p in path.rglob("*")
        if p.suffix.lower() in exts
        and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(path).parts)  # .git, caches
    )
    if not files:
        wanted = _SUPPORTED if fmt == "auto" else ", ".join(sorted(exts))
        raise DataError(f"{path} holds no data files (looked for {wanted}, recursively)")
    return files


def _label(value: Any) -> str | list[str] | None:
    if value is None:
        return None
    if isinstance(value, list | tuple):  # multi-label
        return [str(v) for v in value]
    return str(value)


def _check_columns(columns: list[str], cfg: SourceConfig, where: str) -> None:
    for column in (cfg.text_column, cfg.label_column, cfg.question_column):
        if column is not None and column not in columns:
            raise DataError(
                f"{where} has no column '{column}'; its columns are: {', '.join(map(str, columns))} "
                "(set text_column / label_column in the source)"
            )


def _answer(value: Any) -> tuple[str | None, int | None]:
    """An answer as text, or SQuAD's ``{"text": ..., "answer_start": ...}`` (lists: the first)."""
    if not isinstance(value, dict):
        return (None if value is None else str(value)), None
    text, start = value.get("text"), value.get("answer_start")
    if isinstance(text, list):
        text, start = (text[0] if text else None), (start[0] if start else None)
    return (None if text is None else str(text)), (None if start is None else int(start))


def _record(row: dict[str, Any], cfg: SourceConfig, name: str, i: int) -> Document:
    text = row[cfg.text_column]
    label_value = row[cfg.label_column] if cfg.label_column else None
    meta = {"source": name, "id": str(i)}
    if (pixels := pixel_rows(text)) is not None:  # an image as pixel rows (lmforge.data.images)
        return Document("", label=_label(label_value), image=pixels, meta=meta)
    if isinstance(text, list | tuple):  # pre-tokenized (NER): the label column holds the tags
        tokens = [str(t) for t in text]
        tags = None if label_value is None else [str(t) for t in label_value]
        joiner = "" if all(len(t) == 1 for t in tokens) else " "
        return Document(joiner.join(tokens), tokens=tokens, tags=tags, meta=meta)
    text = "" if text is None else str(text)
    if cfg.question_column:
        answer, start = _answer(label_value)
        question = row[cfg.question_column]
        return Document(
            text,
            label=answer,
            question=None if question is None else str(question),
            answer_start=start,
            meta=meta,
        )
    # empty texts are kept: the length filter removes them and reports how many
    return Document(text, label=_label(label_value), meta=meta)


def _txt(path: Path, cfg: SourceConfig, stats: LoadStats, name: str) -> Iterator[Document]:
    text = read_text(path, cfg.encoding, stats, name)
    if cfg.txt_unit == "file":
        yield Document(text, meta={"source": name})
        return
    text = text.replace("\r\n", "\n")
    parts = text.split("\n") if cfg.txt_unit == "line" else _BLANK_LINE.split(text)
    for i, part in enumerate(parts):
        if part.strip():  # blank lines separate documents; they are not documents
            yield Document(part.strip(), meta={"source": name, "id": str(i)})


def _json_rows(path: Path, text: str) -> Iterator[tuple[int, Any]]:
    """(line number, parsed value) per non-blank line, or per item of a ``.json`` array."""
    if path.suffix.lower() == ".json" and text.lstrip().startswith("["):
        try:
            yield from enumerate(json.loads(text), start=1)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{e.lineno} is not valid JSON ({e.msg})") from None
        return
    for n, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                yield n, json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(
                    f"{path}:{n} is not valid JSON ({e.msg}); each line must be one JSON object"
                ) from None


def _jsonl(path: Path, cfg: SourceConfig, stats: LoadStats, name: str) -> Iterator[Document]:
    text = read_text(path, cfg.encoding, stats, name)
    for i, (n, row) in enumerate(_json_rows(path, text)):
        if not isinstance(row, dict):
            raise DataError(f"{path}:{n} is a JSON {type(row).__name__}, expected an object")
        _check_columns(list(row), cfg, f"{path}:{n}")
        yield _record(row, cfg, name, i)


def _csv(path: Path, cfg: SourceConfig, stats: LoadStats, name: str) -> Iterator[Document]:
    # long articles exceed the default 128 KiB field limit; 2**31 - 1 fits a C long everywhere
    csv.field_size_limit(max(csv.field_size_limit(), 2**31 - 1))
    text = read_text(path, cfg.encoding, stats, name)
    if not text.strip():  # an empty file, or blank lines only: no header, no rows
        return
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    # newline="" keeps line breaks inside quoted fields
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
    if reader.fieldnames is None:  # an empty file
        return
    _check_columns(list(reader.fieldnames), cfg, str(path))
    try:
        for i, row in enumerate(reader):
            yield _record(row, cfg, name, i)
    except csv.Error as e:
        raise DataError(f"{path}:{reader.line_num} is not valid CSV ({e})") from None


def _parquet(path: Path, cfg: SourceConfig, stats: LoadStats, name: str) -> Iterator[Document]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as e:  # pyarrow raises OSError, ArrowInvalid, ... for unreadable files
        raise DataError(f"cannot read {path} as Parquet: {e}") from None
    _check_columns(table.column_names, cfg, str(path))
    wanted = [c for c in (cfg.text_column, cfg.label_column, cfg.question_column) if c]
    for i, row in enumerate(table.select(wanted).to_pylist()):
        yield _record(row, cfg, name, i)


READERS = {"txt": _txt, "jsonl": _jsonl, "csv": _csv, "parquet": _parquet}


def _label_values(doc: Document) -> list[str]:
    values = doc.label if isinstance(doc.label, list) else [doc.label] if doc.label else []
    return values + (doc.tags or [])


def check_labels_decoded(docs: list[Document], path: Path, encoding: str, bad_bytes: int) -> None:
    """Stop when labels hold U+FFFD: bytes that did not decode all become the same character,
    so distinct labels merge (GBK ``体育`` and ``政治`` both read as ``����`` in utf-8) and a
    3-class task silently trains on 2. Texts with a few replacements are only counted.

    Raises:
        DataError: naming the file, the labels and, when decoding caused it, the encoding.
    """
    bad = [v for d in docs for v in _label_values(d) if "\ufffd" in v]
    if not bad:
        return
    examples = ", ".join(repr(v) for v in list(dict.fromkeys(bad))[:3])
    if bad_bytes:
        cause = (
            f"{bad_bytes} bytes of it are not valid {encoding}; set the file's encoding "
            "(data.sources[].encoding or finetune.data.encoding: gbk, gb18030, big5, latin-1, ...)"
        )
    else:
        cause = (
            "the file itself holds U+FFFD, so it was decoded with the wrong encoding before it "
            "was saved; recover the labels from the original"
        )
    raise DataError(
        f"{path}: {len(bad)} labels contain the replacement character U+FFFD (e.g. {examples}), "
        f"so distinct labels may have merged into one; {cause}"
    )


def empty_reason(path: Path) -> str:
    """Why a labelled file yielded no rows, naming it: for a message about that, not about the
    consequences (no labels, no test split) further on."""
    if path.is_dir():
        return f"{path} holds no rows in any of its data files"
    with path.open("rb") as f:
        head = f.read(1 << 16)
    if not head:
        return f"{path} is empty (0 bytes)"
    if not head.strip():
        return f"{path} holds only blank lines"
    if FORMATS.get(path.suffix.lower()) == "csv":
        return f"{path} has a header line but no rows"
    return f"{path} has no rows"


def load_source(cfg: SourceConfig, stats: LoadStats) -> list[Document]:
    """All documents of one source, at most ``cfg.limit``, counting files and bad bytes.

    Raises:
        DataError: an unreadable file, unknown extension, bad JSON/CSV or missing column, or
            labels holding U+FFFD (``check_labels_decoded``); the message names the file (and
            line) and what to change.
    """
    if cfg.builtin is not None:
        from lmforge.data.builtin import load_builtin

        builtin = load_builtin(cfg.builtin, cfg.limit)
        stats.documents = len(builtin)
        return builtin
    assert cfg.path is not None  # the config validator requires builtin or path
    if is_image_folder(cfg.path):  # <dir>/<class>/*.png
        images = read_image_folder(cfg.path, cfg.limit)
        stats.files = stats.documents = len(images)
        return images
    docs: list[Document] = []
    root = cfg.path if cfg.path.is_dir() else cfg.path.parent
    for path in _files(cfg.path, cfg.format):
        if cfg.limit is not None and len(docs) >= cfg.limit:
            break
        stats.files += 1
        name = path.relative_to(root).as_posix()
        reader = READERS[_format_of(path, cfg)]
        room = None if cfg.limit is None else cfg.limit - len(docs)
        first, bad_before = len(docs), stats.undecodable_bytes
        records = reader(path, cfg, stats, name)
        if reader is not _txt:  # a text column may name image files, relative to the data file
            records = attach_images(records, path.parent)
        docs.extend(islice(records, room))
        check_labels_decoded(docs[first:], path, cfg.encoding, stats.undecodable_bytes - bad_before)
    stats.documents = len(docs)
    uniform_channels(docs)
    return docs
