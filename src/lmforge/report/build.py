"""Render a run directory's ``report.html``: one self-contained page, one section per stage.

The page is drawn by Jinja2 templates (``templates/``, autoescaped) from sections made of
plain blocks; plots are inline SVG, saved images base64 data: URIs, and the CSS is inline,
so the file opens offline from a file:// URL and can be mailed or archived alone.
"""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from lmforge import __version__
from lmforge.core.atomic import write_text_atomic
from lmforge.core.log import logger
from lmforge.report.blocks import Failure, Section, Text
from lmforge.report.run import RunView, StageView

REPORT_FILE = "report.html"


@lru_cache(maxsize=1)
def environment() -> Any:
    """The template environment: package templates, HTML autoescaping, strict undefined."""
    import jinja2

    return jinja2.Environment(
        loader=jinja2.PackageLoader("lmforge.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_page(template: str, **context: Any) -> str:
    """Render ``template`` with the values every page shows (version, time written)."""
    written = datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    return (
        environment().get_template(template).render(version=__version__, written=written, **context)
    )


def build_report(run_dir: Path) -> str:
    """The report page of ``run_dir`` as HTML text.

    Raises:
        LmforgeError: ``run_dir`` is not a run directory.
    """
    from lmforge.report.overview import overview_section
    from lmforge.report.run_cost import cost_section
    from lmforge.report.sections import render_stage

    run = RunView.load(Path(run_dir))
    sections: list[Section] = []
    for stage in _stages_shown(run):
        view = run.stage(stage)
        if stage == "serve" and not view.entry:  # served: the store is what it recorded
            view = StageView("serve", run, {"status": "done"})
        sections.append(render_stage(view))
    cost = _safely("cost", lambda: cost_section(run))
    overview = overview_section(run)  # last: it lists problems found while drawing the rest
    sections = [overview, *sections, *([cost] if cost else [])]
    return render_page(
        "report.html.j2", run_name=run.name, outcome=overview.subtitle, sections=sections
    )


def _stages_shown(run: RunView) -> list[str]:
    """The run's stages, and ``serve`` before ``improve`` when the run was served: serving is
    a command, not a recipe stage, and leaves only its feedback store in the run."""
    from lmforge.report.sections.serve import has_store

    names = list(run.stage_names)
    if "serve" not in names and has_store(run.root):
        names.insert(names.index("improve") if "improve" in names else len(names), "serve")
    return names


def _safely(name: str, make: Any) -> Section | None:
    try:
        return make()
    except Exception as e:
        logger.warning("report: the %s section could not be drawn: %s", name, e)
        return Section(name, name.capitalize(), [Failure(f"this section could not be drawn: {e}")])


def write_report(run_dir: Path) -> Path:
    """Write ``run_dir/report.html`` and return its path; never raises.

    Meant to be called at the end of every run, a failed one included: a stage that failed
    gets a "stage failed: …" section, and if the page as a whole cannot be drawn a short
    page saying why is written instead (and a warning logged).
    """
    run_dir = Path(run_dir)
    path = run_dir / REPORT_FILE
    try:
        html = build_report(run_dir)
    except Exception as e:
        logger.warning("report: could not draw %s (%s: %s)", path, type(e).__name__, e)
        try:
            section = Section(
                "overview",
                "Report unavailable",
                [
                    Failure(f"the report could not be drawn: {type(e).__name__}: {e}"),
                    Text(f"Rebuild it with `lmforge report {run_dir}` once this is fixed.", "note"),
                ],
            )
            html = render_page(
                "report.html.j2", run_name=run_dir.name, outcome="no report", sections=[section]
            )
        except Exception as e2:
            logger.warning("report: could not write even a short page: %s", e2)
            return path
    try:
        write_text_atomic(path, html)
    except OSError as e:
        logger.warning("report: could not write %s: %s", path, e)
    return path


def report_command(run_dir: Path) -> Path:
    """``lmforge report RUN_DIR``: rebuild the page; a wrong directory is the user's error."""
    html = build_report(run_dir)  # raises LmforgeError when run_dir is not a run
    path = Path(run_dir) / REPORT_FILE
    write_text_atomic(path, html)
    return path
