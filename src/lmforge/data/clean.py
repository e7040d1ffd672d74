"""Text normalisation: HTML stripping, NFKC, control characters, whitespace, length limits.

Each function is usable on its own; ``rewrite`` applies those a ``CleanConfig`` enables in a
fixed order (html -> nfkc -> control -> whitespace), so entities decoded from HTML are then
normalised, and the whitespace pass tidies whatever the earlier steps left behind.
"""

from __future__ import annotations

import functools
import re
import sys
import unicodedata
from collections.abc import Iterator
from html.parser import HTMLParser

from lmforge.data.config import CleanConfig

_KEEP_CONTROL = "\n\t\r"  # line breaks and tabs are layout; normalize_whitespace handles them


def nfkc(text: str) -> str:
    """Unicode NFKC: full-width ASCII, ligatures and compatibility forms become their plain
    equivalents, so ``ＡＢＣ１２３`` and ``ABC123`` tokenise alike."""
    return unicodedata.normalize("NFKC", text)


@functools.cache
def _control_pattern() -> re.Pattern[str]:
    # Built from Python's own Unicode tables (about 0.1 s, once per process) so it follows the
    # interpreter's Unicode version. Category Cf includes the zero-width characters
    # (U+200B-U+200D, U+2060, U+FEFF), soft hyphens and bidi marks.
    cps = [
        c
        for c in range(sys.maxunicode + 1)
        if unicodedata.category(chr(c)) in ("Cc", "Cf") and chr(c) not in _KEEP_CONTROL
    ]
    ranges: list[tuple[int, int]] = []
    for c in cps:
        if ranges and ranges[-1][1] == c - 1:
            ranges[-1] = (ranges[-1][0], c)
        else:
            ranges.append((c, c))
    body = "".join(
        re.escape(chr(a)) if a == b else f"{re.escape(chr(a))}-{re.escape(chr(b))}"
        for a, b in ranges
    )
    return re.compile(f"[{body}]+")


def strip_control(text: str) -> str:
    """Remove control (Cc) and format (Cf) characters, zero-width ones included; newlines,
    carriage returns and tabs are kept for ``normalize_whitespace``. Letters of every script,
    CJK included, are untouched."""
    return _control_pattern().sub("", text)


_LINE_BREAK = re.compile(r"\r\n?|[\u2028\u2029]")
_HSPACE = re.compile(r"[^\S\n]+")  # any whitespace but newline: tabs, NBSP, U+3000, ...
_AROUND_NEWLINE = re.compile(r" *\n *")
_BLANK_LINES = re.compile(r"\n{3,}")


LONG_TEXT_CHARS = 1 << 20  # longer texts are tidied piece by piece


def whitespace_pieces(text: str, size: int) -> Iterator[str]:
    """``text`` in pieces of about ``size`` characters, each cut just after a non-whitespace
    character, so that no run of whitespace is split between two pieces: a rewrite of
    whitespace runs gives the same result piece by piece, with a piece's worth of memory."""
    start = 0
    while start < len(text):
        end = start + size
        while end < len(text) and text[end - 1].isspace():
            end += 1
        yield text[start:end]
        start = end


def _tidy(text: str) -> str:
    text = _LINE_BREAK.sub("\n", text)
    text = _HSPACE.sub(" ", text)
    text = _AROUND_NEWLINE.sub("\n", text)
    return _BLANK_LINES.sub("\n\n", text)


def normalize_whitespace(text: str) -> str:
    """Unify line endings to ``\\n``, collapse runs of horizontal space (tabs, no-break and
    ideographic spaces) to one space, trim every line, keep at most one blank line between
    paragraphs and strip both ends.

    Every rule rewrites a run of whitespace, so a long text is tidied in pieces cut after a
    non-space character, with the same result: ``re.sub`` holds a string object per match
    (about 11 bytes per character of English at once), a piece's worth instead.
    """
    if len(text) <= LONG_TEXT_CHARS:
        return _tidy(text).strip()
    return "".join(map(_tidy, whitespace_pieces(text, LONG_TEXT_CHARS))).strip()


# Tags whose content is never visible text.
_SKIP_TAGS = frozenset({"script", "style", "noscript", "template"})
# Tags that end a paragraph (blank line) or a line.
_PARAGRAPH_TAGS = (
    frozenset({"p", "blockquote", "pre", "table", "ul", "ol", "dl", "form", "figure"})
    | frozenset({"section", "article", "header", "footer", "nav", "aside", "main"})
    | frozenset({"h1", "h2", "h3", "h4", "h5", "h6"})
)
_LINE_TAGS = frozenset({"br", "li", "tr", "div", "dt", "dd", "hr", "title", "figcaption"})
_CELL_TAGS = frozenset({"td", "th"})
_LOOKS_LIKE_HTML = re.compile(r"<[A-Za-z/!?]")


class _TextExtractor(HTMLParser):
    """Collects visible text. Breaks requested by adjacent block tags merge (the largest wins)
    so ``</li><li>`` gives one newline, not two; only ``<br>`` adds up."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)  # entities are decoded in handle_data
        self.parts: list[str] = []
        self._skip = 0
        self._pre = 0
        self._break = 0  # newlines owed before the next text

    def _request(self, tag: str, *, closing: bool) -> None:
        if tag in _PARAGRAPH_TAGS:
            self._break = max(self._break, 2)
        elif tag == "br" and not closing:
            self._break += 1
        elif tag in _LINE_TAGS:
            self._break = max(self._break, 1)
        elif tag in _CELL_TAGS and not closing:
            self.parts.append(" ")

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP_TAGS:
            self._skip += 1
        elif tag == "pre":
            self._pre += 1
        self._request(tag, closing=False)

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP_TAGS:
            self._skip = max(0, self._skip - 1)
        elif tag == "pre":
            self._pre = max(0, self._pre - 1)
        self._request(tag, closing=True)

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        if not self._pre:
            data = re.sub(r"\s+", " ", data)  # source layout is not rendered outside <pre>
            if not data.strip():
                if not self._break:
                    self.parts.append(" ")
                return
        if self._break and self.parts:
            self.parts.append("\n" * self._break)
        self._break = 0
        self.parts.append(data)


def strip_html(text: str) -> str:
    """Visible text of an HTML document: script/style content dropped, block tags turned into
    line or paragraph breaks, entities decoded. Text with no tag-like ``<`` is returned as is,
    so plain text passes quickly and keeps literal ``&amp;``."""
    if not _LOOKS_LIKE_HTML.search(text):
        return text
    parser = _TextExtractor()
    parser.feed(text)
    parser.close()
    out = "".join(parser.parts)
    out = re.sub(r"[ \t]*\n[ \t]*", "\n", out)
    return _BLANK_LINES.sub("\n\n", out).strip()


def rewrite(text: str, cfg: CleanConfig) -> str:
    """Apply the enabled steps in order html -> nfkc -> control -> whitespace."""
    if cfg.strip_html:
        text = strip_html(text)
    if cfg.normalize:
        text = nfkc(text)
    if cfg.strip_control:
        text = strip_control(text)
    if cfg.whitespace:
        text = normalize_whitespace(text)
    return text


def length_reason(text: str, cfg: CleanConfig) -> str | None:
    """Why ``text`` fails the length limits, or None when it passes. The reason names the
    setting, not the length, so removals group by rule in ``stats.json``."""
    if len(text) < cfg.min_chars:
        return f"shorter than min_chars={cfg.min_chars}"
    if cfg.max_chars is not None and len(text) > cfg.max_chars:
        return f"longer than max_chars={cfg.max_chars}"
    return None
