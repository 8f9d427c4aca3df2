"""Path confinement and the content-addressed blob store."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest

from loopml.errors import IntegrityError, InvalidInput
from loopml.store.blobs import BlobStore, LocalBlobStore, blob_key, open_blob_store
from loopml.store.paths import safe_relpath


@pytest.mark.parametrize("ok", ["a.txt", "model/MLmodel", "dir/sub/", "name with space.txt", "v1.2/x"])
def test_plain_relative_paths_are_accepted(ok: str) -> None:
    assert safe_relpath(ok) == ok.rstrip("/")


@pytest.mark.parametrize(
    "bad",
    [
        "..", "../x", "a/../../x", "./x", "/abs", "C:/x", "c:x", "a/C:/x", "a\\b", "a#b", "a;b", "a\x00b",
        "a\nb", "a//b", "%2e%2e/x", "%2E%2E%2Fx", "%252e%252e/x", "%25252e%25252e/x", "%2fetc",
        "a%5cb", "a%23b", "a%3bb", "a%00b",
    ],
)  # fmt: skip
def test_escapes_are_refused_in_every_encoding(bad: str) -> None:
    with pytest.raises(InvalidInput) as err:
        safe_relpath(bad)
    assert "not allowed" in err.value.message and err.value.details["field"] == "path"


def test_empty_path_is_only_the_root_when_allowed() -> None:
    assert safe_relpath("", allow_root=True) == ""
    with pytest.raises(InvalidInput):
        safe_relpath("")


def test_identical_content_is_stored_once(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    d1, size = store.put(io.BytesIO(b"same"))
    d2, _ = store.put(io.BytesIO(b"same"))
    assert d1 == d2 and size == 4
    assert len(list((tmp_path / "sha256").rglob("*"))) == 2  # one folder, one file
    assert list((tmp_path / "tmp").iterdir()) == []


def test_a_corrupted_blob_is_detected_and_never_copied(tmp_path: Path) -> None:
    store = open_blob_store(str(tmp_path / "blobs"))
    digest, _ = store.put(io.BytesIO(b"original bytes"))
    (tmp_path / "blobs" / blob_key(digest)).write_bytes(b"tampered bytes")
    with pytest.raises(IntegrityError, match=digest):
        store.read_bytes(digest)
    with pytest.raises(IntegrityError):
        store.copy_to(digest, tmp_path / "out" / "file")
    assert list((tmp_path / "out").iterdir()) == []


def test_fsspec_roots_work(tmp_path: Path) -> None:
    store = open_blob_store("memory://loopml-test-blobs")
    digest, _ = store.put(io.BytesIO(b"remote"))
    assert store.exists(digest) and store.read_bytes(digest) == b"remote"


def test_put_hashed_stores_bytes_under_the_given_digest_once(tmp_path: Path) -> None:
    data = b"already hashed" * 1000
    digest = hashlib.sha256(data).hexdigest()
    for store in (LocalBlobStore(tmp_path / "local"), open_blob_store("memory://loopml-test-hashed")):
        assert store.put_hashed(data, digest) == (digest, len(data))
        assert store.put_hashed(memoryview(data), digest) == (digest, len(data))
        assert store.read_bytes(digest) == data and store.put(io.BytesIO(data)) == (digest, len(data))
    assert list((tmp_path / "local" / "tmp").iterdir()) == []


def test_the_default_put_hashed_refuses_a_wrong_digest(tmp_path: Path) -> None:
    class Plain(LocalBlobStore):
        put_hashed = BlobStore.put_hashed  # the base class's: hashes again through put

    store = Plain(tmp_path)
    good = hashlib.sha256(b"x").hexdigest()
    assert store.put_hashed(b"x", good) == (good, 1)
    with pytest.raises(IntegrityError, match="hash to"):
        store.put_hashed(b"y", good)
    with pytest.raises(InvalidInput):
        store.put_hashed(b"x", "not-a-digest")
