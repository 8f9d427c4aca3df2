"""The governance service over HTTP: ``/api/v1/auth`` and ``/api/v1/audit`` with ``LOOPML_TOKEN``."""

from __future__ import annotations

from typing import Any

from loopml.client.http import ApiClient
from loopml.governance.service import JSON, GovernanceService


class HttpGovernanceService(ApiClient, GovernanceService):
    """:class:`GovernanceService` against a loopml server."""

    def bootstrap(self, token: str, admin: str, password: str | None) -> JSON:
        body = {"token": token, "admin": admin, "password": password}
        found: JSON = self._call("POST", "/auth/bootstrap", json=body)
        return found

    def create_user(self, name: str, password: str | None, role: str | None) -> JSON:
        found: JSON = self._call(
            "POST", "/auth/users", json={"name": name, "password": password, "role": role}
        )
        return found

    def update_user(self, name: str, disabled: bool | None, password: str | None) -> JSON:
        found: JSON = self._call(
            "PATCH", f"/auth/users/{name}", json={"disabled": disabled, "password": password}
        )
        return found

    def list_users(self) -> list[JSON]:
        users: list[JSON] = self._call("GET", "/auth/users")["users"]
        return users

    def create_token(self, user: str | None, name: str, expires_in: int | None) -> JSON:
        body = {"name": name, "expires_in": expires_in}
        path = "/auth/tokens" if user is None else f"/auth/users/{user}/tokens"
        found: JSON = self._call("POST", path, json=body)
        return found

    def list_tokens(self, user: str | None) -> list[JSON]:
        params = {} if user is None else {"user": user}
        tokens: list[JSON] = self._call("GET", "/auth/tokens", params=params)["tokens"]
        return tokens

    def revoke_token(self, token_id: str) -> JSON:
        found: JSON = self._call("DELETE", f"/auth/tokens/{token_id}")
        return found

    def grant(self, user: str, role: str, resource_type: str, resource_name: str) -> JSON:
        body = {"user": user, "role": role, "resource_type": resource_type, "resource_name": resource_name}
        found: JSON = self._call("POST", "/auth/roles", json=body)
        return found

    def revoke_role(self, user: str, resource_type: str, resource_name: str) -> None:
        params = {"user": user, "resource_type": resource_type, "resource_name": resource_name}
        self._call("DELETE", "/auth/roles", params=params)

    def list_roles(self, user: str | None) -> list[JSON]:
        params = {} if user is None else {"user": user}
        found: list[JSON] = self._call("GET", "/auth/roles", params=params)["roles"]
        return found

    def audit_entries(
        self, since: int | None, actor: str | None, target: str | None, limit: int, after_seq: int = 0
    ) -> list[JSON]:
        params: dict[str, Any] = {"limit": limit, "after_seq": after_seq}
        params.update(
            {k: v for k, v in (("since", since), ("actor", actor), ("target", target)) if v is not None}
        )
        found: list[JSON] = self._call("GET", "/audit", params=params)["entries"]
        return found

    def audit_verify(self) -> JSON:
        found: JSON = self._call("GET", "/audit/verify")
        return found
