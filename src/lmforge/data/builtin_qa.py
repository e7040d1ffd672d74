"""``wiki-qa``: extractive question answering derived from the built-in Wikipedia excerpt.

No extractive-QA dataset installs offline from PyPI (``shared/DATA.md``), so the questions are
made from real Wikipedia sentences by cloze translation with rules, the "identity mapping" of
Lewis et al. 2019 (*Unsupervised Question Answering by Cloze Translation*): a sentence with
an answer span masked is a cloze, and replacing the mask with a wh-phrase chosen by the
answer's type turns it into a question. The contexts and answers are real text; the questions
are synthetic (a real sentence with a wh-phrase in place of the answer, no other rewording).
Nothing is hand-written and nothing is random, so the same gensim file gives the same pairs.

Procedure, article by article in file order:

1. Contexts: prose paragraphs of the stripped article (one line, at least 150 characters,
   ending a sentence, no leftover table/template markup); a paragraph over 1,200 characters
   is cut at sentence ends into pieces of about equal length, at most 1,200 each (a longer
   single sentence stays whole).
2. Sentences: split at ``. ! ?`` before a capital or digit, except after initials and common
   abbreviations; only sentences of 6-40 words without markup residue are used.
3. Answer candidates in a sentence, by regular expression: dates (full dates, years, decades,
   centuries) -> *when* (replacing a preceding in/on/during too) or *what year/decade/
   century*; a count before a plural noun -> *how many*; money -> *how much*; a percentage
   -> *what percentage*; a capitalised multi-word phrase not at the sentence start -> *who*
   when a person cue is next to it (a title, "by", "(born", ", who") and *what* otherwise.
   A candidate whose text also occurs in the rest of the question is dropped.
4. One question per sentence (the candidate whose type has been asked least so far, ties to
   the earliest), at most 3 per context from sentences spread over it.
5. ``answer_start`` is the answer's offset in the context; a pair is kept only if the
   context holds the answer exactly there.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice

from lmforge.core.text import sentence_spans
from lmforge.data.builtin import DATASETS, BuiltinDataset, load_builtin
from lmforge.data.document import Document

MIN_PARAGRAPH_CHARS = 150
MAX_CONTEXT_CHARS = 1200
MIN_WORDS, MAX_WORDS = 6, 40
QUESTIONS_PER_CONTEXT = 3
WH_WORDS = ("when", "what", "who", "how many", "how much")

_MONTHS = "January|February|March|April|May|June|July|August|September|October|November|December"
_ERA = r"(?:BC|BCE|AD|CE)"
_ORDINAL_WORDS = (
    "first|second|third|fourth|fifth|sixth|seventh|eighth|ninth|tenth|eleventh|twelfth|"
    "thirteenth|fourteenth|fifteenth|sixteenth|seventeenth|eighteenth|nineteenth|twentieth|"
    "twenty-first"
)
# (regex, wh-phrase replacing the answer, kind); earlier patterns win where matches overlap
_DATES = [
    (rf"\b(?:\d{{1,2}} )?(?:{_MONTHS})(?: \d{{1,2}})?,? \d{{3,4}}\b", "what date", "date"),
    (rf"\b\d{{1,4}} {_ERA}\b|\bAD \d{{1,4}}\b", "what year", "date"),
    (
        rf"\b(?:\d{{1,2}}(?:st|nd|rd|th)|{_ORDINAL_WORDS}) century(?: {_ERA})?\b",
        "what century",
        "date",
    ),
    (r"\b1\d{2}0s\b|\b20[0-2]0s\b", "what decade", "date"),
    (r"(?<![\d.,$£€/–-])\b(?:1\d{3}|20[0-2]\d)\b(?![\d%/–-]|,\d|\.\d)", "what year", "date"),
]
_NUMBER = (
    r"(?<![\d.,$£€/–-])\b(?:\d{1,3}(?:,\d{3})+|\d+(?:\.\d+)?|two|three|four|five|six|seven|eight|"
    r"nine|ten|eleven|twelve|twenty|thirty|forty|fifty|hundred)"
    r"(?: (?:million|billion|trillion|thousand|hundred))?\b(?!%|,\d|\.\d| per ?cent)"
)
# a plural noun right after the number
_COUNT_NOUN = re.compile(r" ([a-z][a-z-]{2,}s|people|men|women|children|feet|teeth)\b")
_NOT_NOUNS = {"was", "has", "this", "its", "thus", "plus", "always", "less", "across", "whereas"}
_NUMBERS = [
    (r"[$£€]\s?\d[\d,]*(?:\.\d+)?(?: (?:million|billion|trillion))?", "how much", "number"),
    (r"(?<![\d.,])\b\d+(?:\.\d+)?(?:%| per ?cent\b)", "what percentage", "number"),
]
_TIME_PREPOSITION = re.compile(r"\b(?:in|In|on|On|during|During)(?: the)? $")
_THE = re.compile(r"\b(?:the|The) $")

# capitalised phrases: connectors allowed inside a name, titles and person cues
_CONNECTORS = {
    "of",
    "for",
    "de",
    "von",
    "van",
    "der",
    "du",
    "da",
    "la",
    "le",
    "del",
    "al",
    "bin",
    "ibn",
}
_TITLES = {
    "Sir", "King", "Queen", "Emperor", "Empress", "Pope", "Saint", "St.", "President", "Prince",
    "Princess", "Lord", "Lady", "Dr.", "General", "Mr.", "Mrs.", "Bishop", "Archbishop", "Tsar",
}  # fmt: skip
_NOT_PERSON = {
    "University", "Church", "Republic", "Kingdom", "States", "Empire", "River", "War", "Party",
    "Revolution", "Ocean", "Sea", "Island", "Islands", "Mountains", "Company", "Society",
    "Institute", "Association", "Council", "Union", "Army", "Museum", "Award", "Prize", "Act",
    "Treaty", "Age", "Day", "City", "County", "Lake", "Bay", "Bank", "Group", "College",
    "School", "Court", "House", "Department", "Agency", "Organization", "Organisation",
    "Corporation", "Press", "Records", "Games", "Cup", "League", "North", "South", "East",
    "West", "Northern", "Southern", "Eastern", "Western", "New", "United", "Royal", "National",
    "International", "American", "British", "Greek", "Roman", "Christian",
}  # fmt: skip
_NOT_NAMES = set(_MONTHS.split("|")) | {
    "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday", "I",
}  # fmt: skip
# sentence openers that are not part of a name after them
_OPENERS = {
    "The", "In", "A", "An", "On", "At", "During", "After", "Before", "Since", "By", "For",
    "From", "As", "While", "When", "Although", "However", "This", "These", "Its", "His", "Her",
    "Their", "Many", "Some", "Most", "Also", "Both", "Other", "Under", "Until", "With", "Like",
}  # fmt: skip
_LEADING = "\"'(“‘["
_TRAILING = "\"'),.;:!?”’]"

_FINAL_PUNCTUATION = re.compile(r"[\s.!?;:]+([\"')”’]*)$")  # '...(1999)."' -> '...(1999)"'
_RESIDUE = re.compile(r"[|{}=\[\]<>]|https?:|\s{2,}|\s[,.;:]")


@dataclass(frozen=True)
class Candidate:
    """An answer span and the part of the sentence the wh-phrase replaces (sentence offsets)."""

    start: int
    end: int
    wh: str
    kind: str  # "date", "number", "person", "entity": what the type balancing counts
    replace_start: int
    replace_end: int


def contexts_of(article: str) -> list[str]:
    """The prose paragraphs of an article, long ones cut at sentence ends (step 1)."""
    out = []
    for para in article.split("\n\n"):
        para = para.strip()
        if (
            len(para) < MIN_PARAGRAPH_CHARS
            or "\n" in para
            or para[0] in "*#:;|"
            or para[-1] not in ".!?\"')”"
            or "{{" in para
            or "|" in para
        ):
            continue
        # pieces of about equal length, each at most MAX_CONTEXT_CHARS (unless one sentence is)
        target = len(para) / math.ceil(len(para) / MAX_CONTEXT_CHARS)
        pieces, piece = [], ""
        for s, e in sentence_spans(para):
            sentence = para[s:e]
            if piece and len(piece) + 1 + len(sentence) > MAX_CONTEXT_CHARS:
                pieces.append(piece)
                piece = ""
            piece = f"{piece} {sentence}" if piece else sentence
            if len(piece) >= target:
                pieces.append(piece)
                piece = ""
        if piece:
            pieces.append(piece)
        out.extend(pieces)
    return out


def _regex_candidates(sentence: str) -> list[Candidate]:
    found: list[Candidate] = []

    def free(s: int, e: int) -> bool:
        return all(e <= c.start or s >= c.end for c in found)

    for pattern, wh, kind in _DATES:
        for m in re.finditer(pattern, sentence):
            s, e = m.span()
            if not free(s, e):
                continue
            before = sentence[:s]
            prep = _TIME_PREPOSITION.search(before)
            the = _THE.search(before)
            if prep and not sentence[e:].startswith(" when"):  # "in 1539" -> "when"
                found.append(Candidate(s, e, "when", kind, prep.start(), e))
            elif the and wh in ("what decade", "what century"):  # "the 1890s" -> "what decade"
                found.append(Candidate(s, e, wh, kind, the.start(), e))
            else:
                found.append(Candidate(s, e, wh, kind, s, e))
    for pattern, wh, kind in _NUMBERS:
        for m in re.finditer(pattern, sentence):
            if free(*m.span()):
                found.append(Candidate(*m.span(), wh, kind, *m.span()))
    for m in re.finditer(_NUMBER, sentence):
        noun = _COUNT_NOUN.match(sentence, m.end())
        if noun and noun.group(1) not in _NOT_NOUNS and free(*m.span()):
            found.append(Candidate(*m.span(), "how many", "number", *m.span()))
    return found


def _capital(word: str) -> bool:
    return (
        len(word) > 1
        and word[0].isupper()
        and any(c.isalpha() for c in word)
        and all(c.isalpha() or c in "-'’." for c in word)
    )


def _phrase_candidates(sentence: str) -> list[Candidate]:
    """Capitalised multi-word phrases not at the sentence start, with who/what."""
    tokens = []  # (core start, core end, core, had leading punct, had trailing punct)
    for m in re.finditer(r"\S+", sentence):
        raw = m.group()
        core = raw.lstrip(_LEADING)
        lead = len(raw) - len(core)
        if not re.fullmatch(r"[A-Z]\.", core):  # keep initials whole: "Stephen A. Douglas"
            core = core.rstrip(_TRAILING)
        for suffix in ("'s", "’s"):  # a possessive ends the name: "Lincoln's"
            core = core.removesuffix(suffix)
        s = m.start() + lead
        tokens.append((s, s + len(core), core, lead > 0, s + len(core) < m.end()))

    out: list[Candidate] = []
    i = 0
    while i < len(tokens):
        if not _capital(tokens[i][2]) or tokens[i][3]:
            i += 1
            continue
        j, last_cap = i, i
        while not tokens[j][4] and j + 1 < len(tokens) and not tokens[j + 1][3]:
            nxt = tokens[j + 1][2]
            if _capital(nxt):
                j = last_cap = j + 1
            elif nxt in _CONNECTORS and (skip := _connector_run(tokens, j + 1)):
                j += skip  # "Bank of the United States", "Ramón de la Sagra"
            else:
                break
        if i > 0 and not tokens[i - 1][4] and any(c.isdigit() for c in tokens[i - 1][2]):
            i = last_cap + 1  # "20th Century Fox": a name that starts with a number
            continue
        if i == 0:  # sentence-initial capitals say nothing: "Henry David Thoreau" is skipped,
            if tokens[0][2] not in _OPENERS:  # "In Spain ..." is read from "Spain"
                i = last_cap + 1
                continue
            i += 1
            if i > last_cap:
                continue
        words = [t[2] for t in tokens[i : last_cap + 1]]
        if sum(_capital(w) for w in words) >= 2 and len(words) <= 6 and words[0] not in _NOT_NAMES:
            s, e = tokens[i][0], tokens[last_cap][1]
            out.append(Candidate(s, e, *_who_or_what(sentence, s, e, words), s, e))
        i = last_cap + 1
    return out


def _connector_run(tokens: list[tuple], k: int) -> int:
    """How many connector words from ``tokens[k]`` lead to a capitalised word (0: none)."""
    for n in (1, 2):
        words = [t[2] for t in tokens[k : k + n + 1]]
        if len(words) < n + 1 or any(t[3] or t[4] for t in tokens[k : k + n]):
            return 0
        if all(w in _CONNECTORS | {"the"} for w in words[:n]) and _capital(words[n]):
            return n
    return 0


def _who_or_what(sentence: str, s: int, e: int, words: list[str]) -> tuple[str, str]:
    if any(w in _NOT_PERSON for w in words):
        return "what", "entity"
    after = sentence[e:]
    cue = (
        words[0] in _TITLES
        or sentence[:s].endswith("by ")
        or re.match(r"(?:'s|’s)? \((?:born |b\. |c\. )?\d", after) is not None
        or re.match(r",? who\b", after) is not None
    )
    return ("who", "person") if cue else ("what", "entity")


def questions_in(sentence: str) -> list[tuple[Candidate, str]]:
    """Every (candidate, question) a sentence yields, in sentence order (steps 3 and 5)."""
    out = []
    for c in sorted(_regex_candidates(sentence) + _phrase_candidates(sentence), key=_order):
        before, after = sentence[: c.replace_start], sentence[c.replace_end :]
        wh = c.wh
        if not before.strip():
            wh = wh[0].upper() + wh[1:]
            after = after.removeprefix(",")  # "In 1900, the ..." -> "When the ...?"
        question = " ".join(f"{before}{wh}{after}".split())
        question = _FINAL_PUNCTUATION.sub(r"\1", question) + "?"
        answer = sentence[c.start : c.end]
        if answer.lower() not in question.lower():
            out.append((c, question))
    return out


def _order(c: Candidate) -> tuple[int, int]:
    return (c.start, c.end)


def _sentence_ok(sentence: str) -> bool:
    return MIN_WORDS <= len(sentence.split()) <= MAX_WORDS and not _RESIDUE.search(sentence)


def _spread(n: int, k: int) -> list[int]:
    """k indices spread evenly over range(n), first and last included."""
    if n <= k:
        return list(range(n))
    return sorted({round(i * (n - 1) / (k - 1)) for i in range(k)}) if k > 1 else [0]


def qa_pairs(articles: list[Document]) -> Iterator[Document]:
    """Derive the QA documents from ``wiki-en`` articles, in a fixed order (steps 1-5)."""
    asked: Counter[str] = Counter()  # questions per answer kind so far: balances the types
    for a, article in enumerate(articles):
        title = article.meta.get("title", "")
        for c, context in enumerate(contexts_of(article.text)):
            per_sentence = []
            for s, e in sentence_spans(context):
                if _sentence_ok(context[s:e]) and (found := questions_in(context[s:e])):
                    per_sentence.append((s, found))
            for q, i in enumerate(_spread(len(per_sentence), QUESTIONS_PER_CONTEXT)):
                offset, found = per_sentence[i]
                cand, question = min(found, key=lambda f: (asked[f[0].kind], f[0].start))
                start = offset + cand.start
                answer = context[start : offset + cand.end]
                if context[start : start + len(answer)] != answer or not answer.strip():
                    continue
                asked[cand.kind] += 1
                yield Document(
                    context,
                    label=answer,
                    question=question,
                    answer_start=start,
                    meta={"source": "wiki-qa", "id": f"{a}-{c}-{q}", "title": title},
                )


def _wiki_qa(limit: int | None) -> list[Document]:
    return list(islice(qa_pairs(load_builtin("wiki-en")), limit))


DATASETS.add(
    "wiki-qa",
    BuiltinDataset(
        "wiki-qa",
        "Extractive QA derived from wiki-en by rule-based cloze translation (Lewis et al. 2019): "
        "contexts are real paragraphs and answers real spans in them (dates, numbers, named "
        "phrases); each question is the answer's real sentence with a wh-phrase in place of "
        "the answer (synthetic questions). Procedure: lmforge/data/builtin_qa.py.",
        "en",
        "extractive-qa",
        "CC BY-SA 3.0 (Wikipedia text; derived questions shared alike); gensim code LGPL-2.1",
        "pip install gensim -> derived from the wiki-en file "
        "(gensim/test/test_data/enwiki-...-shortened.bz2)",
        "4,879 questions on 2,514 contexts (1.42 M characters) from 97 articles",
        _wiki_qa,
    ),
)
