"""Dataset versions over the local stores: metadata in SQL, the rows as a Parquet blob.

Registration decodes each column once, in parallel; the content hash and the profile both
read that decoding (:mod:`loopml.data.analysis`).  The snapshot is one Parquet blob in the
content-addressed artifact store: a single registered Parquet file is stored as it is (it
already holds exactly those rows), anything else is written once as Parquet.  Registering
rows whose digest the dataset already has returns that version and stores nothing; rows
already registered under another name reuse that snapshot.

>>> svc = LocalDataService.from_settings(Settings.load(env={"LOOPML_HOME": "/tmp/lm"}))  # doctest: +SKIP
>>> dv = svc.register("churn", "data/churn.parquet")                                    # doctest: +SKIP
>>> svc.load("churn", dv.version).equals(pa.parquet.read_table("data/churn.parquet"))   # doctest: +SKIP
True
"""

from __future__ import annotations

import hashlib
import io
import re
import tempfile
import time
from collections.abc import Mapping
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import Row, exc, func, insert, select

from loopml.config import Settings
from loopml.data.analysis import analyse
from loopml.data.base import FORMATS, DataService
from loopml.data.profile import Profile
from loopml.data.records import DatasetVersion, Field
from loopml.data.sources import Source, read_source
from loopml.errors import InvalidInput, NotFound
from loopml.store.blobs import BlobStore, open_blob_store
from loopml.store.db import Database
from loopml.store.schema import dataset_versions as dv_table

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-/]{0,499}$")
__all__ = ["FORMATS", "LocalDataService", "check_dataset_name", "check_tags", "version_number"]
_RETRIES = 3  # concurrent registrations of one name race for the next version number


def check_dataset_name(name: object) -> str:
    """A dataset name: letters, digits, ``_ . - /``; starts with a letter or digit; <= 500 chars."""
    if not isinstance(name, str) or not name.strip():
        raise InvalidInput("dataset name must be a non-empty string", details={"field": "name"})
    if not _NAME.match(name):
        raise InvalidInput(
            f"dataset name {name!r} is not valid: use letters, digits, '_', '.', '-' or '/', "
            "start with a letter or digit, at most 500 characters",
            details={"field": "name"},
        )
    return name


