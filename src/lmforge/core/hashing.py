"""Stable content hashes, used to skip stages whose inputs and config did not change."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any


def hash_json(obj: Any) -> str:
    """SHA-256 of a canonical JSON encoding (sorted keys), so dict order never matters."""
    data = json.dumps(obj, sort_keys=True, ensure_ascii=False, default=str).encode()
    return hashlib.sha256(data).hexdigest()


def fingerprint_path(path: str | Path) -> dict[str, Any]:
    """Cheap identity of a file or directory tree: names, sizes and mtimes (not contents)."""
    path = Path(path)
    if path.is_file():
        st = path.stat()
        return {"path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    files = sorted(p for p in path.rglob("*") if p.is_file())
    return {
        "path": str(path.resolve()),
        "files": [
            (str(p.relative_to(path)), p.stat().st_size, p.stat().st_mtime_ns) for p in files
        ],
    }
