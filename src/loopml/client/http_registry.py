"""The registry service over HTTP: the same contract as the local one, against ``/api/v1/registry``.

Transport, retries and error mapping are :class:`loopml.client.http.ApiClient`'s: errors come
back as the same :mod:`loopml.errors` classes the local service raises (``GateFailed`` with its
per-threshold ``details``, ``PermissionDenied`` for self-approval, ...). Mutations are sent as the
``user`` passed to the call, else the client's ``user`` (``LOOPML_USER``), in ``X-Loopml-User``.

>>> reg = HttpRegistryService("http://127.0.0.1:5000", user="ana")  # doctest: +SKIP
>>> reg.get_model_version_by_alias("churn", "champion").version      # doctest: +SKIP
3
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from loopml.client.http import UserApiClient, _q
from loopml.registry import codec
from loopml.registry.records import (
    Evaluation,
    Gate,
    GateResult,
    Lineage,
    ModelStage,
    ModelVersion,
    ModelVersionPage,
    Promotion,
    PromotionRequest,
    RegisteredModel,
    RegisteredModelPage,
    RequestStatus,
    Transition,
)
from loopml.registry.service import RegistryService


class HttpRegistryService(UserApiClient, RegistryService):
    """:class:`RegistryService` over ``/api/v1/registry``; ``user`` is who mutations are recorded as."""

    def _model(self, name: str) -> str:
        return f"/registry/models/{_q(name)}"

    def _version(self, name: str, version: int | str) -> str:
        return f"{self._model(name)}/versions/{_q(str(version))}"

    # ---- registered models ---------------------------------------------------------------
    def create_registered_model(
        self,
        name: str,
        description: str | None = None,
        tags: dict[str, str] | None = None,
        user: str | None = None,
    ) -> RegisteredModel:
        body = {"name": name, "description": description, "tags": tags or {}}
        found = self._call("POST", "/registry/models", json=body, headers=self._as(user))
        return codec.registered_model_from_dict(found)

    def get_registered_model(self, name: str) -> RegisteredModel:
        return codec.registered_model_from_dict(self._call("GET", self._model(name)))

    def rename_registered_model(self, name: str, new_name: str, user: str | None = None) -> RegisteredModel:
        # Not blindly retried: a rename that landed would make the repeat fail with NotFound.
        found = self._call(
            "POST", f"{self._model(name)}/rename", json={"new_name": new_name}, headers=self._as(user)
        )
        return codec.registered_model_from_dict(found)

    def update_registered_model(
        self, name: str, description: str, user: str | None = None
    ) -> RegisteredModel:
        found = self._call(
            "PATCH", self._model(name), json={"description": description}, headers=self._as(user)
        )
        return codec.registered_model_from_dict(found)

    def delete_registered_model(self, name: str, user: str | None = None) -> None:
        self._call("DELETE", self._model(name), headers=self._as(user))

    def search_registered_models(
        self,
        filter_string: str = "",
        max_results: int = 100,
        order_by: Sequence[str] = (),
        page_token: str | None = None,
    ) -> RegisteredModelPage:
        params = _search_params(filter_string, max_results, order_by, page_token)
        found = self._call("GET", "/registry/models", params=params)
        models = [codec.registered_model_from_dict(m) for m in found["models"]]
        return RegisteredModelPage(models, found.get("next_page_token"))

    def set_registered_model_tag(self, name: str, key: str, value: str, user: str | None = None) -> None:
        path = f"{self._model(name)}/tags/{_q(key)}"
        self._call("PUT", path, json={"value": value}, headers=self._as(user))

    def delete_registered_model_tag(self, name: str, key: str, user: str | None = None) -> None:
        self._call("DELETE", f"{self._model(name)}/tags/{_q(key)}", headers=self._as(user))

    def get_latest_versions(self, name: str, stages: Sequence[str] = ()) -> list[ModelVersion]:
        params = {"stages": [str(s) for s in stages]} if stages else {}
        found = self._call("GET", f"{self._model(name)}/latest-versions", params=params)
        return [codec.model_version_from_dict(v) for v in found["versions"]]

    # ---- model versions ------------------------------------------------------------------
    def create_model_version(
        self,
        name: str,
        source: str,
        run_id: str | None = None,
        description: str | None = None,
        tags: dict[str, str] | None = None,
        model_id: str | None = None,
        user: str | None = None,
    ) -> ModelVersion:
        body = {
            "source": source,
            "run_id": run_id,
            "description": description,
            "tags": tags or {},
            "model_id": model_id,
        }
        found = self._call("POST", f"{self._model(name)}/versions", json=body, headers=self._as(user))
        return codec.model_version_from_dict(found)

    def get_model_version(self, name: str, version: int | str) -> ModelVersion:
        return codec.model_version_from_dict(self._call("GET", self._version(name, version)))

    def update_model_version(
        self, name: str, version: int | str, description: str, user: str | None = None
    ) -> ModelVersion:
        body = {"description": description}
        found = self._call("PATCH", self._version(name, version), json=body, headers=self._as(user))
        return codec.model_version_from_dict(found)

    def delete_model_version(self, name: str, version: int | str, user: str | None = None) -> None:
        self._call("DELETE", self._version(name, version), headers=self._as(user))

    def search_model_versions(
        self,
        filter_string: str = "",
        max_results: int = 1000,
        order_by: Sequence[str] = (),
        page_token: str | None = None,
    ) -> ModelVersionPage:
        params = _search_params(filter_string, max_results, order_by, page_token)
        found = self._call("GET", "/registry/versions", params=params)
        versions = [codec.model_version_from_dict(v) for v in found["versions"]]
        return ModelVersionPage(versions, found.get("next_page_token"))

    def set_model_version_tag(
        self, name: str, version: int | str, key: str, value: str, user: str | None = None
    ) -> None:
        path = f"{self._version(name, version)}/tags/{_q(key)}"
        self._call("PUT", path, json={"value": value}, headers=self._as(user))

    def delete_model_version_tag(
        self, name: str, version: int | str, key: str, user: str | None = None
    ) -> None:
        self._call("DELETE", f"{self._version(name, version)}/tags/{_q(key)}", headers=self._as(user))

    def get_model_version_download_uri(self, name: str, version: int | str) -> str:
        return str(self._call("GET", f"{self._version(name, version)}/download-uri")["artifact_uri"])

    # ---- aliases -------------------------------------------------------------------------
    def set_registered_model_alias(
        self, name: str, alias: str, version: int | str, user: str | None = None
    ) -> None:
        path = f"{self._model(name)}/aliases/{_q(alias)}"
        self._call("PUT", path, json={"version": str(version)}, headers=self._as(user))

    def delete_registered_model_alias(self, name: str, alias: str, user: str | None = None) -> None:
        # Not retried: a delete that landed would make the repeat fail with NotFound.
        path = f"{self._model(name)}/aliases/{_q(alias)}"
        self._call("DELETE", path, safe=False, headers=self._as(user))

    def get_model_version_by_alias(self, name: str, alias: str) -> ModelVersion:
        found = self._call("GET", f"{self._model(name)}/aliases/{_q(alias)}")
        return codec.model_version_from_dict(found)

    # ---- stages --------------------------------------------------------------------------
    def transition_model_version_stage(
        self,
        name: str,
        version: int | str,
        stage: str | ModelStage,
        archive_existing_versions: bool = False,
        reason: str | None = None,
        user: str | None = None,
    ) -> ModelVersion:
        body = {
            "stage": str(stage),
            "archive_existing_versions": archive_existing_versions,
            "reason": reason,
        }
        path = f"{self._version(name, version)}/stage"
        found = self._call("POST", path, json=body, headers=self._as(user))
        return codec.model_version_from_dict(found)

    # ---- gates, evaluations, approvals ---------------------------------------------------
    def set_gate(
        self,
        name: str,
        thresholds: Sequence[str],
        require_approval: bool = False,
        user: str | None = None,
    ) -> Gate:
        body = {"thresholds": list(thresholds), "require_approval": require_approval}
        found = self._call("PUT", f"{self._model(name)}/gate", json=body, headers=self._as(user))
        return codec.gate_from_dict(found)

    def get_gate(self, name: str) -> Gate | None:
        found = self._call("GET", f"{self._model(name)}/gate")["gate"]
        return None if found is None else codec.gate_from_dict(found)

    def record_evaluation(
        self,
        name: str,
        version: int | str,
        dataset_name: str,
        dataset_version: int,
        dataset_digest: str,
        metrics: dict[str, float],
        champion_version: int | None = None,
        champion_metrics: dict[str, float] | None = None,
        user: str | None = None,
    ) -> Evaluation:
        body = {
            "dataset_name": dataset_name,
            "dataset_version": dataset_version,
            "dataset_digest": dataset_digest,
            "metrics": metrics,
            "champion_version": champion_version,
            "champion_metrics": champion_metrics,
        }
        path = f"{self._version(name, version)}/evaluations"
        return codec.evaluation_from_dict(self._call("POST", path, json=body, headers=self._as(user)))

    def list_evaluations(self, name: str, version: int | str | None = None) -> list[Evaluation]:
        params = {} if version is None else {"version": str(version)}
        found = self._call("GET", f"{self._model(name)}/evaluations", params=params)
        return [codec.evaluation_from_dict(e) for e in found["evaluations"]]

    def check_gate(self, name: str, version: int | str) -> GateResult:
        return codec.gate_result_from_dict(self._call("GET", f"{self._version(name, version)}/gate-check"))

    def promote(
        self,
        name: str,
        version: int | str,
        to: str | ModelStage = ModelStage.PRODUCTION,
        reason: str | None = None,
        user: str | None = None,
    ) -> Promotion:
        body = {"to": str(to), "reason": reason}
        path = f"{self._version(name, version)}/promote"
        return codec.promotion_from_dict(self._call("POST", path, json=body, headers=self._as(user)))

    def list_requests(
        self, name: str | None = None, status: RequestStatus | str | None = RequestStatus.PENDING
    ) -> list[PromotionRequest]:
        params: dict[str, str] = {"status": "all" if status is None else str(status)}
        if name is not None:
            params["name"] = name
        found = self._call("GET", "/registry/requests", params=params)
        return [codec.request_from_dict(r) for r in found["requests"]]

    def get_request(self, request_id: str) -> PromotionRequest:
        return codec.request_from_dict(self._call("GET", f"/registry/requests/{_q(request_id)}"))

    def approve(
        self,
        request_id: str,
        reason: str | None = None,
        user: str | None = None,
        *,
        digest: str | None = None,
        expected_champion: int | None = None,
    ) -> Promotion:
        path = f"/registry/requests/{_q(request_id)}/approve"
        body = {"reason": reason, "digest": digest, "expected_champion": expected_champion}
        found = self._call("POST", path, json=body, headers=self._as(user))
        return codec.promotion_from_dict(found)

    def reject(self, request_id: str, reason: str | None = None, user: str | None = None) -> PromotionRequest:
        path = f"/registry/requests/{_q(request_id)}/reject"
        found = self._call("POST", path, json={"reason": reason}, headers=self._as(user))
        return codec.request_from_dict(found)

    def list_transitions(self, name: str, version: int | str | None = None) -> list[Transition]:
        params = {} if version is None else {"version": str(version)}
        found = self._call("GET", f"{self._model(name)}/transitions", params=params)
        return [codec.transition_from_dict(t) for t in found["transitions"]]

    # ---- lineage -------------------------------------------------------------------------
    def lineage(self, name: str, version: int | str) -> Lineage:
        return codec.lineage_from_dict(self._call("GET", f"{self._version(name, version)}/lineage"))

    def models_trained_on(self, dataset_name: str, dataset_version: int | str) -> list[ModelVersion]:
        path = f"/registry/datasets/{_q(dataset_name)}/versions/{_q(str(dataset_version))}/models"
        return [codec.model_version_from_dict(v) for v in self._call("GET", path)["versions"]]

    def card(self, name: str, version: int | str) -> str:
        return str(self._call("GET", f"{self._version(name, version)}/card")["markdown"])


def _search_params(
    filter_string: str, max_results: int, order_by: Sequence[str], page_token: str | None
) -> dict[str, Any]:
    params: dict[str, Any] = {"max_results": max_results}
    if filter_string:
        params["filter"] = filter_string
    if order_by:
        params["order_by"] = list(order_by)
    if page_token:
        params["page_token"] = page_token
    return params
