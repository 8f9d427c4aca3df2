"""Artifact trees: a manifest (path -> digest) in the metadata store over a blob store.

Identical files are stored once; a path is confined by :mod:`loopml.store.paths`
before this module is called. Directory listing is a range scan on the
manifest's primary key.

>>> import io, tempfile
>>> from loopml.store.blobs import open_blob_store
>>> from loopml.store.db import Database
>>> repo = ArtifactRepository(Database("sqlite://"), open_blob_store(tempfile.mkdtemp()))
>>> _ = repo.put("1/run/artifacts/a.txt", io.BytesIO(b"x"))
>>> [f.path for f in repo.list("1/run/artifacts")]
['1/run/artifacts/a.txt']
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from sqlalchemy import select

from loopml.errors import NotFound
from loopml.store.blobs import BlobStore
from loopml.store.db import Database
from loopml.store.schema import artifacts

_UPSERT = (
    "INSERT INTO artifacts (path, digest, size, created) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (path) DO UPDATE SET digest = excluded.digest, size = excluded.size, "
    "created = excluded.created"
)


@dataclass(frozen=True, slots=True)
class FileInfo:
    path: str
    is_dir: bool
    file_size: int | None = None
    digest: str | None = None


class ArtifactRepository:
    def __init__(self, db: Database, blobs: BlobStore) -> None:
        self.db = db
        self.blobs = blobs

    def put(self, path: str, stream: IO[bytes]) -> FileInfo:
        """Store the stream's bytes at ``path`` (replacing an earlier file there)."""
        digest, size = self.blobs.put(stream)
        with self.db.write() as conn:
            conn.exec_driver_sql(self.db.sql(_UPSERT), (path, digest, size, int(time.time() * 1000)))
        return FileInfo(path, False, size, digest)

    def put_file(self, path: str, local: Path) -> FileInfo:
        with open(local, "rb") as fh:
            return self.put(path, fh)

    def lookup(self, path: str) -> FileInfo | None:
        with self.db.read() as conn:
            row = conn.execute(
                select(artifacts.c.digest, artifacts.c.size).where(artifacts.c.path == path)
            ).first()
        return None if row is None else FileInfo(path, False, int(row.size), str(row.digest))

    def walk(self, prefix: str) -> list[FileInfo]:
        """Every file below ``prefix`` (all depths), sorted by path."""
        col = artifacts.c.path
        query = select(col, artifacts.c.size, artifacts.c.digest).order_by(col)
        if prefix:
            # '0' sorts right after '/', so this is "starts with prefix/" on the index.
            query = query.where(col > prefix + "/", col < prefix + "0")
        with self.db.read() as conn:
            rows = conn.execute(query).all()
        return [FileInfo(r.path, False, int(r.size), r.digest) for r in rows]

    def list(self, prefix: str) -> list[FileInfo]:
        """The immediate children of directory ``prefix``: files and sub-directories."""
        start = len(prefix) + 1 if prefix else 0
        children: dict[str, FileInfo] = {}
        for info in self.walk(prefix):
            rest = info.path[start:]
            head, sep, _ = rest.partition("/")
            full = info.path[:start] + head
            if sep:
                children.setdefault(full, FileInfo(full, True))
            else:
                children[full] = info
        return list(children.values())

    def iter_bytes(self, path: str) -> Iterator[bytes]:
        info = self.lookup(path)
        if info is None or info.digest is None:
            raise NotFound(f"artifact {path!r} does not exist", details={"path": path})
        return self.blobs.iter_verified(info.digest)

    def download(self, path: str, dest: Path) -> Path:
        """Copy the file or directory at ``path`` under ``dest``; returns the local path."""
        single = self.lookup(path)
        name = path.rsplit("/", 1)[-1]
        target = dest / name if path else dest
        if single is not None and single.digest is not None:
            self.blobs.copy_to(single.digest, target)
            return target
        files = self.walk(path)
        if not files and path:
            raise NotFound(f"artifact {path!r} does not exist", details={"path": path})
        start = len(path) + 1 if path else 0
        target.mkdir(parents=True, exist_ok=True)
        for info in files:
            assert info.digest is not None
            self.blobs.copy_to(info.digest, target / info.path[start:])
        return target

    def delete_tree(self, prefix: str) -> int:
        """Drop the manifest entries under ``prefix`` (blobs may be shared, so they stay)."""
        col = artifacts.c.path
        with self.db.write() as conn:
            result = conn.execute(
                artifacts.delete().where((col == prefix) | ((col > prefix + "/") & (col < prefix + "0")))
            )
        return int(result.rowcount)