def check_tags(tags: Mapping[str, Any] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in (tags or {}).items():
        if not isinstance(k, str) or not k:
            raise InvalidInput(f"tag key {k!r} must be a non-empty string", details={"field": "tags"})
        out[k] = str(v)
    return out


class LocalDataService(DataService):
    """Register, look up and load dataset versions on a metadata database and a blob store."""

    def __init__(self, db: Database, blobs: BlobStore, user: str = "") -> None:
        self.db = db
        self.blobs = blobs
        self.user = user or "unknown"

    @classmethod
    def from_settings(cls, settings: Settings) -> LocalDataService:
        db = Database(settings.database_url)
        return cls(db, open_blob_store(settings.artifact_root), settings.user)

    def close(self) -> None:
        self.db.dispose()

    # ---- registration -------------------------------------------------------------------------

    def register(
        self,
        name: str,
        source: Any,
        *,
        description: str = "",
        tags: Mapping[str, Any] | None = None,
    ) -> DatasetVersion:
        """Register ``source``'s rows as the next version of ``name`` (or return the version that
        already holds exactly these rows)."""
        check_dataset_name(name)
        tag_map = check_tags(tags)
        return self.register_source(name, read_source(source), description=description, tags=tag_map)

    def register_source(
        self,
        name: str,
        src: Source,
        *,
        description: str = "",
        tags: Mapping[str, Any] | None = None,
        user: str | None = None,
    ) -> DatasetVersion:
        """Register an already-read source; ``user`` (default: the service's) is recorded as its
        creator.  The server calls this with the client's upload, so the digest and the profile
        are always computed here, from the rows themselves."""
        check_dataset_name(name)
        tag_map = check_tags(tags)
        digest, profile = analyse(src.table)
        found = self._by_name_digest(name, digest)
        if found is not None:
            return found
        snapshot, size = self._snapshot(src, digest)
        schema = [Field(f.name, str(f.type), f.nullable) for f in src.schema]
        row = {
            "name": name,
            "digest": digest,
            "num_rows": src.table.num_rows,
            "schema": orjson.dumps([f.to_dict() for f in schema]).decode(),
            "profile": orjson.dumps(profile.to_dict(), option=orjson.OPT_SERIALIZE_NUMPY).decode(),
            "source": src.description,
            "snapshot_digest": snapshot,
            "size_bytes": size,
            "description": description,
            "tags": orjson.dumps(tag_map).decode(),
            "created_by": user or self.user,
        }
        return self._insert(row)

    def _snapshot(self, src: Source, digest: str) -> tuple[str, int]:
        """Store the rows once: reuse another name's snapshot of the same digest if there is one."""
        with self.db.read() as conn:
            known = conn.execute(
                select(dv_table.c.snapshot_digest, dv_table.c.size_bytes)
                .where(dv_table.c.digest == digest)
                .limit(1)
            ).first()
        if known is not None and self.blobs.exists(known.snapshot_digest):
            return str(known.snapshot_digest), int(known.size_bytes)
        if src.parquet_bytes is not None:  # the file's bytes as read: hashed once, here
            return self.blobs.put_hashed(src.parquet_bytes, hashlib.sha256(src.parquet_bytes).hexdigest())
        if src.parquet_file is not None:
            with open(src.parquet_file, "rb") as fh:
                return self.blobs.put(fh)
        with tempfile.SpooledTemporaryFile(max_size=64 << 20) as fh:
            pq.write_table(src.table, fh, compression="zstd")
            fh.seek(0)
            return self.blobs.put(fh)

    def _insert(self, row: dict[str, Any]) -> DatasetVersion:
        for attempt in range(_RETRIES):
            try:
                with self.db.write() as conn:
                    latest = conn.execute(
                        select(func.max(dv_table.c.version)).where(dv_table.c.name == row["name"])
                    ).scalar()
                    values = {**row, "version": int(latest or 0) + 1, "created_at": int(time.time() * 1000)}
                    conn.execute(insert(dv_table).values(**values))
                return self.get(row["name"], values["version"])
            except exc.IntegrityError:
                # Someone registered this name meanwhile: the same rows (return theirs) or others (retry).
                found = self._by_name_digest(row["name"], row["digest"])
                if found is not None:
                    return found
                if attempt == _RETRIES - 1:
                    raise
        raise AssertionError("unreachable")

    # ---- lookup -------------------------------------------------------------------------------

    def get(self, name: str, version: int | str | None = None) -> DatasetVersion:
        """One version of ``name``: ``None`` or ``"latest"`` is the newest."""
        check_dataset_name(name)
        number = version_number(version)
        query = select(dv_table).where(dv_table.c.name == name)
        query = query.where(dv_table.c.version == number) if number else query
        with self.db.read() as conn:
            row = conn.execute(query.order_by(dv_table.c.version.desc()).limit(1)).first()
        if row is None:
            raise self._missing(name, number)
        return _to_version(row)

    def _missing(self, name: str, number: int | None) -> NotFound:
        versions = self._version_numbers(name)
        if not versions:
            names = [n for n, _ in self.list_datasets()[:20]]
            known = f"; datasets are: {', '.join(names)}" if names else "; no dataset is registered yet"
            return NotFound(
                f"dataset {name!r} does not exist{known}", details={"name": name, "datasets": names}
            )
        listed = f"{versions[0]}..{versions[-1]}" if len(versions) > 1 else str(versions[0])
        return NotFound(
            f"dataset {name!r} has no version {number}; versions are {listed}",
            details={"name": name, "version": number, "versions": versions},
        )

    def _version_numbers(self, name: str) -> list[int]:
        with self.db.read() as conn:
            rows = conn.execute(
                select(dv_table.c.version).where(dv_table.c.name == name).order_by(dv_table.c.version)
            )
            return [int(v) for v in rows.scalars()]

    def _by_name_digest(self, name: str, digest: str) -> DatasetVersion | None:
        with self.db.read() as conn:
            row = conn.execute(
                select(dv_table).where(dv_table.c.name == name, dv_table.c.digest == digest)
            ).first()
        return None if row is None else _to_version(row)

    def get_by_digest(self, digest: str) -> DatasetVersion | None:
        """The first-registered version whose rows have content hash ``digest``, if any."""
        with self.db.read() as conn:
            row = conn.execute(
                select(dv_table)
                .where(dv_table.c.digest == digest)
                .order_by(dv_table.c.created_at, dv_table.c.name)
                .limit(1)
            ).first()
        return None if row is None else _to_version(row)

    def list_datasets(self) -> list[tuple[str, int]]:
        """Every dataset name with its latest version number, by name."""
        with self.db.read() as conn:
            rows = conn.execute(
                select(dv_table.c.name, func.max(dv_table.c.version))
                .group_by(dv_table.c.name)
                .order_by(dv_table.c.name)
            ).all()
        return [(str(n), int(v)) for n, v in rows]

    def list_versions(self, name: str) -> list[DatasetVersion]:
        """Every version of ``name``, oldest first; NotFound if the dataset does not exist."""
        check_dataset_name(name)
        with self.db.read() as conn:
            rows = conn.execute(
                select(dv_table).where(dv_table.c.name == name).order_by(dv_table.c.version)
            ).all()
        if not rows:
            raise self._missing(name, None)
        return [_to_version(r) for r in rows]

    # ---- loading ------------------------------------------------------------------------------

    def load_table(self, dv: DatasetVersion) -> pa.Table:
        """The registered rows as an Arrow table; the snapshot's sha256 is verified while reading."""
        data = self.blobs.read_bytes(dv.snapshot_digest)
        return pq.read_table(io.BytesIO(data))


def version_number(version: int | str | None) -> int | None:
    """A version argument as a number (``None`` for the newest), or InvalidInput."""
    if version is None or version == "latest":
        return None
    if isinstance(version, bool):
        raise InvalidInput("dataset version must be a positive integer", details={"field": "version"})
    if isinstance(version, str) and version.strip().isdigit():
        version = int(version)
    if isinstance(version, int) and version > 0:
        return version
    raise InvalidInput(
        f"dataset version {version!r} is not valid; use a positive integer or 'latest'",
        details={"field": "version"},
    )


def _to_version(row: Row[Any]) -> DatasetVersion:
    return DatasetVersion(
        name=row.name,
        version=int(row.version),
        digest=row.digest,
        num_rows=int(row.num_rows),
        schema=[Field.from_dict(f) for f in orjson.loads(row.schema)],
        profile=Profile.from_dict(orjson.loads(row.profile)),
        source=row.source,
        snapshot_digest=row.snapshot_digest,
        size_bytes=int(row.size_bytes),
        description=row.description,
        tags=orjson.loads(row.tags),
        created_at=int(row.created_at),
        created_by=row.created_by,
    )
