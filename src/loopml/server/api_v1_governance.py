"""``/api/v1/auth`` (bootstrap, users, tokens, roles) and ``/api/v1/audit`` (read and verify).

Who may call what is decided by :mod:`loopml.server.auth` before a handler runs; the handlers
here only add the rule "a token belongs to its user unless you are an admin".
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Query, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from loopml.errors import NotFound, PermissionDenied
from loopml.governance import audit, roles
from loopml.governance.identity import IdentityService, NewToken, TokenInfo, User
from loopml.governance.roles import Role
from loopml.server.auth import SCOPE_USER, USER_HEADER

router = APIRouter(prefix="/api/v1", tags=["governance"])
JSON = dict[str, Any]


class BootstrapIn(BaseModel):
    token: str = Field(description="The one-time bootstrap token printed at the server's first start.")
    admin: str
    password: str | None = None


class TokenIn(BaseModel):
    name: str = ""
    expires_in: int | None = Field(None, description="Seconds until the token expires (default: never).")


class UserIn(BaseModel):
    name: str
    password: str | None = None
    role: str | None = Field(None, description="A project-wide role to grant at once.")


class UserPatch(BaseModel):
    disabled: bool | None = None
    password: str | None = None


class BindingIn(BaseModel):
    user: str
    role: str
    resource_type: str = roles.PROJECT
    resource_name: str = ""


def _ids(request: Request) -> IdentityService:
    ids: IdentityService = request.app.state.identity
    return ids


def _me(request: Request) -> str:
    """The verified user (auth on), else who the caller says they are (auth off)."""
    user = request.scope.get(SCOPE_USER) or request.headers.get(USER_HEADER, "").strip()
    if not user:
        raise PermissionDenied("who are you? sign in with a token (LOOPML_TOKEN)")
    return str(user)


def _is_admin(request: Request, user: str) -> bool:
    return roles.role_of(_ids(request).db, user) is Role.ADMIN


def _user(u: User) -> JSON:
    return asdict(u)


def _token(t: TokenInfo) -> JSON:
    return asdict(t)


def _new(t: NewToken) -> JSON:
    return {**asdict(t.info), "token": t.secret}


@router.post("/auth/bootstrap")
async def bootstrap(body: BootstrapIn, request: Request) -> JSON:
    """Create the first admin with the bootstrap token; answers the admin's first API token."""
    new = await run_in_threadpool(_ids(request).bootstrap, body.token, body.admin, body.password)
    return _new(new)


@router.get("/auth/whoami")
async def whoami(request: Request) -> JSON:
    me = _me(request)
    bindings = await run_in_threadpool(roles.list_bindings, _ids(request).db, me)
    return {"user": me, "roles": [b.to_dict() for b in bindings]}


@router.get("/auth/tokens")
async def list_tokens(request: Request, user: str | None = None) -> JSON:
    me = _me(request)
    if user is not None and user != me and not _is_admin(request, me):
        raise PermissionDenied("only an admin lists another user's tokens")
    tokens = await run_in_threadpool(_ids(request).list_tokens, user or me)
    return {"tokens": [_token(t) for t in tokens]}


@router.post("/auth/tokens")
async def create_token(body: TokenIn, request: Request) -> JSON:
    """A new token for the caller; the secret is in this answer only."""
    me = _me(request)
    return _new(await run_in_threadpool(_ids(request).create_token, me, body.name, body.expires_in, me))


@router.delete("/auth/tokens/{token_id}")
async def revoke_token(token_id: str, request: Request) -> JSON:
    me, ids = _me(request), _ids(request)
    token = await run_in_threadpool(ids.get_token, token_id)
    if token.user != me and not _is_admin(request, me):
        raise NotFound(f"token {token_id!r} does not exist", details={"token_id": token_id})
    audit.note(target=f"token:{token_id}", after={"user": token.user})
    return _token(await run_in_threadpool(ids.revoke_token, token_id))


@router.get("/auth/users")
async def list_users(request: Request) -> JSON:
    return {"users": [_user(u) for u in await run_in_threadpool(_ids(request).list_users)]}


@router.post("/auth/users")
async def create_user(body: UserIn, request: Request) -> JSON:
    me, ids = _me(request), _ids(request)
    audit.note(target=f"user:{body.name}", after={"role": body.role})
    user = await run_in_threadpool(ids.create_user, body.name, body.password, me)
    if body.role:
        await run_in_threadpool(roles.grant, ids.db, body.name, body.role, roles.PROJECT, "", me)
    return _user(user)


@router.patch("/auth/users/{name}")
async def update_user(name: str, body: UserPatch, request: Request) -> JSON:
    ids = _ids(request)
    audit.note(
        target=f"user:{name}",
        after={"disabled": body.disabled, "password_changed": body.password is not None},
    )
    user = await run_in_threadpool(ids.get_user, name)
    if body.disabled is not None:
        user = await run_in_threadpool(ids.set_disabled, name, body.disabled)
    if body.password is not None:
        user = await run_in_threadpool(ids.set_password, name, body.password or None)
    return _user(user)


@router.post("/auth/users/{name}/tokens")
async def create_user_token(name: str, body: TokenIn, request: Request) -> JSON:
    """An admin issues a token for another user (e.g. a service account)."""
    me = _me(request)
    audit.note(target=f"user:{name}")
    return _new(await run_in_threadpool(_ids(request).create_token, name, body.name, body.expires_in, me))


@router.get("/auth/roles")
async def list_roles(request: Request, user: str | None = None) -> JSON:
    bindings = await run_in_threadpool(roles.list_bindings, _ids(request).db, user)
    return {"roles": [b.to_dict() for b in bindings]}


@router.post("/auth/roles")
async def grant_role(body: BindingIn, request: Request) -> JSON:
    me = _me(request)
    audit.note(target=f"user:{body.user}", after=body.model_dump())
    b = await run_in_threadpool(
        roles.grant, _ids(request).db, body.user, body.role, body.resource_type, body.resource_name, me
    )
    return b.to_dict()


@router.delete("/auth/roles")
async def revoke_role(
    request: Request, user: str, resource_type: str = roles.PROJECT, resource_name: str = ""
) -> JSON:
    audit.note(target=f"user:{user}", before={"resource_type": resource_type, "resource_name": resource_name})
    await run_in_threadpool(roles.revoke, _ids(request).db, user, resource_type, resource_name)
    return {}


@router.get("/audit")
async def list_audit(
    request: Request,
    since: Annotated[int | None, Query(ge=0, le=2**62)] = None,
    actor: str | None = None,
    target: str | None = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
    after_seq: Annotated[int, Query(ge=0, le=2**62)] = 0,  # huge values were a 500 (overflow)
) -> JSON:
    """Audit entries in order; ``since`` is epoch milliseconds, ``target`` a prefix."""
    entries = await run_in_threadpool(
        audit.list_entries, _ids(request).db, since=since, actor=actor, target=target, limit=limit,
        after_seq=after_seq,
    )  # fmt: skip
    return {"entries": [e.to_dict() for e in entries]}


@router.get("/audit/verify")
async def verify_audit(request: Request) -> JSON:
    return (await run_in_threadpool(audit.verify, _ids(request).db)).to_dict()


def install(app: FastAPI) -> None:
    """Mount the governance routes on ``app`` (``app.state.identity`` must be set)."""
    app.include_router(router)
