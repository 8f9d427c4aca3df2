"""Content-addressed blob storage: ``sha256/ab/cdef…``, written atomically, verified on read.

Backends are registered by URL scheme and only imported when used: a plain
path is the local filesystem; anything else (``s3://``, ``memory://``, …) goes
through fsspec.

>>> import tempfile, io
>>> store = open_blob_store(tempfile.mkdtemp())
>>> digest, size = store.put(io.BytesIO(b"hello"))
>>> store.read_bytes(digest)
b'hello'
"""

from __future__ import annotations

import abc
import hashlib
import io
import os
import re
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from loopml.errors import IntegrityError, InvalidInput, NotFound

CHUNK = 1 << 20
_WRITE_MAX = 1 << 30  # one write() moves at most this much (Linux caps a write near 2 GiB)
_DIGEST = re.compile(r"^[0-9a-f]{64}$")


def blob_key(digest: str) -> str:
    if not _DIGEST.match(digest):
        raise InvalidInput(f"{digest!r} is not a sha256 hex digest")
    return f"sha256/{digest[:2]}/{digest[2:]}"


class BlobStore(abc.ABC):
    """Subclasses implement :meth:`put` (hash while writing, publish atomically),
    :meth:`open_raw` (a binary stream of a stored blob) and :meth:`exists`; they may override
    :meth:`put_hashed` to store in-memory bytes without hashing them again."""

    @abc.abstractmethod
    def put(self, stream: IO[bytes]) -> tuple[str, int]:
        """Store the stream's bytes; return (sha256 hex digest, size)."""

    def put_hashed(self, data: bytes | memoryview, digest: str) -> tuple[str, int]:
        """Store ``data``, whose sha256 hex digest the caller has computed as ``digest``; return
        (digest, size).  The digest is trusted here (reads still verify it).  This default hashes
        again through :meth:`put` and refuses a wrong digest, storing nothing under it."""
        blob_key(digest)
        stored, size = self.put(io.BytesIO(data))
        if stored != digest:
            raise IntegrityError(
                f"bytes claimed to hash to {digest} hash to {stored}", details={"digest": digest}
            )
        return stored, size

    @abc.abstractmethod
    def open_raw(self, digest: str) -> IO[bytes]:
        """Open a stored blob without verification."""

    @abc.abstractmethod
    def exists(self, digest: str) -> bool: ...

    def iter_verified(self, digest: str) -> Iterator[bytes]:
        """Yield the blob's chunks; raise :class:`IntegrityError` at the end if it was altered."""
        hasher = hashlib.sha256()
        with self.open_raw(digest) as fh:
            while chunk := fh.read(CHUNK):
                hasher.update(chunk)
                yield chunk
        if hasher.hexdigest() != digest:
            raise IntegrityError(
                f"blob {digest} is corrupt (its content hashes to {hasher.hexdigest()}); "
                "restore it from a backup or log the artifact again",
                details={"digest": digest},
            )

    def verify(self, digest: str) -> None:
        """Read the whole blob through :meth:`iter_verified`: ``NotFound`` when it is missing,
        :class:`IntegrityError` when its bytes no longer hash to ``digest``."""
        for _ in self.iter_verified(digest):
            pass

    def read_bytes(self, digest: str) -> bytes:
        return b"".join(self.iter_verified(digest))

    def copy_to(self, digest: str, dest: Path) -> None:
        """Write a verified copy to ``dest``; nothing is left there if verification fails."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex}.part")
        try:
            with open(tmp, "wb") as out:
                for chunk in self.iter_verified(digest):
                    out.write(chunk)
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)


class LocalBlobStore(BlobStore):
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        (self.root / "tmp").mkdir(parents=True, exist_ok=True)

    def put(self, stream: IO[bytes]) -> tuple[str, int]:
        hasher, size = hashlib.sha256(), 0
        fd, tmp_name = tempfile.mkstemp(dir=self.root / "tmp")
        try:
            with os.fdopen(fd, "wb") as out:
                while chunk := stream.read(CHUNK):
                    hasher.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
                out.flush()
                os.fsync(out.fileno())
            digest = hasher.hexdigest()
            final = self.root / blob_key(digest)
            # Replace even when a copy exists: this one was hashed as written, so it also heals a
            # stored copy that rotted or was altered (readers holding the old file keep it).
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp_name, final)
            return digest, size
        finally:
            Path(tmp_name).unlink(missing_ok=True)

    def put_hashed(self, data: bytes | memoryview, digest: str) -> tuple[str, int]:
        """Write ``data`` to a temp file, fsync it and rename it into place (nothing is written
        when the blob is already stored); ``digest`` is not recomputed."""
        final = self.root / blob_key(digest)
        size = memoryview(data).nbytes
        if final.exists():
            return digest, size
        fd, tmp_name = tempfile.mkstemp(dir=self.root / "tmp")
        try:
            with os.fdopen(fd, "wb", buffering=0) as out:
                view, written = memoryview(data).cast("B"), 0
                while written < size:  # a raw write may be partial
                    written += out.write(view[written : written + _WRITE_MAX])
                os.fsync(out.fileno())
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp_name, final)
            return digest, size
        finally:
            Path(tmp_name).unlink(missing_ok=True)

    def open_raw(self, digest: str) -> IO[bytes]:
        try:
            return open(self.root / blob_key(digest), "rb")
        except FileNotFoundError:
            raise NotFound(f"blob {digest} is missing from {self.root}") from None

    def exists(self, digest: str) -> bool:
        return (self.root / blob_key(digest)).is_file()


class FsspecBlobStore(BlobStore):
    """Any fsspec filesystem; the temp object is moved into place once complete."""

    def __init__(self, url: str) -> None:
        import fsspec  # only when a remote root is configured

        self.fs: Any
        self.fs, self.root = fsspec.core.url_to_fs(url)
        self.root = self.root.rstrip("/")

    def put(self, stream: IO[bytes]) -> tuple[str, int]:
        hasher, size = hashlib.sha256(), 0
        tmp = f"{self.root}/tmp/{uuid.uuid4().hex}"
        with self.fs.open(tmp, "wb") as out:
            while chunk := stream.read(CHUNK):
                hasher.update(chunk)
                out.write(chunk)
                size += len(chunk)
        digest = hasher.hexdigest()
        final = f"{self.root}/{blob_key(digest)}"
        if self.fs.exists(final):
            self.fs.rm(tmp)
        else:
            self.fs.mv(tmp, final)
        return digest, size

    def put_hashed(self, data: bytes | memoryview, digest: str) -> tuple[str, int]:
        """Upload ``data`` to a temp object and move it into place; ``digest`` is not recomputed."""
        final = f"{self.root}/{blob_key(digest)}"
        size = memoryview(data).nbytes
        if self.fs.exists(final):
            return digest, size
        tmp = f"{self.root}/tmp/{uuid.uuid4().hex}"
        with self.fs.open(tmp, "wb") as out:
            out.write(data)
        self.fs.mv(tmp, final)
        return digest, size

    def open_raw(self, digest: str) -> IO[bytes]:
        path = f"{self.root}/{blob_key(digest)}"
        if not self.fs.exists(path):
            raise NotFound(f"blob {digest} is missing from {self.root}")
        fh: IO[bytes] = self.fs.open(path, "rb")
        return fh

    def exists(self, digest: str) -> bool:
        return bool(self.fs.exists(f"{self.root}/{blob_key(digest)}"))


def open_blob_store(root: str) -> BlobStore:
    """A plain path or ``file://`` URL is local; any other URL scheme goes to fsspec."""
    if "://" not in root:
        return LocalBlobStore(root)
    if root.startswith("file://"):
        return LocalBlobStore(root.removeprefix("file://"))
    return FsspecBlobStore(root)
