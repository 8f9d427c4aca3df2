"""The data service over HTTP: the same contract as the local one, against ``/api/v1/datasets``.

Registering reads the source here (:mod:`loopml.data.sources`, so a path names a file on the
caller's machine), uploads its rows as one Parquet stream and lets the server hash, profile and
store them.  A single Parquet file is uploaded as it is.  Registration is idempotent (the same
rows return the same version), so a failed upload is retried like a read.  Loading checks the
snapshot's sha256 against the version's record before decoding it.

>>> svc = HttpDataService("http://127.0.0.1:5000", user="ana")  # doctest: +SKIP
>>> svc.register("churn", "data/churn.parquet").ref              # doctest: +SKIP
'churn@1'
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import IO, Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from loopml.client.http import RewoundBody, UserApiClient, _error, _q
from loopml.data.base import DataService
from loopml.data.records import DatasetVersion
from loopml.data.service import check_dataset_name, check_tags, version_number
from loopml.data.sources import Source, read_source
from loopml.errors import IntegrityError

PARQUET = "application/vnd.apache.parquet"
CHUNK = 1 << 20


class HttpDataService(UserApiClient, DataService):
    """:class:`DataService` over ``/api/v1/datasets``; ``user`` is recorded as the creator."""

    def _versions(self, name: str) -> str:
        # One segment, '/' included: the server takes the name up to its last '/versions'.
        return f"/datasets/{_q(name)}/versions"

    # ---- registration --------------------------------------------------------------------
    def register(
        self,
        name: str,
        source: Any,
        *,
        description: str = "",
        tags: Mapping[str, Any] | None = None,
    ) -> DatasetVersion:
        check_dataset_name(name)
        params = {
            "description": description,
            "tags": orjson.dumps(check_tags(tags)).decode(),
        }
        src = read_source(source)
        params["source"] = src.description
        headers = {"Content-Type": PARQUET, **self._as()}
        with _parquet(src) as fh:
            size = os.fstat(fh.fileno()).st_size
            headers["Content-Length"] = str(size)
            found = self._call(
                "POST",
                self._versions(name),
                params=params,
                content=RewoundBody(fh, CHUNK),
                headers=headers,
                safe=True,
            )
        return DatasetVersion.from_dict(found)

    # ---- lookup --------------------------------------------------------------------------
    def get(self, name: str, version: int | str | None = None) -> DatasetVersion:
        check_dataset_name(name)
        number = version_number(version)
        path = f"{self._versions(name)}/{number or 'latest'}"
        return DatasetVersion.from_dict(self._call("GET", path))

    def get_by_digest(self, digest: str) -> DatasetVersion | None:
        found = self._call("GET", f"/datasets/by-digest/{_q(digest)}")["dataset_version"]
        return None if found is None else DatasetVersion.from_dict(found)

    def list_datasets(self) -> list[tuple[str, int]]:
        found = self._call("GET", "/datasets")["datasets"]
        return [(str(d["name"]), int(d["latest_version"])) for d in found]

    def list_versions(self, name: str) -> list[DatasetVersion]:
        check_dataset_name(name)
        return [DatasetVersion.from_dict(d) for d in self._call("GET", self._versions(name))["versions"]]

    # ---- loading -------------------------------------------------------------------------
    def load_table(self, dv: DatasetVersion) -> pa.Table:
        response = self._send("GET", f"{self._versions(dv.name)}/{dv.version}/snapshot", safe=True)
        if response.status_code >= 400:
            raise _error(response)
        actual = hashlib.sha256(response.content).hexdigest()
        if actual != dv.snapshot_digest:
            raise IntegrityError(
                f"the snapshot of dataset {dv.ref} arrived with sha256 {actual}, expected "
                f"{dv.snapshot_digest}; load it again, and if this repeats the server's copy is corrupt",
                details={"digest": dv.snapshot_digest},
            )
        return pq.read_table(io.BytesIO(response.content))


@contextmanager
def _parquet(src: Source) -> Iterator[IO[bytes]]:
    """The rows as one Parquet file: the registered file itself, else a temp file written once."""
    if src.parquet_file is not None:
        with open(src.parquet_file, "rb") as fh:
            yield fh
        return
    with tempfile.TemporaryFile(prefix="loopml-upload-") as tmp:
        pq.write_table(src.table, tmp, compression="zstd")
        tmp.flush()
        yield tmp
