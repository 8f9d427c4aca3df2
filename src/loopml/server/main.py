"""Run the server with uvicorn (one or several worker processes)."""

from __future__ import annotations

import os
import sys

import uvicorn

from loopml.config import Settings
from loopml.governance.identity import IdentityService
from loopml.server.auth import is_loopback
from loopml.store.db import Database


def serve(host: str, port: int, workers: int, settings: Settings | None = None) -> None:
    """Serve until interrupted. Migrations run once here, before any worker starts."""
    settings = settings or Settings.load()
    # Workers are separate processes: one BLAS thread each keeps 2-core machines responsive.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    # The workers build their settings from the environment: tell them which Host is theirs.
    os.environ["LOOPML_BIND_HOST"] = host
    db = Database(settings.database_url)
    # Authentication: LOOPML_AUTH=1 (``--auth``), and always off loopback.
    if settings.auth or not is_loopback(host):
        os.environ["LOOPML_AUTH"] = "1"
        _print_bootstrap(IdentityService(db))
    db.dispose()
    uvicorn.run(
        "loopml.server.app:create_app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="warning",
        access_log=False,
    )


def _print_bootstrap(ids: IdentityService) -> None:
    """With no admin yet, print a one-time token that creates the first one (no default password)."""
    if ids.has_admin():
        return
    secret = ids.issue_bootstrap_token()
    print(
        "loopml: authentication is on and there is no admin yet. Create the first admin with this\n"
        f"one-time bootstrap token (valid 24 h, shown only now):\n\n    {secret}\n\n"
        "    loopml users bootstrap --token <TOKEN> --admin <NAME>    (or POST /api/v1/auth/bootstrap)\n",
        file=sys.stderr,
        flush=True,
    )
