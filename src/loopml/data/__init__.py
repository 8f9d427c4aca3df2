"""Dataset versions: content hash, schema, row count and statistical profile, stored once.

    import loopml.data

    dv = loopml.data.register("churn", "data/churn.parquet", description="Q3 snapshot")
    df = loopml.data.load("churn", dv.version)          # exactly the registered rows
    print(loopml.data.diff(loopml.data.get("churn", 1), dv).drift)
    with loopml.start_run():
        loopml.data.log_input(dv)                        # the run's lineage names this version

The functions use the store the environment configures (``LOOPML_HOME``,
``LOOPML_DATABASE_URL``, ``LOOPML_ARTIFACT_ROOT``), the same one the tracking SDK uses, or,
with ``LOOPML_TRACKING_URI=http://…``, that loopml server: sources are read on this machine,
uploaded as Parquet, and hashed, profiled and stored by the server, with the same results.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from loopml import sdk
from loopml.config import Settings
from loopml.data import lineage
from loopml.data.base import DataService
from loopml.data.diff import diff
from loopml.data.profile import ColumnProfile, Profile
from loopml.data.records import DatasetDiff, DatasetVersion, Field, SchemaChange, StatChange
from loopml.data.service import LocalDataService
from loopml.errors import InvalidInput

__all__ = [
    "ColumnProfile",
    "DataService",
    "DatasetDiff",
    "DatasetVersion",
    "Field",
    "LocalDataService",
    "Profile",
    "SchemaChange",
    "StatChange",
    "data_service",
    "diff",
    "get",
    "get_by_digest",
    "list_datasets",
    "list_versions",
    "load",
    "log_input",
    "parse_ref",
    "register",
    "reset",
    "runs_using",
]

_lock = threading.Lock()
_remote: dict[Settings, DataService] = {}


def data_service() -> DataService:
    """The data service where the SDK's tracking goes: the same database and blobs, or, when
    the SDK is remote, the same server over HTTP (one client per server, kept until :func:`reset`).

    >>> loopml.data.data_service().list_datasets()  # doctest: +SKIP
    [('churn', 3)]
    """
    from loopml.tracking.local import LocalTrackingService

    settings = sdk._settings()
    if settings.is_remote:
        with _lock:
            if settings not in _remote:
                from loopml.client.http_data import HttpDataService  # httpx only when remote

                _remote[settings] = HttpDataService.from_settings(settings)
            return _remote[settings]
    tracking = sdk.service(settings)
    assert isinstance(tracking, LocalTrackingService)
    return LocalDataService(tracking.db, tracking.artifacts.blobs, settings.user)


def reset() -> None:
    """Close and forget the cached HTTP data clients (tests, notebooks)."""
    with _lock:
        for svc in _remote.values():
            svc.close()
        _remote.clear()


def parse_ref(ref: str) -> tuple[str, int | None]:
    """Split ``"name@3"`` into ``("name", 3)``; ``"name"`` or ``"name@latest"`` gives ``None``.

    >>> parse_ref("churn@3"), parse_ref("churn"), parse_ref("churn@latest")
    (('churn', 3), ('churn', None), ('churn', None))
    """
    if not isinstance(ref, str) or not ref.strip():
        raise InvalidInput(
            "dataset reference must be a non-empty string like 'churn@3'", details={"field": "ref"}
        )
    name, sep, version = ref.rpartition("@")
    if not sep:
        return ref, None
    if not name:
        raise InvalidInput(f"dataset reference {ref!r} has no name; write it as 'name@version'")
    if version in ("", "latest"):
        return name, None
    if not version.isdigit() or int(version) < 1:
        raise InvalidInput(
            f"dataset reference {ref!r}: version {version!r} is not a positive integer; "
            "write it as 'name@3' or 'name@latest'",
            details={"field": "ref"},
        )
    return name, int(version)


def _resolve(name: str, version: int | str | None) -> tuple[str, int | str | None]:
    if version is None and "@" in name:
        return parse_ref(name)
    return name, version


def register(
    name: str, source: Any, *, description: str = "", tags: Mapping[str, Any] | None = None
) -> DatasetVersion:
    """Register ``source`` (pandas/polars DataFrame, pyarrow Table, or a Parquet/CSV file or
    directory) as the next version of ``name``; identical rows return the existing version.

    >>> dv = loopml.data.register("churn", df, tags={"split": "train"})  # doctest: +SKIP
    >>> dv.ref, dv.digest[:12]                                          # doctest: +SKIP
    ('churn@1', '3f2a9c0d11e7')
    """
    return data_service().register(name, source, description=description, tags=tags)


def get(name: str, version: int | str | None = None) -> DatasetVersion:
    """A version of ``name`` (``None``/``"latest"``: the newest); ``get("churn@3")`` works too.

    >>> loopml.data.get("churn@2").num_rows  # doctest: +SKIP
    10000
    """
    name, version = _resolve(name, version)
    return data_service().get(name, version)


def get_by_digest(digest: str) -> DatasetVersion | None:
    """The version whose rows have content hash ``digest`` (the first registered), or None.

    >>> loopml.data.get_by_digest(run.inputs[0].digest)  # doctest: +SKIP
    """
    return data_service().get_by_digest(digest)


def load(name: str, version: int | str | None = None, *, format: str = "pandas") -> Any:
    """The registered rows of a version: ``format`` is "pandas", "arrow" or "polars".

    >>> loopml.data.load("churn@2", format="arrow").num_rows  # doctest: +SKIP
    10000
    """
    name, version = _resolve(name, version)
    return data_service().load(name, version, format=format)


def list_datasets() -> list[tuple[str, int]]:
    """Every dataset name with its latest version number.

    >>> loopml.data.list_datasets()  # doctest: +SKIP
    [('churn', 3), ('prices', 1)]
    """
    return data_service().list_datasets()


def list_versions(name: str) -> list[DatasetVersion]:
    """Every version of ``name``, oldest first.

    >>> [v.version for v in loopml.data.list_versions("churn")]  # doctest: +SKIP
    [1, 2, 3]
    """
    return data_service().list_versions(name)


def log_input(dataset_version: DatasetVersion, context: str = "training", run_id: str | None = None) -> None:
    """Record ``dataset_version`` as an input of the active run (or of ``run_id``).

    >>> with loopml.start_run():                                 # doctest: +SKIP
    ...     loopml.data.log_input(loopml.data.get("churn@3"))
    """
    if run_id is None:
        active = sdk.active_run()
        if active is None:
            raise InvalidInput(
                "no active run to record the dataset on: call loopml.start_run() first or pass run_id",
                details={"field": "run_id"},
            )
        run_id = active.run_id
    lineage.log_input(sdk.service(), run_id, dataset_version, context)


def runs_using(dataset_version: DatasetVersion) -> list[str]:
    """Ids of the runs that recorded ``dataset_version`` (by its content hash) as an input.

    >>> loopml.data.runs_using(loopml.data.get("churn@3"))  # doctest: +SKIP
    ['5f0c…']
    """
    return lineage.runs_using(sdk.service(), dataset_version)
