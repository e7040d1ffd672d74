"""The report in a real browser: Debian's headless Chromium, driven by Playwright.

Skipped, with the reason, only where Chromium or Playwright is missing and CI is not set;
under CI=true (where ``.ci/run`` installs Chromium) a missing browser fails the test.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from conftest import write_run

from lmforge.report import write_report

# no first-run UI, no background traffic into a closed network, a throwaway profile
# (Playwright gives every launch a fresh --user-data-dir)
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _browser_or_skip() -> str:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing = "the playwright package (pip install -e '.[test]')"
    else:
        missing = "" if chromium else "Debian's chromium (apt-get install chromium)"
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but {missing} is not installed; .ci/run installs it")
        pytest.skip(f"{missing} is not installed")
    assert chromium
    return chromium


def test_report_in_headless_chromium(tmp_path):
    chromium = _browser_or_skip()
    from playwright.sync_api import sync_playwright

    run = write_run(tmp_path / "run")
    page_file = write_report(run)
    ran = [s for s, e in json.loads((run / "summary.json").read_text())["stages"].items()]
    problems: list[str] = []
    requests: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.on("request", lambda r: requests.append(r.url))
            page.goto(page_file.resolve().as_uri(), wait_until="load")

            assert problems == []
            # self-contained: the page itself is the only thing loaded (data: URIs aside)
            assert [u for u in requests if not u.startswith("data:")] == [page_file.as_uri()]
            for stage in ["overview", *ran, "serve", "cost"]:
                section = page.locator(f"#section-{stage}")
                assert section.count() == 1, stage
                section.scroll_into_view_if_needed()
                assert section.is_visible(), stage
                assert section.locator("h2").is_visible(), stage
            failure = page.locator("#section-evaluate .failure")
            assert failure.is_visible() and "stage failed:" in failure.inner_text()
            assert page.get_by_text("正面").first.is_visible()  # Chinese labels as text
            box = page.locator("#section-pretrain svg.plot").first.bounding_box()
            assert box and box["width"] > 200 and box["height"] > 100
            # explain: the attention heatmaps of its subfolder, and the attributions page in a
            # sandboxed frame that renders (Chinese tokens included) without reaching this page
            assert page.locator("#section-explain img").count() >= 7
            frame = page.frame_locator("#section-explain iframe")
            assert frame.get_by_text("干净").is_visible()
            assert page.locator("#section-compress table").first.is_visible()
            images_ok = page.evaluate(
                "Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)"
            )
            assert images_ok and page.locator("img").count() >= 2
            shot = tmp_path / "report.png"
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert shot.read_bytes().startswith(b"\x89PNG") and shot.stat().st_size > 20_000
    assert Path(page_file).stat().st_size < 2_000_000
