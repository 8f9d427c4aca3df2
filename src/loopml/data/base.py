"""The data capability's contract: register, look up and load dataset versions.

Two implementations: :class:`loopml.data.service.LocalDataService` over the metadata database
and the blob store, and :class:`loopml.client.http_data.HttpDataService` over a loopml server's
``/api/v1/datasets``.  One behavioural suite (``tests/contract/test_data_contract.py``) runs
against both.

>>> svc = loopml.data.data_service()                      # doctest: +SKIP
>>> svc.load("churn", 3, format="arrow").num_rows          # doctest: +SKIP
10000
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from typing import Any

import pyarrow as pa

from loopml.data.records import DatasetVersion
from loopml.errors import InvalidInput

FORMATS = ("pandas", "arrow", "polars")


class DataService(abc.ABC):
    """Dataset versions.  A subclass implements every abstract method; :meth:`load` is shared.

    Errors are :mod:`loopml.errors` classes, the same whichever implementation raises them:
    ``NotFound`` naming what exists, ``InvalidInput`` with the offending ``field`` in ``details``.
    """

    @abc.abstractmethod
    def register(
        self,
        name: str,
        source: Any,
        *,
        description: str = "",
        tags: Mapping[str, Any] | None = None,
    ) -> DatasetVersion:
        """Register ``source`` (see :mod:`loopml.data.sources`) as the next version of ``name``;
        rows that version already holds return that version instead."""

    @abc.abstractmethod
    def get(self, name: str, version: int | str | None = None) -> DatasetVersion:
        """One version of ``name``: ``None`` or ``"latest"`` is the newest."""

    @abc.abstractmethod
    def get_by_digest(self, digest: str) -> DatasetVersion | None:
        """The first-registered version whose rows have content hash ``digest``, if any."""

    @abc.abstractmethod
    def list_datasets(self) -> list[tuple[str, int]]:
        """Every dataset name with its latest version number, by name."""

    @abc.abstractmethod
    def list_versions(self, name: str) -> list[DatasetVersion]:
        """Every version of ``name``, oldest first; NotFound if the dataset does not exist."""

    @abc.abstractmethod
    def load_table(self, dv: DatasetVersion) -> pa.Table:
        """The rows of ``dv`` as an Arrow table, the snapshot's sha256 verified on the way."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the service's connections."""

    def load(self, name: str, version: int | str | None = None, *, format: str = "pandas") -> Any:
        """The rows of a version as a pandas DataFrame, an Arrow table or a polars DataFrame."""
        check_format(format)
        return convert(self.load_table(self.get(name, version)), format)


def check_format(format: str) -> str:
    if format not in FORMATS:
        raise InvalidInput(
            f"unknown format {format!r}; use one of {', '.join(FORMATS)}", details={"field": "format"}
        )
    return format


def convert(table: pa.Table, format: str) -> Any:
    """``table`` as ``format`` (one of :data:`FORMATS`)."""
    if format == "arrow":
        return table
    if format == "polars":
        import polars  # optional extra: loaded only when asked for

        return polars.from_arrow(table)
    return table.to_pandas()
