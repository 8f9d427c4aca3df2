"""Run the server with uvicorn (one or several worker processes)."""

from __future__ import annotations

import os

import uvicorn

from loopml.config import Settings
from loopml.store.db import Database


def serve(host: str, port: int, workers: int, settings: Settings | None = None) -> None:
    """Serve until interrupted. Migrations run once here, before any worker starts."""
    settings = settings or Settings.load()
    # Workers are separate processes: one BLAS thread each keeps 2-core machines responsive.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    # The workers build their settings from the environment: tell them which Host is theirs.
    os.environ["LOOPML_BIND_HOST"] = host
    Database(settings.database_url).dispose()
    uvicorn.run(
        "loopml.server.app:create_app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="warning",
        access_log=False,
    )
