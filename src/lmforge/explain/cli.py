"""``lmforge explain MODEL_DIR``: the explain stage's work on any saved classifier."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from lmforge.core.errors import LmforgeError


def explain_command(
    model_dir: Path,
    *,
    data: Path | None = None,
    texts: list[str] | None = None,
    examples: int = 4,
    attacks: list[str] | None = None,
    max_examples: int = 50,
    out: Path | None = None,
    seed: int = 0,
    trust_remote_code: bool = False,
) -> dict[str, Any]:
    """Explain ``model_dir`` on a labelled file (``data``, its manifest's columns) or on
    ``texts`` (labelled with the model's own predictions); writes ``summary.json`` in ``out``.
    """
    from pydantic import ValidationError

    from lmforge.core.atomic import write_json_atomic
    from lmforge.data.config import SourceConfig
    from lmforge.data.document import Document
    from lmforge.data.sources import LoadStats, load_source
    from lmforge.explain.classifier import Classifier
    from lmforge.explain.config import AttackConfig, ExplainConfig
    from lmforge.explain.stage import explain_model
    from lmforge.tasks.artifact import load_artifact

    if (data is None) == (not texts):
        raise LmforgeError("explain: give --data FILE or one or more --text, not both")
    art = load_artifact(model_dir, trust_remote_code=trust_remote_code)
    clf = Classifier.from_artifact(art)
    try:
        cfg = ExplainConfig(
            model=str(model_dir),
            examples=examples,
            attacks=AttackConfig(methods=attacks, max_examples=max_examples) if attacks else None,
        )
        if data is not None:
            cols = art.manifest.columns if art.manifest is not None else {}
            src = SourceConfig(
                path=data,
                text_column=cols.get("text", "text"),
                label_column=cols.get("label", "label"),
            )
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(x) for x in first["loc"])
        raise LmforgeError(f"explain: {where}: {first['msg']}") from None
    if data is not None:
        docs = load_source(src, LoadStats())
    else:
        assert texts is not None
        preds = clf.predict(texts)
        docs = [Document(text=t, label=clf.labels[p]) for t, p in zip(texts, preds, strict=True)]
    out = out or Path("runs") / f"explain-{time.strftime('%Y%m%d-%H%M%S')}"
    metrics, artifacts = explain_model(clf, docs, cfg, out, seed)
    summary = {"model": str(model_dir), "metrics": metrics, "artifacts": artifacts}
    write_json_atomic(out / "summary.json", {"explain": summary})
    return {**summary, "out": str(out)}
