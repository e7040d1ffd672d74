"""The HTML report of a run (``report.html``) and the side-by-side comparison of runs.

``write_report(run_dir)`` is what the runner calls at the end of every run; it never raises.
Sections are a registry keyed by stage name (``sections/<stage>.py``); see ``sections``.
"""

from lmforge.report.build import REPORT_FILE, build_report, report_command, write_report
from lmforge.report.compare import compare_runs
from lmforge.report.run import is_run_dir

__all__ = [
    "REPORT_FILE",
    "build_report",
    "compare_runs",
    "is_run_dir",
    "report_command",
    "write_report",
]
