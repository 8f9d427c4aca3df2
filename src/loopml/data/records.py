"""Typed records of the data capability: dataset versions, their fields and diffs.

>>> f = Field("age", "int64", nullable=True)
>>> Field.from_dict(f.to_dict()) == f
True
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from loopml.data.profile import Profile


@dataclass(frozen=True, slots=True)
class Field:
    """One column: its name, Arrow type (as Arrow prints it) and whether it may hold nulls."""

    name: str
    type: str
    nullable: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "nullable": self.nullable}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Field:
        return cls(str(d["name"]), str(d["type"]), bool(d.get("nullable", True)))


@dataclass(frozen=True, slots=True)
class DatasetVersion:
    """A registered, immutable version of a dataset.

    ``digest`` is the content hash of the rows (see :mod:`loopml.data.hashing`);
    ``snapshot_digest`` is the sha256 of the stored Parquet snapshot in the artifact store.

    >>> dv = loopml.data.get("churn", 3)  # doctest: +SKIP
    >>> dv.ref, dv.num_rows                 # doctest: +SKIP
    ('churn@3', 10000)
    """

    name: str
    version: int
    digest: str
    num_rows: int
    schema: list[Field]
    profile: Profile
    source: str
    snapshot_digest: str
    size_bytes: int
    description: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    created_at: int = 0
    created_by: str = ""

    @property
    def ref(self) -> str:
        """``name@version``, the form ``loopml.data.parse_ref`` and the CLI accept."""
        return f"{self.name}@{self.version}"

    @property
    def uri(self) -> str:
        """The source string runs record for this version (``loopml:dataset/<name>/<version>``)."""
        return f"loopml:dataset/{self.name}/{self.version}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "digest": self.digest,
            "num_rows": self.num_rows,
            "schema": [f.to_dict() for f in self.schema],
            "profile": self.profile.to_dict(),
            "source": self.source,
            "snapshot_digest": self.snapshot_digest,
            "size_bytes": self.size_bytes,
            "description": self.description,
            "tags": dict(self.tags),
            "created_at": self.created_at,
            "created_by": self.created_by,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DatasetVersion:
        """The inverse of :meth:`to_dict` (how the HTTP API carries versions)."""
        return cls(
            name=str(d["name"]),
            version=int(d["version"]),
            digest=str(d["digest"]),
            num_rows=int(d["num_rows"]),
            schema=[Field.from_dict(f) for f in d["schema"]],
            profile=Profile.from_dict(d["profile"]),
            source=str(d["source"]),
            snapshot_digest=str(d["snapshot_digest"]),
            size_bytes=int(d["size_bytes"]),
            description=str(d.get("description", "")),
            tags={str(k): str(v) for k, v in (d.get("tags") or {}).items()},
            created_at=int(d.get("created_at", 0)),
            created_by=str(d.get("created_by", "")),
        )


@dataclass(frozen=True, slots=True)
class SchemaChange:
    """One column that differs between two versions: ``kind`` is added, removed, type or nullability."""

    column: str
    kind: str
    before: str | None
    after: str | None


@dataclass(frozen=True, slots=True)
class StatChange:
    """One statistic of one column that moved between two versions."""

    column: str
    stat: str
    before: Any
    after: Any


@dataclass(frozen=True, slots=True)
class DatasetDiff:
    """What changed from version ``a`` to version ``b``: schema, statistics and drift per column.

    ``drift`` maps a column present in both versions to its population stability index
    (PSI) computed on the stored histograms or top-value counts: below 0.1 is usually read
    as stable, above 0.25 as a significant shift.
    """

    a: str
    b: str
    num_rows: tuple[int, int]
    schema_changes: list[SchemaChange]
    stat_changes: list[StatChange]
    drift: dict[str, float]

    @property
    def identical(self) -> bool:
        return not self.schema_changes and not self.stat_changes and self.num_rows[0] == self.num_rows[1]

    def to_dict(self) -> dict[str, Any]:
        return {
            "a": self.a,
            "b": self.b,
            "num_rows": list(self.num_rows),
            "schema_changes": [
                {"column": c.column, "kind": c.kind, "before": c.before, "after": c.after}
                for c in self.schema_changes
            ],
            "stat_changes": [
                {"column": c.column, "stat": c.stat, "before": c.before, "after": c.after}
                for c in self.stat_changes
            ],
            "drift": dict(self.drift),
        }
