"""The one settings object: environment variables, then ``loopml.toml``, then defaults.

No other module reads ``os.environ``; they take a :class:`Settings`.

>>> s = Settings.load(env={"LOOPML_HOME": "/tmp/x"})
>>> s.database_url
'sqlite:////tmp/x/loopml.db'
"""

from __future__ import annotations

import getpass
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path

from loopml.errors import InvalidInput

_ENV_PREFIX = "LOOPML_"


@dataclass(frozen=True)
class Settings:
    home: Path
    database_url: str
    artifact_root: str
    tracking_uri: str | None = None
    token: str | None = None
    http_retries: int = 5
    http_timeout: float = 60.0
    # Who mutations are recorded as (registry transitions, approvals): LOOPML_USER, else the login.
    user: str = ""
    # The largest dataset upload (its Parquet bytes) the server accepts for registration.
    max_dataset_upload_bytes: int = 8 << 30
    # Whether ``loopml server`` runs scheduled monitors in a background thread (0 turns it off).
    monitor_scheduler: bool = True
    # Whether the server requires tokens (``loopml server --auth``; always on off loopback).
    auth: bool = False
    # Where pipeline steps run: inprocess, process[:N], ray[:N] or ray://HOST:PORT.
    executor: str = "inprocess"
    # Whether ``loopml server`` runs the pipeline scheduler (cron, dataset and alert triggers).
    pipeline_scheduler: bool = True
    # A pipeline run lock is a lease: a lock not renewed for this many seconds (its client died)
    # is taken over by the next run (LOOPML_PIPELINE_LEASE_S).
    pipeline_lease_s: float = 60.0
    # Host header names the server answers besides loopback names, IP literals, its bind host and
    # the machine's name (DNS rebinding protection); comma-separated, "*" allows any.
    allowed_hosts: tuple[str, ...] = ()
    # The address ``loopml server`` is bound to (set by the server for its workers).
    bind_host: str = ""
    # The largest API request body, and the largest artifact or dataset upload, in bytes.
    max_request_bytes: int = 64 << 20
    max_upload_bytes: int = 8 << 30
    # The online feature store: sqlite:///PATH or redis://HOST:PORT/DB (default: online.db in home).
    online_store: str | None = None

    @property
    def is_remote(self) -> bool:
        return bool(self.tracking_uri) and str(self.tracking_uri).startswith(("http://", "https://"))

    @classmethod
    def load(
        cls,
        env: Mapping[str, str] | None = None,
        toml_path: Path | None = None,
        overrides: Mapping[str, str] | None = None,
    ) -> Settings:
        """Read settings; ``env`` defaults to the process environment; ``overrides``
        (field name -> value) win over both."""
        env = os.environ if env is None else env
        values: dict[str, str] = {}
        path = toml_path or Path(env.get("LOOPML_CONFIG", "loopml.toml"))
        if path.is_file():
            values.update(_read_toml(path))
        for f in fields(cls):
            key = _ENV_PREFIX + f.name.upper()
            if env.get(key):
                values[f.name] = env[key]
        values.update(overrides or {})
        return cls._from_values(values)

    @classmethod
    def _from_values(cls, values: Mapping[str, str]) -> Settings:
        home = Path(values.get("home", ".loopml")).expanduser().absolute()
        uri = values.get("tracking_uri") or None
        if uri and uri.startswith(("sqlite:", "postgresql")):
            values = {**values, "database_url": values.get("database_url", uri)}
            uri = None
        if uri and uri.startswith("file:"):
            home, uri = Path(uri.removeprefix("file:").removeprefix("//")).absolute(), None
        return cls(
            home=home,
            database_url=values.get("database_url") or f"sqlite:///{home / 'loopml.db'}",
            artifact_root=values.get("artifact_root") or str(home / "artifacts"),
            tracking_uri=uri,
            token=values.get("token") or None,
            http_retries=_as_int(values, "http_retries", 5),
            http_timeout=float(values.get("http_timeout", 60.0)),
            user=values.get("user") or _login_name(),
            max_dataset_upload_bytes=_as_int(values, "max_dataset_upload_bytes", 8 << 30),
            monitor_scheduler=str(values.get("monitor_scheduler", "1")).lower()
            not in ("0", "false", "no", "off"),
            auth=str(values.get("auth", "0")).lower() in ("1", "true", "yes", "on"),
            executor=values.get("executor") or "inprocess",
            pipeline_scheduler=str(values.get("pipeline_scheduler", "1")).lower()
            not in ("0", "false", "no", "off"),
            pipeline_lease_s=_as_seconds(values, "pipeline_lease_s", 60.0),
            online_store=values.get("online_store") or None,
            allowed_hosts=tuple(h.strip() for h in str(values.get("allowed_hosts", "")).split(",")),
            bind_host=values.get("bind_host", ""),
            max_request_bytes=_as_int(values, "max_request_bytes", 64 << 20),
            max_upload_bytes=_as_int(values, "max_upload_bytes", 8 << 30),
        )


def _as_int(values: Mapping[str, str], name: str, default: int) -> int:
    raw = values.get(name, default)
    try:
        return int(raw)
    except ValueError:
        raise InvalidInput(
            f"setting {name} must be an integer, got {raw!r}; fix {_ENV_PREFIX}{name.upper()}"
        ) from None


def _as_seconds(values: Mapping[str, str], name: str, default: float) -> float:
    raw = values.get(name, default)
    try:
        seconds = float(raw)
    except ValueError:
        seconds = 0.0
    if not seconds > 0 or seconds == float("inf"):
        raise InvalidInput(
            f"setting {name} must be a positive number of seconds, got {raw!r}; "
            f"fix {_ENV_PREFIX}{name.upper()}"
        )
    return seconds


def _login_name() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry and no LOGNAME, e.g. in some containers
        return "unknown"


def _read_toml(path: Path) -> dict[str, str]:
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise InvalidInput(f"{path} is not valid TOML: {exc}") from None
    section = data.get("loopml", data)
    return {str(k): str(v) for k, v in section.items() if not isinstance(v, dict)}
