"""Regenerate the README's picture of the report (docs/report.png) from a run directory.

    python tests/report/readme_screenshot.py runs/quickstart-<time> docs/report.png

Draws the run's report, opens it in Debian's headless Chromium (as the browser test does),
and saves the given sections (default: compress and explain, the later stages of the
quickstart) as one PNG, palette-quantised and scaled down until it is under ``--max-kb``.
Not a test: pytest collects ``test_*.py`` only.
"""

from __future__ import annotations

import argparse
import io
import shutil
import sys
from pathlib import Path

from test_report_browser import CHROMIUM_ARGS

from lmforge.report import write_report


def screenshot(run: Path, out: Path, sections: list[str], max_height: int, max_kb: int) -> int:
    """Write ``out``; returns its size in bytes."""
    from PIL import Image
    from playwright.sync_api import sync_playwright

    page_file = write_report(run)
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(page_file.resolve().as_uri(), wait_until="load")
            page.add_style_tag(content="nav.toc { position: static; }")  # no sticky overlay
            boxes = []
            for name in sections:
                box = page.locator(f"#section-{name}").bounding_box()
                if box is None:
                    raise SystemExit(f"the report of {run} has no {name} section")
                boxes.append(box)
            top = min(b["y"] for b in boxes)
            bottom = min(max(b["y"] + b["height"] for b in boxes), top + max_height)
            # a viewport as tall as the page: Chromium does not paint a sandboxed (cross-origin)
            # frame that is off screen, so a full-page capture would show it blank
            page.set_viewport_size({"width": 1280, "height": int(bottom) + 10})
            page.wait_for_timeout(500)
            clip = {"x": 0, "y": top, "width": 1280, "height": bottom - top}
            png = page.screenshot(clip=clip)
        finally:
            browser.close()
    image = Image.open(io.BytesIO(png)).convert("RGB")
    while True:
        data = io.BytesIO()
        # a palette of the whole page bands the heatmaps' colour bars: RGB when it fits
        image.save(data, "PNG", optimize=True)
        if data.tell() > max_kb * 1024:
            data = io.BytesIO()
            image.quantize(256).save(data, "PNG", optimize=True)
        if data.tell() <= max_kb * 1024 or image.width <= 640:
            break
        image = image.resize((int(image.width * 0.9), int(image.height * 0.9)), Image.LANCZOS)
    out.write_bytes(data.getvalue())
    return data.tell()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="the run directory")
    parser.add_argument("out", type=Path, help="the PNG to write, e.g. docs/report.png")
    parser.add_argument("--sections", default="compress,explain", help="comma-separated ids")
    parser.add_argument("--max-height", type=int, default=2400, help="CSS pixels kept")
    parser.add_argument("--max-kb", type=int, default=380, help="largest PNG size allowed")
    args = parser.parse_args(argv)
    size = screenshot(args.run, args.out, args.sections.split(","), args.max_height, args.max_kb)
    print(f"{args.out}: {size / 1024:.0f} KB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
