"""Built-in chit-chat data for the ``instruction`` task: the ChatterBot corpus (BSD-3-Clause).

``chatterbot-corpus`` 1.3.3 ships user-contributed dialogues as
``chatterbot_corpus/data/<language>/<category>.yml``, each a ``conversations:`` list of turns
``[statement, reply, reply to the reply, ...]``. ChatterBot's own ``ListTrainer`` reads every
turn as the response to the one before, and so does this loader: a conversation of n turns
gives n - 1 (prompt, reply) pairs, turn i -> turn i + 1, without earlier history. One
Document per pair: ``text`` = the user turn, ``label`` = the reply.

Exact repeats of a (prompt, reply) pair are dropped (English ``tech_support`` repeats a few
dozen pairs 1,050 times); one prompt with several different replies ("Tell me a joke") is
real data and kept, each pair its own Document. Categories are interleaved so ``limit=N`` is
a sample of every topic. The package is located, never imported; files are read with
``yaml.safe_load``.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import islice
from pathlib import Path

from lmforge.core.log import logger
from lmforge.data.builtin import DATASETS, BuiltinDataset, _round_robin, package_dir
from lmforge.data.document import Document

CHATTERBOT_PIP = "--no-deps chatterbot-corpus==1.3.3"


def _turn(value: object) -> str | None:
    """A turn as text; YAML gives numbers for unquoted answers such as ``- 7``."""
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        text = str(value).strip()
        return text or None
    return None


def chatterbot_pairs(path: Path, source: str) -> tuple[list[Document], int]:
    """The (prompt, reply) Documents of one category file, and how many malformed
    conversations it skipped (a bare string instead of a list of turns, a non-text turn)."""
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # safe_load, in C when built
    data = yaml.load(path.read_text(encoding="utf-8"), Loader=loader) or {}  # noqa: S506
    category = path.stem
    docs: list[Document] = []
    skipped = 0
    for c, conversation in enumerate(data.get("conversations") or []):
        turns = [_turn(t) for t in conversation] if isinstance(conversation, list) else []
        if len(turns) < 2 or any(t is None for t in turns):
            skipped += 1
            continue
        for i, (prompt, reply) in enumerate(zip(turns, turns[1:], strict=False)):
            meta = {"source": source, "id": f"{category}/{c}/{i}", "category": category}
            docs.append(Document(prompt, label=reply, meta=meta))  # type: ignore[arg-type]
    return docs, skipped


def _chit_chat(language: str, source: str):  # noqa: ANN202 - a loader factory
    def load(limit: int | None) -> list[Document]:
        root = package_dir("chatterbot_corpus", CHATTERBOT_PIP) / "data" / language
        per_file, skipped = [], 0
        for path in sorted(root.glob("*.yml")):
            docs, bad = chatterbot_pairs(path, source)
            per_file.append(docs)
            skipped += bad
        if skipped:
            logger.info("%s: skipped %d malformed conversations", source, skipped)

        def unique() -> Iterator[Document]:
            seen: set[tuple[str, str]] = set()
            for doc in _round_robin(*per_file):
                key = (doc.text, doc.label)
                if key not in seen:
                    seen.add(key)  # type: ignore[arg-type]
                    yield doc

        return list(islice(unique(), limit))

    return load


for _ds in (
    BuiltinDataset(
        "chit-chat-en",
        "ChatterBot English chit-chat (greetings, AI, trivia, tech support, humour, ...): one "
        "(user turn, reply) pair per consecutive turn; exact repeats dropped.",
        "en",
        "instruction",
        "BSD-3-Clause (chatterbot-corpus, Gunther Cox; user-contributed)",
        f"pip install {CHATTERBOT_PIP} -> chatterbot_corpus/data/english/*.yml",
        "1,176 pairs (1,015 distinct prompts) in 21 categories, 106 KB",
        _chit_chat("english", "chit-chat-en"),
    ),
    BuiltinDataset(
        "chit-chat-zh",
        "ChatterBot Chinese chit-chat (greetings, AI, humour, psychology, ...): one (user turn, "
        "reply) pair per consecutive turn; exact repeats dropped.",
        "zh",
        "instruction",
        "BSD-3-Clause (chatterbot-corpus, Gunther Cox; user-contributed)",
        f"pip install {CHATTERBOT_PIP} -> chatterbot_corpus/data/chinese/*.yml",
        "550 pairs (447 distinct prompts) in 17 categories, 33 KB",
        _chit_chat("chinese", "chit-chat-zh"),
    ),
):
    DATASETS.add(_ds.name, _ds)
