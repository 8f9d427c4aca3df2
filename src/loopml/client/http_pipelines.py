"""The pipeline store over HTTP: the same contract as the SQL one, against ``/api/v1/pipelines``.

With ``LOOPML_TRACKING_URI=http://…`` a pipeline's steps run on this machine (in process, a
process pool or Ray) and everything is recorded on the server: runs, steps, the run lock, the
cache, logs and step values (through :class:`~loopml.client.http_blobs.MirroredBlobStore`,
whose local side under ``LOOPML_HOME`` is where step tasks read and write). A cache hit found
on the server is fetched and verified before it is reused, so a second machine with the same
code and inputs reuses what the first one stored.

>>> store = HttpPipelineStore.from_settings(settings)  # doctest: +SKIP
>>> store.list_runs("training", 5)                     # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any, Self

import httpx

from loopml.client.http import UserApiClient, _q
from loopml.client.http_blobs import HttpBlobStore, MirroredBlobStore
from loopml.config import Settings
from loopml.errors import NotFound
from loopml.pipelines.records import Definition, PipelineRunRecord, StepRecord, TriggerRecord
from loopml.pipelines.store import PipelineStore, owner_id
from loopml.pipelines.values import Ref
from loopml.store.blobs import open_blob_store


class HttpPipelineStore(UserApiClient, PipelineStore):
    """:class:`PipelineStore` over ``/api/v1/pipelines``; step tasks use ``artifact_root`` here."""

    blobs: MirroredBlobStore

    def __init__(
        self,
        base_url: str,
        *,
        artifact_root: str,
        user: str | None = None,
        token: str | None = None,
        retries: int = 5,
        timeout: float = 60.0,
        transport: httpx.BaseTransport | None = None,
        lease_s: float = 60.0,
    ) -> None:
        super().__init__(
            base_url, user=user, token=token, retries=retries, timeout=timeout, transport=transport
        )
        self.artifact_root = artifact_root
        self.lease_s = lease_s
        self.blobs = MirroredBlobStore(open_blob_store(artifact_root), HttpBlobStore(self))

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        """The server ``LOOPML_TRACKING_URI`` names, with ``LOOPML_TOKEN``; values are mirrored
        under ``LOOPML_ARTIFACT_ROOT`` (default ``LOOPML_HOME/artifacts``)."""
        return cls(
            str(settings.tracking_uri),
            artifact_root=settings.artifact_root,
            user=settings.user or None,
            token=settings.token,
            retries=settings.http_retries,
            timeout=settings.http_timeout,
            lease_s=settings.pipeline_lease_s,
        )

    def stage(self, refs: list[Ref]) -> None:
        for digest in self.blobs.refs_digests(refs):
            self.blobs.fetch(digest)

    def publish(self, refs: list[Ref], logs: dict[str, str]) -> None:
        for digest in [*self.blobs.refs_digests(refs), *logs.values()]:
            self.blobs.upload(digest)

    def valid(self, refs: list[Ref]) -> bool:
        """Checked on the server, where the values are kept: nothing is downloaded for it."""
        if not refs:
            return True
        found = self._call("POST", "/pipelines/values/verify", json={"refs": refs}, safe=True)
        return all(found["valid"])

    # -- runs --------------------------------------------------------------------------------
    def create_run(self, run: PipelineRunRecord) -> None:
        body = run.to_dict()
        for derived in ("steps", "duration_s"):
            body.pop(derived)
        self._call("POST", "/pipelines/runs", json=body, headers=self._as())

    def finish_run(self, run_id: str, status: str, error: str | None = None) -> None:
        body = {"status": status, "error": error}
        self._call("POST", f"/pipelines/runs/{_q(run_id)}/finish", json=body, safe=True)

    def set_tracking_run(self, run_id: str, tracking_run_id: str) -> None:
        body = {"tracking_run_id": tracking_run_id}
        self._call("PUT", f"/pipelines/runs/{_q(run_id)}/tracking-run", json=body)

    def get_run(self, run_id: str, *, with_steps: bool = True) -> PipelineRunRecord:
        return run_from_dict(self._call("GET", f"/pipelines/runs/{_q(run_id)}")["run"], with_steps)

    def list_runs(self, pipeline: str | None = None, limit: int = 50) -> list[PipelineRunRecord]:
        params: dict[str, Any] = {"limit": limit, **({"pipeline": pipeline} if pipeline else {})}
        found = self._call("GET", "/pipelines/runs", params=params)["runs"]
        return [run_from_dict(r, False) for r in found]

    # -- steps -------------------------------------------------------------------------------
    def save_step(self, step: StepRecord, *, new: bool) -> None:
        body = {k: v for k, v in step.to_dict().items() if k not in ("run_id", "step", "duration_s")}
        path = f"/pipelines/runs/{_q(step.run_id)}/steps/{_q(step.step)}"
        self._call("PUT", path, json={**body, "new": new})

    def get_step(self, run_id: str, step: str) -> StepRecord:
        return step_from_dict(self._call("GET", f"/pipelines/runs/{_q(run_id)}/steps/{_q(step)}")["step"])

    def cache_candidates(self, keys: list[str], per_key: int = 5) -> dict[str, list[StepRecord]]:
        found: dict[str, list[StepRecord]] = {}
        for start in range(0, len(keys), 500):
            body = {"keys": keys[start : start + 500], "per_key": per_key}
            answer = self._call("POST", "/pipelines/cache", json=body, safe=True)["candidates"]
            found.update({k: [step_from_dict(s) for s in steps] for k, steps in answer.items()})
        return found

    # -- locks -------------------------------------------------------------------------------
    def acquire(self, pipeline: str, run_id: str, owner: str | None = None) -> None:
        """Take the lock on the server, which decides staleness on its clock; its lease (which
        may differ from this machine's setting) is the one to renew within."""
        body = {"run_id": run_id, "owner": owner or owner_id()}
        found = self._call("POST", f"/pipelines/locks/{_q(pipeline)}", json=body)
        if isinstance(found.get("lease_s"), int | float) and found["lease_s"] > 0:
            self.lease_s = float(found["lease_s"])

    def renew(self, pipeline: str, run_id: str) -> bool:
        found = self._call(
            "POST", f"/pipelines/locks/{_q(pipeline)}/renew", json={"run_id": run_id}, safe=True
        )
        return bool(found["renewed"])

    def release(self, pipeline: str, run_id: str) -> None:
        self._call("DELETE", f"/pipelines/locks/{_q(pipeline)}", params={"run_id": run_id})

    def unlock(self, pipeline: str) -> str | None:
        found = self._call("POST", f"/pipelines/locks/{_q(pipeline)}/unlock")
        return None if found.get("run_id") is None else str(found["run_id"])

    # -- definitions -------------------------------------------------------------------------
    def put_definition(self, d: Definition) -> Definition:
        body = {k: v for k, v in d.to_dict().items() if k in _DEFINITION_FIELDS}
        found = self._call("PUT", f"/pipelines/definitions/{_q(d.name)}", json=body, headers=self._as())
        return Definition(**found["pipeline"])

    def get_definition(self, name: str) -> Definition:
        return Definition(**self._call("GET", f"/pipelines/definitions/{_q(name)}")["pipeline"])

    def list_definitions(self) -> list[Definition]:
        return [Definition(**d) for d in self._call("GET", "/pipelines")["pipelines"]]

    def delete_definition(self, name: str) -> None:
        self._call("DELETE", f"/pipelines/definitions/{_q(name)}", headers=self._as())

    def advance_cursor(self, name: str, column: str, old: int | None, new: int) -> bool:
        body = {"column": column, "old": old, "new": new}
        found = self._call("POST", f"/pipelines/definitions/{_q(name)}/cursor", json=body)
        return bool(found["moved"])

    def latest_dataset_version(self, dataset: str) -> int:
        try:
            found = self._call("GET", f"/datasets/{_q(dataset)}/versions")["versions"]
        except NotFound:
            return 0
        return max((int(v["version"]) for v in found), default=0)

    # -- trigger history ---------------------------------------------------------------------
    def record_trigger(self, rec: TriggerRecord) -> None:
        self._call("POST", "/pipelines/triggers", json=rec.to_dict(), headers=self._as())

    def update_trigger(self, trigger_id: str, status: str, run_id: str | None, message: str) -> None:
        body = {"status": status, "run_id": run_id, "message": message}
        self._call("PATCH", f"/pipelines/triggers/{_q(trigger_id)}", json=body)

    def list_triggers(self, pipeline: str | None = None, limit: int = 100) -> list[TriggerRecord]:
        params: dict[str, Any] = {"limit": limit, **({"pipeline": pipeline} if pipeline else {})}
        found = self._call("GET", "/pipelines/triggers", params=params)["triggers"]
        return [TriggerRecord(**t) for t in found]


_DEFINITION_FIELDS = ("name", "target", "schedule", "on_dataset", "on_alert", "params")


def step_from_dict(d: dict[str, Any]) -> StepRecord:
    """A step as the API shows it (``duration_s`` is derived, dropped)."""
    return StepRecord(**{k: v for k, v in d.items() if k != "duration_s"})


def run_from_dict(d: dict[str, Any], with_steps: bool = True) -> PipelineRunRecord:
    """A run as the API shows it, with its steps when ``with_steps``."""
    values = {k: v for k, v in d.items() if k not in ("duration_s", "steps")}
    run = PipelineRunRecord(**values)
    if with_steps:
        run.steps = [step_from_dict(s) for s in d.get("steps", [])]
    return run
