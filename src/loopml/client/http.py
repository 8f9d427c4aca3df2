"""The tracking service over HTTP: the same contract as the local one, against ``/api/v1``.

Transient failures are retried with exponential backoff and full jitter. A
request that may not have reached the server (connection refused) is always
retried; one that may have been applied (timeout, 502/503/504) is retried only
when repeating it is harmless: reads, and ``log_batch``, whose rows are keyed
so a repeated batch leaves the same state.

>>> svc = HttpTrackingService("http://127.0.0.1:5000")  # doctest: +SKIP
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import IO, Any, Self
from urllib.parse import quote

import httpx

from loopml.config import Settings
from loopml.errors import LoopmlError, Unavailable, error_from_dict
from loopml.store.artifacts import FileInfo
from loopml.store.paths import safe_relpath
from loopml.tracking import codec
from loopml.tracking.records import (
    Comparison,
    DatasetInput,
    Experiment,
    ExperimentPage,
    LoggedModel,
    Metric,
    MetricTuple,
    Param,
    Run,
    RunInfo,
    RunPage,
    RunTag,
    ViewType,
)
from loopml.tracking.service import TrackingService

RETRY_STATUSES = frozenset({429, 502, 503, 504})
BACKOFF_BASE_S = 0.1
BACKOFF_CAP_S = 5.0


class RewoundBody:
    """A seekable file as an upload body httpx can send more than once (a retried request):
    each iteration starts again from the first byte."""

    def __init__(self, fh: IO[bytes], chunk: int = 1 << 20) -> None:
        self.fh, self.chunk = fh, chunk

    def __iter__(self) -> Iterator[bytes]:
        self.fh.seek(0)
        while data := self.fh.read(self.chunk):
            yield data


def backoff_delay(attempt: int, rng: random.Random | None = None) -> float:
    """Full jitter: uniform in [0, min(cap, base * 2**attempt)]."""
    return (rng or random).uniform(0, min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2**attempt))


class ApiClient:
    """The transport every HTTP service shares: ``/api/v1`` requests, retries, error mapping.

    >>> class Ping(ApiClient):                      # doctest: +SKIP
    ...     def ping(self) -> Any: return self._call("GET", "/ping")
    """

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        retries: int = 5,
        timeout: float = 60.0,
        transport: httpx.BaseTransport | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        headers = {**(headers or {}), **({"Authorization": f"Bearer {token}"} if token else {})}
        self.base_url = base_url.rstrip("/")
        self.retries = retries
        self._http = httpx.Client(
            base_url=self.base_url + "/api/v1", headers=headers, timeout=timeout, transport=transport
        )

    def close(self) -> None:
        self._http.close()

    # -- transport --------------------------------------------------------------------------
    def _send(self, method: str, path: str, *, safe: bool, **kwargs: Any) -> httpx.Response:
        attempt = 0
        while True:
            try:
                response = self._http.request(method, path, **kwargs)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                failure: Exception = exc
            except (httpx.ReadTimeout, httpx.ReadError, httpx.RemoteProtocolError) as exc:
                if not safe:
                    raise Unavailable(f"{method} {path} failed: {exc}; it may have been applied") from exc
                failure = exc
            else:
                if response.status_code not in RETRY_STATUSES or not safe:
                    return response
                failure = Unavailable(f"{method} {path} answered {response.status_code}")
            if attempt >= self.retries:
                raise Unavailable(
                    f"{self.base_url} did not answer {method} {path} after {attempt + 1} tries: {failure}"
                ) from failure
            time.sleep(backoff_delay(attempt))
            attempt += 1

    def _call(self, method: str, path: str, *, safe: bool | None = None, **kwargs: Any) -> Any:
        idempotent = method in ("GET", "PUT", "DELETE", "PATCH") if safe is None else safe
        response = self._send(method, path, safe=idempotent, **kwargs)
        if response.status_code >= 400:
            raise _error(response)
        return response.json() if response.content else {}


USER_HEADER = "X-Loopml-User"


class UserApiClient(ApiClient):
    """An :class:`ApiClient` that says who acts: ``X-Loopml-User`` on the calls that record it.

    Until token authentication lands the server trusts this header, so it names, not proves.

    >>> svc = HttpRegistryService.from_settings(settings)  # doctest: +SKIP
    """

    def __init__(
        self,
        base_url: str,
        *,
        user: str | None = None,
        token: str | None = None,
        retries: int = 5,
        timeout: float = 60.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(base_url, token=token, retries=retries, timeout=timeout, transport=transport)
        self.user = user or None

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        """The client ``LOOPML_TRACKING_URI``, ``LOOPML_TOKEN`` and ``LOOPML_USER`` describe."""
        return cls(
            str(settings.tracking_uri),
            user=settings.user or None,
            token=settings.token,
            retries=settings.http_retries,
            timeout=settings.http_timeout,
        )

    def _as(self, user: str | None = None) -> dict[str, str]:
        """The header naming ``user`` (default: this client's user), or none."""
        who = user or self.user
        return {USER_HEADER: who} if who else {}


class HttpTrackingService(ApiClient, TrackingService):
    """:class:`TrackingService` over ``/api/v1``; see :class:`ApiClient` for the arguments."""

    # -- experiments ------------------------------------------------------------------------
    def create_experiment(
        self, name: str, artifact_location: str | None = None, tags: dict[str, str] | None = None
    ) -> str:
        body = {"name": name, "artifact_location": artifact_location, "tags": tags or {}}
        return str(self._call("POST", "/experiments", json=body)["experiment_id"])

    def get_experiment(self, experiment_id: str) -> Experiment:
        return codec.experiment_from_dict(self._call("GET", f"/experiments/{_q(experiment_id)}"))

    def get_experiment_by_name(self, name: str) -> Experiment | None:
        found = self._call("GET", f"/experiments/by-name/{_q(name)}")["experiment"]
        return codec.experiment_from_dict(found) if found else None

    def search_experiments(
        self,
        view_type: ViewType = ViewType.ACTIVE_ONLY,
        max_results: int = 1000,
        filter_string: str | None = None,
        page_token: str | None = None,
        order_by: Sequence[str] = (),
    ) -> ExperimentPage:
        params: dict[str, Any] = {"view_type": ViewType(view_type).value, "max_results": max_results}
        if filter_string:
            params["filter"] = filter_string
        if page_token:
            params["page_token"] = page_token
        if order_by:
            params["order_by"] = list(order_by)
        body = self._call("GET", "/experiments", params=params)
        exps = [codec.experiment_from_dict(e) for e in body["experiments"]]
        return ExperimentPage(exps, body.get("next_page_token"))

    def rename_experiment(self, experiment_id: str, new_name: str) -> None:
        self._call("PATCH", f"/experiments/{_q(experiment_id)}", json={"name": new_name})

    def delete_experiment(self, experiment_id: str) -> None:
        self._call("DELETE", f"/experiments/{_q(experiment_id)}")

    def restore_experiment(self, experiment_id: str) -> None:
        self._call("POST", f"/experiments/{_q(experiment_id)}/restore", safe=True)

    def set_experiment_tag(self, experiment_id: str, key: str, value: str) -> None:
        self._call("PUT", f"/experiments/{_q(experiment_id)}/tags/{_q(key)}", json={"value": value})

    def delete_experiment_tag(self, experiment_id: str, key: str) -> None:
        self._call("DELETE", f"/experiments/{_q(experiment_id)}/tags/{_q(key)}")

    # -- runs -------------------------------------------------------------------------------
    def create_run(
        self,
        experiment_id: str,
        run_name: str | None = None,
        start_time: int | None = None,
        tags: dict[str, str] | None = None,
        user_id: str | None = None,
    ) -> Run:
        body = {
            "experiment_id": str(experiment_id),
            "run_name": run_name,
            "start_time": start_time,
            "tags": tags or {},
            "user_id": user_id,
        }
        return codec.run_from_dict(self._call("POST", "/runs", json=body))

    def get_run(self, run_id: str) -> Run:
        return codec.run_from_dict(self._call("GET", f"/runs/{_q(run_id)}"))

    def update_run(
        self,
        run_id: str,
        status: str | None = None,
        end_time: int | None = None,
        run_name: str | None = None,
    ) -> RunInfo:
        body = {"status": status, "end_time": end_time, "run_name": run_name}
        return RunInfo(**self._call("PATCH", f"/runs/{_q(run_id)}", json=body))

    def delete_run(self, run_id: str) -> None:
        self._call("DELETE", f"/runs/{_q(run_id)}")

    def restore_run(self, run_id: str) -> None:
        self._call("POST", f"/runs/{_q(run_id)}/restore", safe=True)

    def log_batch(
        self,
        run_id: str,
        metrics: Sequence[MetricTuple] = (),
        params: Sequence[Param] = (),
        tags: Sequence[RunTag] = (),
    ) -> None:
        body = {
            "metrics": [codec.metric_to_dict(Metric(*m)) for m in metrics],
            "params": [{"key": p[0], "value": str(p[1])} for p in params],
            "tags": [{"key": t[0], "value": str(t[1])} for t in tags],
        }
        self._call("POST", f"/runs/{_q(run_id)}/batch", json=body, safe=True)

    def delete_tag(self, run_id: str, key: str) -> None:
        self._call("DELETE", f"/runs/{_q(run_id)}/tags/{_q(key)}")

    def get_metric_history(self, run_id: str, key: str) -> list[Metric]:
        body = self._call("GET", f"/runs/{_q(run_id)}/metrics/{_q(key)}/history")
        return [codec.metric_from_dict(m) for m in body["metrics"]]

    def log_inputs(self, run_id: str, datasets: Sequence[DatasetInput]) -> None:
        body = {"datasets": [asdict(d) for d in datasets]}
        self._call("POST", f"/runs/{_q(run_id)}/inputs", json=body, safe=True)

    def search_runs(
        self,
        experiment_ids: Sequence[str],
        filter_string: str = "",
        view_type: ViewType = ViewType.ACTIVE_ONLY,
        max_results: int = 1000,
        order_by: Sequence[str] = (),
        page_token: str | None = None,
    ) -> RunPage:
        body = {
            "experiment_ids": [str(e) for e in experiment_ids],
            "filter": filter_string,
            "view_type": ViewType(view_type).value,
            "max_results": max_results,
            "order_by": list(order_by),
            "page_token": page_token,
        }
        found = self._call("POST", "/runs/search", json=body, safe=True)
        return RunPage([codec.run_from_dict(r) for r in found["runs"]], found.get("next_page_token"))

    def compare_runs(self, run_ids: Sequence[str]) -> Comparison:
        found = self._call("POST", "/runs/compare", json={"run_ids": list(run_ids)}, safe=True)
        return codec.comparison_from_dict(found)

    # -- artifacts --------------------------------------------------------------------------
    def put_artifact(self, run_id: str, path: str, stream: IO[bytes]) -> FileInfo:
        data = stream.read()  # buffered so a retry can resend it
        found = self._call("PUT", f"/runs/{_q(run_id)}/artifacts/{_qp(path)}", content=data)
        return codec.file_info_from_dict(found)

    def iter_artifact(self, run_id: str, path: str) -> Iterator[bytes]:
        response = self._send("GET", f"/runs/{_q(run_id)}/artifact-content/{_qp(path)}", safe=True)
        if response.status_code >= 400:
            raise _error(response)
        return iter([response.content])

    def list_artifacts(self, run_id: str, path: str | None = None, recursive: bool = False) -> list[FileInfo]:
        params: dict[str, str] = {"recursive": "true"} if recursive else {}
        if path:
            params["path"] = safe_relpath(path, allow_root=True)
        found = self._call("GET", f"/runs/{_q(run_id)}/artifacts", params=params)
        return [codec.file_info_from_dict(f) for f in found["files"]]

    # -- MLflow 3 logged models (read side) -------------------------------------------------
    def get_logged_model(self, model_id: str) -> LoggedModel:
        return codec.logged_model_from_dict(self._call("GET", f"/logged-models/{_q(model_id)}"))

    def search_logged_models(
        self,
        experiment_ids: Sequence[str],
        max_results: int = 100,
        page_token: str | None = None,
        filter_string: str = "",
    ) -> tuple[list[LoggedModel], str | None]:
        params: dict[str, Any] = {"experiment_id": [str(e) for e in experiment_ids]}
        params.update(max_results=max_results, filter=filter_string)
        if page_token:
            params["page_token"] = page_token
        body = self._call("GET", "/logged-models", params=params)
        return [codec.logged_model_from_dict(m) for m in body["models"]], body.get("next_page_token")

    def list_logged_model_artifacts(
        self, model_id: str, path: str | None = None, recursive: bool = False
    ) -> list[FileInfo]:
        params: dict[str, str] = {"recursive": "true"} if recursive else {}
        if path:
            params["path"] = safe_relpath(path, allow_root=True)
        found = self._call("GET", f"/logged-models/{_q(model_id)}/artifacts", params=params)
        return [codec.file_info_from_dict(f) for f in found["files"]]

    def iter_logged_model_artifact(self, model_id: str, path: str) -> Iterator[bytes]:
        url = f"/logged-models/{_q(model_id)}/artifact-content/{_qp(path)}"
        response = self._send("GET", url, safe=True)
        if response.status_code >= 400:
            raise _error(response)
        return iter([response.content])

    def download_artifacts(self, run_id: str, path: str, dest: Path) -> Path:
        dest = Path(dest)
        files = self.list_artifacts(run_id, path, recursive=True)
        name = path.rstrip("/").rsplit("/", 1)[-1]
        if not files:  # a single file
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(b"".join(self.iter_artifact(run_id, path)))
            return target
        root = dest / name if path else dest
        start = len(path.rstrip("/")) + 1 if path else 0
        for f in files:
            target = root / f.path[start:]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(b"".join(self.iter_artifact(run_id, f.path)))
        return root


def _q(value: str) -> str:
    return quote(str(value), safe="")


def _qp(path: str) -> str:
    # Checked here too: an HTTP client would otherwise normalise '..' away before sending.
    return quote(safe_relpath(path), safe="/")


def _error(response: httpx.Response) -> LoopmlError:
    try:
        body = response.json()
    except ValueError:
        body = {}
    if not isinstance(body, dict) or "message" not in body:
        body = {"message": f"HTTP {response.status_code}: {response.text[:200]}"}
    return error_from_dict(body, response.status_code)
