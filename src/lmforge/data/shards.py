"""Reading and writing a split as Parquet or JSONL shards of ``Document`` rows."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Literal

from lmforge.core.errors import DataError
from lmforge.data.document import Document

Format = Literal["parquet", "jsonl"]


def _row(doc: Document) -> dict:
    row = asdict(doc)
    row["meta"] = json.dumps(doc.meta, ensure_ascii=False)
    return row


def write_shards(
    docs: list[Document], out_dir: Path, split: str, fmt: Format, shard_docs: int
) -> list[str]:
    """Write ``docs`` as ``<split>-00000.<ext>``, ...; returns the file names written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    names = []
    for i, start in enumerate(range(0, max(len(docs), 1), shard_docs)):
        chunk = docs[start : start + shard_docs]
        name = f"{split}-{i:05d}.{fmt}"
        rows = [_row(d) for d in chunk]
        if fmt == "jsonl":
            with (out_dir / name).open("w", encoding="utf-8") as f:
                f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            table = (
                pa.Table.from_pylist(rows)
                if rows
                else pa.table({"text": pa.array([], pa.string())})
            )
            pq.write_table(table, out_dir / name)
        names.append(name)
    return names


def _from_row(row: dict) -> Document:
    meta = row.get("meta")
    return Document(
        text=row.get("text") or "",
        label=row.get("label"),
        tokens=row.get("tokens"),
        tags=row.get("tags"),
        image=row.get("image"),
        question=row.get("question"),
        answer_start=row.get("answer_start"),
        meta=json.loads(meta) if isinstance(meta, str) else (meta or {}),
    )


def read_split(data_dir: str | Path, split: str) -> list[Document]:
    """Read every shard of ``split`` written by the data stage into memory."""
    data_dir = Path(data_dir)
    files = sorted(data_dir.glob(f"{split}-*.parquet")) + sorted(data_dir.glob(f"{split}-*.jsonl"))
    if not files:
        raise DataError(f"no '{split}' shards in {data_dir}; run the data stage first")
    docs: list[Document] = []
    for path in files:
        if path.suffix == ".jsonl":
            with path.open(encoding="utf-8") as f:
                docs.extend(_from_row(json.loads(line)) for line in f if line.strip())
        else:
            import pyarrow.parquet as pq

            docs.extend(_from_row(r) for r in pq.read_table(path).to_pylist())
    return docs


def iter_texts(docs: Iterable[Document]) -> Iterable[str]:
    return (d.text for d in docs if d.text)
