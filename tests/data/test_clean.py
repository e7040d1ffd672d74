from lmforge.data.clean import (
    length_reason,
    nfkc,
    normalize_whitespace,
    rewrite,
    strip_control,
    strip_html,
)
from lmforge.data.config import CleanConfig


def test_nfkc_folds_full_width_and_ligatures():
    assert nfkc("ＡＢＣ１２３，ﬁne") == "ABC123,fine"
    assert nfkc("中文") == "中文"


def test_strip_control_removes_control_and_zero_width_but_keeps_layout_and_cjk():
    text = "a\u200bb\x00c\x1b\ufeff\u00ad\u200d\n\td\r\n中文\u2060"
    assert strip_control(text) == "abc\n\td\r\n中文"


def test_normalize_whitespace():
    text = "  a \t\u00a0 b\u3000\u3000c  \r\n\r\n\r\n\n  d\re  \n\n"
    assert normalize_whitespace(text) == "a b c\n\nd\ne"
    assert normalize_whitespace("one\n\ntwo") == "one\n\ntwo"  # one blank line survives


def test_strip_html_keeps_visible_text_with_block_breaks():
    html = (
        "<html><head><title>T</title><style>p { color: red }</style></head><body>"
        "<h1>Head</h1><p>Fish &amp; chips\n   for two</p><!-- hidden -->"
        "<ul><li>a</li>\n<li>b</li></ul>x<br>y<script>if (a < b) alert(1)</script>"
        "<table><tr><td>1</td><td>2</td></tr></table></body></html>"
    )
    assert strip_html(html) == "T\n\nHead\n\nFish & chips for two\n\na\nb\n\nx\ny\n\n1 2"


def test_strip_html_leaves_plain_text_alone():
    text = "a < b, AT&amp;T\n\n  spaced  "
    assert strip_html(text) is text


def test_rewrite_applies_steps_in_order_html_nfkc_control_whitespace():
    cfg = CleanConfig(strip_html=True)
    # &#65313; decodes to a full-width A (html), which NFKC folds; &#8203; decodes to a
    # zero-width space (html) that the control step then removes; whitespace tidies last.
    html = "<p>&#65313;&#8203;B&nbsp;&nbsp;c</p><p>\u3000d</p>"
    assert rewrite(html, cfg) == "AB c\n\nd"
    assert rewrite(html, CleanConfig()) == html.replace("\u3000", " ")  # html off: tags stay


def test_rewrite_respects_disabled_steps():
    cfg = CleanConfig(normalize=False, strip_control=False, whitespace=False)
    text = " ＡＢ\u200b  c "
    assert rewrite(text, cfg) == text
    assert rewrite(text, CleanConfig()) == "AB c"


def test_length_reason():
    cfg = CleanConfig(min_chars=50, max_chars=100)
    assert length_reason("x" * 49, cfg) == "shorter than min_chars=50"
    assert length_reason("x" * 50, cfg) is None
    assert length_reason("x" * 100, cfg) is None
    assert length_reason("x" * 101, cfg) == "longer than max_chars=100"
    assert length_reason("x" * 10**6, CleanConfig()) is None  # no upper bound by default
    assert length_reason("", CleanConfig()) == "shorter than min_chars=1"
