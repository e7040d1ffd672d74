"""``lmforge serve``: load the artefact, build the app, run uvicorn until SIGINT/SIGTERM."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from lmforge.core.errors import LmforgeError
from lmforge.serve.guard import Settings
from lmforge.serve.loader import ServedModel, load_served

STORE = "serve/feedback.sqlite"  # inside the run directory


def store_path(target: Path, sm: ServedModel, given: Path | None) -> Path:
    """Where feedback goes: ``--feedback-db``, else the run's ``serve/feedback.sqlite`` (the
    run served, or the run the model directory belongs to), else beside the model directory."""
    if given is not None:
        return given
    if sm.path != target:  # a run directory was given
        return target / STORE
    from lmforge.core.manifest import read_manifest

    manifest = read_manifest(sm.path)
    root = manifest.run_root(sm.path) if manifest is not None else None
    if root is not None and (root / "summary.json").is_file():
        return root / STORE
    return sm.path.parent / f"{sm.path.name}.feedback.sqlite"


def api_key_from_env(name: str | None) -> str | None:
    """The API key from the environment variable ``name`` (never from the command line, where
    ``ps`` would show it)."""
    if name is None:
        return None
    key = os.environ.get(name, "")
    if not key.strip():
        raise LmforgeError(
            f"--api-key-env {name}: the environment variable {name} is empty or unset"
        )
    return key.strip()


def serve(
    target: Path,
    *,
    host: str,
    port: int,
    settings: Settings,
    task: str | None = None,
    feedback_db: Path | None = None,
    graceful_s: float = 30.0,
    trust_remote_code: bool = False,
    uncompressed: bool = False,
) -> None:
    """Serve ``target`` (a run or a model directory) until interrupted.

    SIGTERM/SIGINT: stop accepting connections, finish the requests in flight (up to
    ``graceful_s`` seconds), then stop the batchers and close the store. ``uncompressed``
    serves a run's fine-tuned model even when its compress stage made a faster artefact.
    """
    import uvicorn

    from lmforge.core.log import logger
    from lmforge.serve.app import build_app

    sm = load_served(
        target, task=task, trust_remote_code=trust_remote_code, uncompressed=uncompressed
    )
    db = store_path(Path(target), sm, feedback_db)
    logger.info("serve: %s", sm.why)
    logger.info("serve: model id %r; feedback store %s", sm.name, db)
    if host not in ("127.0.0.1", "localhost", "::1") and settings.api_key is None:
        logger.warning(
            "serve: listening on %s without an API key: anyone who can reach this port can "
            "use the model (set --api-key-env)",
            host,
        )
    app = build_app(sm, settings, db)
    print(f"lmforge serve: {sm.why}; http://{host}:{port} (model id {sm.name!r})", flush=True)
    # uvicorn catches SIGTERM/SIGINT, drains the requests in flight, then re-raises the signal
    # to the handler found before it: by then the stop was clean, so that handler exits 0
    # (the CLI's own handler would report an interrupted stage)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _stopped)
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level="warning",
        timeout_graceful_shutdown=int(graceful_s),
        lifespan="on",
    )


def _stopped(signum: int, frame: object) -> None:
    print(f"lmforge serve: stopped by {signal.Signals(signum).name}", file=sys.stderr, flush=True)
    sys.exit(0)
