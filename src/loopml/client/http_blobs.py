"""Pipeline step values on a loopml server: ``/api/v1/pipelines/blobs/{digest}``.

:class:`HttpBlobStore` is the server's content-addressed store over HTTP: an upload names the
sha256 it claims and the server refuses (400, storing nothing) bytes that hash otherwise; a
download is verified here again. :class:`MirroredBlobStore` is what a pipeline running against
a server uses: a local blob store (the laptop's artifact root, where step tasks in any process
read their inputs and write their outputs) in front of the server's, so every value ends up on
the server and a value another machine stored is fetched once, verified, then read locally.

>>> blobs = MirroredBlobStore(open_blob_store(".loopml/artifacts"), HttpBlobStore(api))  # doctest: +SKIP
>>> blobs.read_bytes(digest)  # fetched from the server on first use               # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import io
import tempfile
from collections.abc import Iterator
from typing import IO

import orjson

from loopml.client.http import ApiClient, RewoundBody, _error
from loopml.pipelines.values import Ref, digests
from loopml.store.blobs import CHUNK, BlobStore, blob_key

_SPOOL_BYTES = 8 << 20


class HttpBlobStore(BlobStore):
    """The server's pipeline blob store; ``api`` is the client whose connection and token it uses."""

    def __init__(self, api: ApiClient) -> None:
        self.api = api

    def _path(self, digest: str) -> str:
        blob_key(digest)  # refuses anything but a sha256 hex digest before it reaches a URL
        return f"/pipelines/blobs/{digest}"

    def put(self, stream: IO[bytes]) -> tuple[str, int]:
        """Hash the stream into a spool file, then upload it under its digest."""
        hasher, size = hashlib.sha256(), 0
        with tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES) as spool:
            while chunk := stream.read(CHUNK):
                hasher.update(chunk)
                spool.write(chunk)
                size += len(chunk)
            self.upload(spool, hasher.hexdigest(), size)  # type: ignore[arg-type]
        return hasher.hexdigest(), size

    def put_hashed(self, data: bytes | memoryview, digest: str) -> tuple[str, int]:
        """Upload ``data``; the server hashes it and refuses it (400) unless it matches ``digest``."""
        body = bytes(data)
        headers = {"Content-Type": "application/octet-stream"}
        self.api._call("PUT", self._path(digest), content=body, headers=headers)
        return digest, len(body)

    def upload(self, fh: IO[bytes], digest: str, size: int) -> None:
        """Stream a seekable file's bytes (re-sent from the start if the request is retried)."""
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size)}
        self.api._call("PUT", self._path(digest), content=RewoundBody(fh, CHUNK), headers=headers)

    def open_raw(self, digest: str) -> IO[bytes]:
        response = self.api._send("GET", self._path(digest), safe=True)
        if response.status_code >= 400:
            raise _error(response)
        return io.BytesIO(response.content)

    def exists(self, digest: str) -> bool:
        return self._head(digest, verify=False)

    def intact(self, digest: str) -> bool:
        """Whether the server holds the blob and its bytes still hash to ``digest``."""
        return self._head(digest, verify=True)

    def _head(self, digest: str, *, verify: bool) -> bool:
        path = self._path(digest) + ("?verify=true" if verify else "")
        response = self.api._send("HEAD", path, safe=True)
        if response.status_code == 404:
            return False
        if response.status_code >= 400:
            raise _error(response)
        return True


class MirroredBlobStore(BlobStore):
    """``local`` in front of ``remote``: writes go to both, reads are served locally and fetched
    (verified) from ``remote`` when missing here."""

    def __init__(self, local: BlobStore, remote: HttpBlobStore) -> None:
        self.local = local
        self.remote = remote

    def put(self, stream: IO[bytes]) -> tuple[str, int]:
        digest, size = self.local.put(stream)
        self.upload(digest)
        return digest, size

    def put_hashed(self, data: bytes | memoryview, digest: str) -> tuple[str, int]:
        self.local.put_hashed(data, digest)
        return self.remote.put_hashed(data, digest)

    def open_raw(self, digest: str) -> IO[bytes]:
        self.fetch(digest)
        return self.local.open_raw(digest)

    def exists(self, digest: str) -> bool:
        return self.local.exists(digest) or self.remote.exists(digest)

    def fetch(self, digest: str) -> None:
        """Copy the blob from the server unless it is here; raises ``NotFound`` or
        ``IntegrityError`` (nothing kept) when the server's copy is missing or corrupt."""
        if not self.local.exists(digest):
            data = self.remote.read_bytes(digest)  # verified against the digest
            self.local.put_hashed(data, digest)

    def upload(self, digest: str) -> None:
        """Send the local blob to the server unless the server has an intact copy (a corrupt
        one is replaced: the server hashes what it receives)."""
        if not self.remote.intact(digest):
            with self.local.open_raw(digest) as fh:
                size = fh.seek(0, io.SEEK_END)
                self.remote.upload(fh, digest, size)

    def refs_digests(self, refs: list[Ref]) -> list[str]:
        """Every blob the values need, a model's files included (its manifest is read for them)."""
        out: list[str] = []
        for ref in refs:
            for digest in digests(ref):
                out.append(digest)
            for item in _models(ref):
                manifest = orjson.loads(self.read_bytes(item["digest"]))
                out.extend(str(d) for d in manifest["files"].values())
        return out


def _models(ref: Ref) -> Iterator[Ref]:
    if ref["kind"] == "model":
        yield ref
    for item in ref.get("items", []) if ref["kind"] == "list" else []:
        yield from _models(item)
