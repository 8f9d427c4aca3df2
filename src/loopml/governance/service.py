"""One governance interface, two implementations: over the local store, and over HTTP.

The CLI (``loopml users``, ``loopml audit``) talks to :class:`GovernanceService`; which one it
gets depends on ``LOOPML_TRACKING_URI`` (a server: its ``/api/v1/auth`` and ``/api/v1/audit``
routes, authenticated by ``LOOPML_TOKEN``).
"""

from __future__ import annotations

import abc
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from typing import Any

from loopml.governance import audit, roles
from loopml.governance.identity import IdentityService, NewToken
from loopml.store.db import Database

JSON = dict[str, Any]


class GovernanceService(abc.ABC):
    """Users, tokens, roles and the audit log; every answer is JSON-ready."""

    @abc.abstractmethod
    def bootstrap(self, token: str, admin: str, password: str | None) -> JSON:
        """Spend the bootstrap token on the first admin; answers its first API token."""

    @abc.abstractmethod
    def create_user(self, name: str, password: str | None, role: str | None) -> JSON: ...

    @abc.abstractmethod
    def update_user(self, name: str, disabled: bool | None, password: str | None) -> JSON: ...

    @abc.abstractmethod
    def list_users(self) -> list[JSON]: ...

    @abc.abstractmethod
    def create_token(self, user: str | None, name: str, expires_in: int | None) -> JSON:
        """A token for ``user`` (None: the caller); the secret is in ``token``, shown once."""

    @abc.abstractmethod
    def list_tokens(self, user: str | None) -> list[JSON]: ...

    @abc.abstractmethod
    def revoke_token(self, token_id: str) -> JSON: ...

    @abc.abstractmethod
    def grant(self, user: str, role: str, resource_type: str, resource_name: str) -> JSON: ...

    @abc.abstractmethod
    def revoke_role(self, user: str, resource_type: str, resource_name: str) -> None: ...

    @abc.abstractmethod
    def list_roles(self, user: str | None) -> list[JSON]: ...

    @abc.abstractmethod
    def audit_entries(
        self, since: int | None, actor: str | None, target: str | None, limit: int, after_seq: int = 0
    ) -> list[JSON]: ...

    @abc.abstractmethod
    def audit_verify(self) -> JSON: ...

    @abc.abstractmethod
    def close(self) -> None:
        """Release connections."""


def _new(t: NewToken) -> JSON:
    return {**asdict(t.info), "token": t.secret}


class LocalGovernanceService(GovernanceService):
    """Directly on the metadata store (embedded mode, or an operator on the server's machine)."""

    def __init__(self, db: Database, user: str) -> None:
        audit.install()
        self.db = db
        self.ids = IdentityService(db)
        self.user = user

    @contextmanager
    def _audited(self, action: str, target: str, after: Any = None) -> Iterator[None]:
        """Local changes are audited too, as the local user, from "cli"."""
        ctx = audit.AuditContext(
            actor=self.user, action=f"cli {action}", target=target, client="cli", after=after
        )
        token = audit.bind(ctx)
        try:
            yield
        finally:
            audit.unbind(token)

    def bootstrap(self, token: str, admin: str, password: str | None) -> JSON:
        with self._audited("users bootstrap", f"user:{admin}"):
            return _new(self.ids.bootstrap(token, admin, password))

    def create_user(self, name: str, password: str | None, role: str | None) -> JSON:
        with self._audited("users create", f"user:{name}", {"role": role}):
            user = self.ids.create_user(name, password, self.user)
            if role:
                roles.grant(self.db, name, role, roles.PROJECT, "", self.user)
        return asdict(user)

    def update_user(self, name: str, disabled: bool | None, password: str | None) -> JSON:
        with self._audited("users update", f"user:{name}", {"disabled": disabled}):
            return self._update_user(name, disabled, password)

    def _update_user(self, name: str, disabled: bool | None, password: str | None) -> JSON:
        user = self.ids.get_user(name)
        if disabled is not None:
            user = self.ids.set_disabled(name, disabled)
        if password is not None:
            user = self.ids.set_password(name, password or None)
        return asdict(user)

    def list_users(self) -> list[JSON]:
        return [asdict(u) for u in self.ids.list_users()]

    def create_token(self, user: str | None, name: str, expires_in: int | None) -> JSON:
        with self._audited("users token", f"user:{user or self.user}"):
            return _new(self.ids.create_token(user or self.user, name, expires_in, self.user))

    def list_tokens(self, user: str | None) -> list[JSON]:
        return [asdict(t) for t in self.ids.list_tokens(user)]

    def revoke_token(self, token_id: str) -> JSON:
        with self._audited("users revoke-token", f"token:{token_id}"):
            return asdict(self.ids.revoke_token(token_id))

    def grant(self, user: str, role: str, resource_type: str, resource_name: str) -> JSON:
        where = {"role": role, "resource_type": resource_type, "resource_name": resource_name}
        with self._audited("users grant", f"user:{user}", where):
            return roles.grant(self.db, user, role, resource_type, resource_name, self.user).to_dict()

    def revoke_role(self, user: str, resource_type: str, resource_name: str) -> None:
        with self._audited("users revoke", f"user:{user}", {"resource_type": resource_type}):
            roles.revoke(self.db, user, resource_type, resource_name)

    def list_roles(self, user: str | None) -> list[JSON]:
        return [b.to_dict() for b in roles.list_bindings(self.db, user)]

    def audit_entries(
        self, since: int | None, actor: str | None, target: str | None, limit: int, after_seq: int = 0
    ) -> list[JSON]:
        found = audit.list_entries(
            self.db, since=since, actor=actor, target=target, limit=limit, after_seq=after_seq
        )
        return [e.to_dict() for e in found]

    def audit_verify(self) -> JSON:
        return audit.verify(self.db).to_dict()

    def close(self) -> None:
        self.db.dispose()
