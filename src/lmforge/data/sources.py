"""Reading a recipe's data sources: local files (txt, jsonl, csv/tsv, parquet) or built-ins."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lmforge.core.errors import DataError
from lmforge.data.config import SourceConfig
from lmforge.data.document import Document

FORMATS = {
    ".txt": "txt",
    ".jsonl": "jsonl",
    ".json": "jsonl",
    ".csv": "csv",
    ".tsv": "csv",
    ".parquet": "parquet",
}


@dataclass
class LoadStats:
    files: int = 0
    documents: int = 0
    undecodable_bytes: int = 0
    undecodable_files: list[str] = field(default_factory=list)


def read_text(path: Path, encoding: str, stats: LoadStats) -> str:
    """Decode a file; undecodable bytes become U+FFFD and are counted, never fatal."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror}") from None
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError:
        text = raw.decode(encoding, errors="replace")
        bad = text.count("\ufffd") - raw.decode(encoding, errors="ignore").count("\ufffd")
        stats.undecodable_bytes += max(bad, 1)
        stats.undecodable_files.append(str(path))
        return text
    except LookupError:
        raise DataError(f"unknown encoding {encoding!r} for {path}") from None


def _format_of(path: Path, cfg: SourceConfig) -> str:
    if cfg.format != "auto":
        return cfg.format
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise DataError(
            f"cannot tell the format of {path} from its extension; use one of "
            f"{', '.join(sorted(FORMATS))} or set format in the source"
        )
    return fmt


def _files(cfg: SourceConfig) -> list[Path]:
    assert cfg.path is not None
    if cfg.path.is_file():
        return [cfg.path]
    files = sorted(p for p in cfg.path.rglob("*") if p.is_file() and not p.name.startswith("."))
    if cfg.format == "auto":
        files = [p for p in files if p.suffix.lower() in FORMATS]
    else:
        exts = {ext for ext, fmt in FORMATS.items() if fmt == cfg.format}
        files = [p for p in files if p.suffix.lower() in exts]
    if not files:
        raise DataError(
            f"{cfg.path} holds no {cfg.format if cfg.format != 'auto' else 'supported'} files"
        )
    return files


def _label(value: Any) -> str | list[str] | None:
    if value is None:
        return None
    if isinstance(value, list | tuple):
        return [str(v) for v in value]
    return str(value)


def _record(row: dict[str, Any], cfg: SourceConfig, where: str, meta: dict[str, str]) -> Document:
    for column in (cfg.text_column, cfg.label_column):
        if column is not None and column not in row:
            raise DataError(
                f"{where} has no column '{column}'; its columns are: {', '.join(map(str, row))} "
                "(set text_column / label_column in the source)"
            )
    text = row[cfg.text_column]
    label = _label(row[cfg.label_column]) if cfg.label_column else None
    return Document("" if text is None else str(text), label=label, meta=meta)


def _txt(path: Path, cfg: SourceConfig, stats: LoadStats, name: str) -> Iterator[Document]:
    text = read_text(path, cfg.encoding, stats)
    if cfg.txt_unit == "file":
        yield Document(text, meta={"source": name})
        return
    if cfg.txt_unit == "line":
        parts = text.splitlines()
    else:
        parts = [p for p in text.replace("\r\n", "\n").split("\n\n")]
    for i, part in enumerate(parts):
        if part.strip():
            yield Document(part.strip(), meta={"source": name, "id": str(i)})


def _jsonl(path: Path, cfg: SourceConfig, stats: LoadStats, name: str) -> Iterator[Document]:
    for i, line in enumerate(read_text(path, cfg.encoding, stats).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(
                f"{path}:{i} is not valid JSON ({e.msg}); each line must be one JSON object"
            ) from None
        if not isinstance(row, dict):
            raise DataError(f"{path}:{i} is a JSON {type(row).__name__}, expected an object")
        yield _record(row, cfg, f"{path}:{i}", {"source": name, "id": str(i)})


def _csv(path: Path, cfg: SourceConfig, stats: LoadStats, name: str) -> Iterator[Document]:
    csv.field_size_limit(sys.maxsize)
    text = read_text(path, cfg.encoding, stats)
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    reader = csv.DictReader(text.splitlines(), delimiter=delimiter)
    if reader.fieldnames is None:
        return
    for i, row in enumerate(reader, start=1):
        yield _record(row, cfg, str(path), {"source": name, "id": str(i)})


def _parquet(path: Path, cfg: SourceConfig, stats: LoadStats, name: str) -> Iterator[Document]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as e:  # pyarrow raises several types for corrupt files
        raise DataError(f"cannot read {path} as Parquet: {e}") from None
    wanted = [c for c in (cfg.text_column, cfg.label_column) if c]
    missing = [c for c in wanted if c not in table.column_names]
    if missing:
        raise DataError(
            f"{path} has no column '{missing[0]}'; its columns are: {', '.join(table.column_names)} "
            "(set text_column / label_column in the source)"
        )
    for i, row in enumerate(table.select(wanted).to_pylist()):
        yield _record(row, cfg, str(path), {"source": name, "id": str(i)})


READERS = {"txt": _txt, "jsonl": _jsonl, "csv": _csv, "parquet": _parquet}


def load_source(cfg: SourceConfig, stats: LoadStats) -> list[Document]:
    """All documents of one source (at most ``cfg.limit``), counting files and bad bytes."""
    if cfg.builtin is not None:
        from lmforge.data.builtin import load_builtin

        docs = load_builtin(cfg.builtin, cfg.limit)
        stats.documents = len(docs)
        return docs
    docs: list[Document] = []
    root = cfg.path if cfg.path is not None and cfg.path.is_dir() else None
    for path in _files(cfg):
        stats.files += 1
        name = str(path.relative_to(root)) if root else path.name
        for doc in READERS[_format_of(path, cfg)](path, cfg, stats, name):
            docs.append(doc)
            if cfg.limit is not None and len(docs) >= cfg.limit:
                stats.documents = len(docs)
                return docs
    stats.documents = len(docs)
    return docs
