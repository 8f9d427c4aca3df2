"""Authentication, authorization and the audit context: one ASGI middleware in front of every route.

Every route the server answers (FastAPI routes, the MLflow fast path, inference) has exactly one
rule in :data:`RULES`: the role it needs and where its resource (experiment, registered model or
the project) comes from. A request that matches no rule is refused (deny by default);
``tests/integration/test_auth_routes.py`` fails when a route has no rule.

With auth off (the embedded default on 127.0.0.1) nobody is refused; the caller named by
``X-Loopml-User`` (or the basic-auth user name) is recorded as the audit actor. With auth on, the
identity is the token's (``Authorization: Bearer lm_...``, or basic auth with a token or a password
as the password, which is what ``MLFLOW_TRACKING_TOKEN`` / ``MLFLOW_TRACKING_USERNAME`` +
``MLFLOW_TRACKING_PASSWORD`` send) and ``X-Loopml-User`` is ignored.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import orjson
from sqlalchemy import Connection
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from loopml.config import Settings
from loopml.errors import LoopmlError, PermissionDenied, Unauthenticated
from loopml.governance import audit, roles
from loopml.governance.identity import IdentityService, Principal
from loopml.governance.roles import EXPERIMENT, MODEL, PROJECT, Role
from loopml.server.responses import JSONResponse
from loopml.store.db import Database

USER_HEADER = "X-Loopml-User"
SCOPE_USER = "loopml.user"
SCOPE_PRINCIPAL = "loopml.principal"
SCOPE_AUTH = "loopml.auth"  # set when auth is on: handlers must not trust headers
PUBLIC = "public"  # no credentials needed
SIGNED_IN = "signed-in"  # any valid credentials, no role
_PARAM = re.compile(r"\{(\w+)(:path)?\}")
_MAX_JSON_PEEK = 16 << 20
_MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})

Need = Role | str


@dataclass(frozen=True)
class Resource:
    """Where a rule's resource comes from: ``kind`` is project, experiment, run, model or request
    (runs and promotion requests are resolved to their experiment / model); ``source`` is "path"
    or "arg" (query string, then JSON body); ``many`` for a list argument (``experiment_ids``)."""

    kind: str = PROJECT
    param: str = ""
    source: str = "path"
    many: bool = False


PROJECT_WIDE = Resource()


@dataclass(frozen=True)
class Rule:
    method: str
    pattern: str
    needs: Need
    resource: Resource = PROJECT_WIDE


# One line per route: METHOD PATH NEEDS [RESOURCE]. NEEDS is public, signed-in or a role;
# RESOURCE is kind@param (from the path) or kind?param (query string, then JSON body), kind one of
# experiment, experiments (a list), run, model, request; absent: the project.
_TABLE = """
GET    /health                                                      public
GET    /v2/health/live                                              public
GET    /v2/health/ready                                             public
GET    /openapi.json                                                public
GET    /docs                                                        public
GET    /docs/oauth2-redirect                                        public
GET    /redoc                                                       public
GET    /metrics                                                     viewer

POST   /api/v1/auth/bootstrap                                       public
GET    /api/v1/auth/whoami                                          signed-in
GET    /api/v1/auth/tokens                                          signed-in
POST   /api/v1/auth/tokens                                          signed-in
DELETE /api/v1/auth/tokens/{token_id}                               signed-in
GET    /api/v1/auth/users                                           admin
POST   /api/v1/auth/users                                           admin
PATCH  /api/v1/auth/users/{name}                                    admin
POST   /api/v1/auth/users/{name}/tokens                             admin
GET    /api/v1/auth/roles                                           admin
POST   /api/v1/auth/roles                                           admin
DELETE /api/v1/auth/roles                                           admin
GET    /api/v1/audit                                                admin
GET    /api/v1/audit/verify                                         admin

POST   /api/v1/experiments                                          editor
GET    /api/v1/experiments                                          viewer
GET    /api/v1/experiments/by-name/{name}                           viewer
GET    /api/v1/experiments/{experiment_id}                          viewer  experiment@experiment_id
PATCH  /api/v1/experiments/{experiment_id}                          editor  experiment@experiment_id
DELETE /api/v1/experiments/{experiment_id}                          editor  experiment@experiment_id
POST   /api/v1/experiments/{experiment_id}/restore                  editor  experiment@experiment_id
PUT    /api/v1/experiments/{experiment_id}/tags/{key}               editor  experiment@experiment_id
DELETE /api/v1/experiments/{experiment_id}/tags/{key}               editor  experiment@experiment_id
POST   /api/v1/runs                                                 editor  experiment?experiment_id
POST   /api/v1/runs/search                                          viewer  experiments?experiment_ids
POST   /api/v1/runs/compare                                         viewer
GET    /api/v1/runs/{run_id}                                        viewer  run@run_id
PATCH  /api/v1/runs/{run_id}                                        editor  run@run_id
DELETE /api/v1/runs/{run_id}                                        editor  run@run_id
POST   /api/v1/runs/{run_id}/restore                                editor  run@run_id
POST   /api/v1/runs/{run_id}/batch                                  editor  run@run_id
DELETE /api/v1/runs/{run_id}/tags/{key}                             editor  run@run_id
GET    /api/v1/runs/{run_id}/metrics/{key}/history                  viewer  run@run_id
POST   /api/v1/runs/{run_id}/inputs                                 editor  run@run_id
GET    /api/v1/runs/{run_id}/artifacts                              viewer  run@run_id
PUT    /api/v1/runs/{run_id}/artifacts/{path:path}                  editor  run@run_id
GET    /api/v1/runs/{run_id}/artifact-content/{path:path}           viewer  run@run_id
GET    /api/v1/logged-models                                        viewer
GET    /api/v1/logged-models/{model_id}                             viewer
GET    /api/v1/logged-models/{model_id}/artifacts                   viewer
GET    /api/v1/logged-models/{model_id}/artifact-content/{path:path} viewer

POST   /api/v1/registry/models                                      editor
GET    /api/v1/registry/models                                      viewer
GET    /api/v1/registry/versions                                    viewer
GET    /api/v1/registry/requests                                    viewer
GET    /api/v1/registry/requests/{request_id}                       viewer  request@request_id
POST   /api/v1/registry/requests/{request_id}/approve               approver request@request_id
POST   /api/v1/registry/requests/{request_id}/reject                approver request@request_id
GET    /api/v1/registry/datasets/{dataset_name}/versions/{dataset_version}/models viewer
GET    /api/v1/registry/models/{name}                               viewer  model@name
PATCH  /api/v1/registry/models/{name}                               editor  model@name
DELETE /api/v1/registry/models/{name}                               editor  model@name
POST   /api/v1/registry/models/{name}/rename                        editor  model@name
PUT    /api/v1/registry/models/{name}/tags/{key}                    editor  model@name
DELETE /api/v1/registry/models/{name}/tags/{key}                    editor  model@name
GET    /api/v1/registry/models/{name}/latest-versions               viewer  model@name
POST   /api/v1/registry/models/{name}/versions                      editor  model@name
GET    /api/v1/registry/models/{name}/versions/{version}            viewer  model@name
PATCH  /api/v1/registry/models/{name}/versions/{version}            editor  model@name
DELETE /api/v1/registry/models/{name}/versions/{version}            editor  model@name
PUT    /api/v1/registry/models/{name}/versions/{version}/tags/{key} editor  model@name
DELETE /api/v1/registry/models/{name}/versions/{version}/tags/{key} editor  model@name
GET    /api/v1/registry/models/{name}/versions/{version}/download-uri viewer model@name
GET    /api/v1/registry/models/{name}/aliases/{alias}               viewer  model@name
PUT    /api/v1/registry/models/{name}/aliases/{alias}               approver model@name
DELETE /api/v1/registry/models/{name}/aliases/{alias}               approver model@name
POST   /api/v1/registry/models/{name}/versions/{version}/stage      approver model@name
PUT    /api/v1/registry/models/{name}/gate                          admin   model@name
GET    /api/v1/registry/models/{name}/gate                          viewer  model@name
POST   /api/v1/registry/models/{name}/versions/{version}/evaluations editor model@name
GET    /api/v1/registry/models/{name}/evaluations                   viewer  model@name
GET    /api/v1/registry/models/{name}/versions/{version}/gate-check viewer  model@name
POST   /api/v1/registry/models/{name}/versions/{version}/promote    editor  model@name
GET    /api/v1/registry/models/{name}/transitions                   viewer  model@name
GET    /api/v1/registry/models/{name}/versions/{version}/lineage    viewer  model@name
GET    /api/v1/registry/models/{name}/versions/{version}/card       viewer  model@name

POST   /api/v1/datasets/{name:path}/versions                        editor
GET    /api/v1/datasets                                             viewer
GET    /api/v1/datasets/by-digest/{digest}                          viewer
GET    /api/v1/datasets/{name:path}/versions/{version}/snapshot     viewer
GET    /api/v1/datasets/{name:path}/versions                        viewer
GET    /api/v1/datasets/{name:path}/versions/{version}              viewer

POST   /api/v1/endpoints                                            editor
GET    /api/v1/endpoints                                            viewer
GET    /api/v1/endpoints/{name}                                     viewer
PATCH  /api/v1/endpoints/{name}                                     editor
DELETE /api/v1/endpoints/{name}                                     editor
GET    /api/v1/endpoints/{name}/events                              viewer
POST   /api/v1/endpoints/{name}/events                              editor
GET    /api/v1/endpoints/{name}/traffic                             viewer
POST   /api/v1/endpoints/{name}/feedback                            editor
POST   /v2/models/{model}/infer                                     viewer
POST   /v2/models/{model}/versions/{version}/infer                  viewer
POST   /endpoints/{endpoint}/invocations                            viewer
GET    /v2                                                          viewer
GET    /v2/models/{model}                                           viewer
GET    /v2/models/{model}/versions/{version}                        viewer
GET    /v2/models/{model}/ready                                     viewer
GET    /v2/models/{model}/versions/{version}/ready                  viewer

POST   /api/v1/labels                                               editor
GET    /api/v1/performance/{endpoint}                               viewer
POST   /api/v1/monitors                                             editor
GET    /api/v1/monitors                                             viewer
GET    /api/v1/monitors/{name}                                      viewer
PUT    /api/v1/monitors/{name}                                      editor
DELETE /api/v1/monitors/{name}                                      editor
POST   /api/v1/monitors/{name}/run                                  editor
GET    /api/v1/monitors/{name}/runs                                 viewer
GET    /api/v1/alerts                                               viewer
GET    /api/v1/triggers                                             viewer
POST   /api/v1/triggers/{trigger_id}/claim                          editor

GET    /api/3.0/mlflow/server-info                                  viewer
GET    /ajax-api/3.0/mlflow/server-info                             viewer

GET    /api/v1/features                                             viewer
GET    /api/v1/features/{kind}/{name}                               viewer
POST   /api/v1/features/online                                      viewer
POST   /api/v1/features/push                                        editor
POST   /api/v1/features/materialize                                 editor

GET    /api/v1/pipelines                                            viewer
GET    /api/v1/pipelines/runs                                       viewer
GET    /api/v1/pipelines/runs/{run_id}                              viewer
GET    /api/v1/pipelines/runs/{run_id}/logs                         viewer
GET    /api/v1/pipelines/triggers                                   viewer
GET    /api/v1/pipelines/runs/{run_id}/steps/{step}                 viewer
GET    /api/v1/pipelines/definitions/{name}                         viewer
POST   /api/v1/pipelines/cache                                      viewer
POST   /api/v1/pipelines/values/verify                              viewer
GET    /api/v1/pipelines/blobs/{digest}                             viewer
POST   /api/v1/pipelines/runs                                       editor
POST   /api/v1/pipelines/runs/{run_id}/finish                       editor
PUT    /api/v1/pipelines/runs/{run_id}/tracking-run                 editor
PUT    /api/v1/pipelines/runs/{run_id}/steps/{step}                 editor
POST   /api/v1/pipelines/locks/{pipeline}                           editor
DELETE /api/v1/pipelines/locks/{pipeline}                           editor
POST   /api/v1/pipelines/locks/{pipeline}/renew                     editor
POST   /api/v1/pipelines/locks/{pipeline}/unlock                    editor
PUT    /api/v1/pipelines/definitions/{name}                         editor
DELETE /api/v1/pipelines/definitions/{name}                         editor
POST   /api/v1/pipelines/definitions/{name}/cursor                  editor
POST   /api/v1/pipelines/triggers                                   editor
PATCH  /api/v1/pipelines/triggers/{trigger_id}                      editor
PUT    /api/v1/pipelines/blobs/{digest}                             editor

GET    /                                                            public
GET    /ui/static/{name}                                            public
GET    /ui/                                                         viewer
GET    /ui/audit                                                    admin
GET    /ui/compare                                                  viewer
GET    /ui/datasets                                                 viewer
GET    /ui/datasets/{name}                                          viewer
GET    /ui/datasets/{name}/diff                                     viewer
GET    /ui/endpoints                                                viewer
GET    /ui/endpoints/{name}                                         viewer
GET    /ui/endpoints/{name}/stats.json                              viewer
POST   /ui/endpoints/{name}/rollback                                editor
POST   /ui/endpoints/{name}/rollout                                 editor
POST   /ui/endpoints/{name}/split                                   editor
GET    /ui/experiments/{experiment_id}                              viewer  experiment@experiment_id
GET    /ui/features                                                 viewer
GET    /ui/models                                                   viewer
GET    /ui/models/{name}                                            viewer  model@name
GET    /ui/models/{name}/versions/{version}                         viewer  model@name
POST   /ui/requests/{request_id}/approve                            approver request@request_id
POST   /ui/requests/{request_id}/reject                             approver request@request_id
GET    /ui/monitoring                                               viewer
GET    /ui/monitoring/{name}                                        viewer
GET    /ui/pipelines                                                viewer
GET    /ui/runs/{run_id}                                            viewer  run@run_id
GET    /ui/runs/{run_id}/artifacts/{path:path}                      viewer  run@run_id
GET    /ui/runs/{run_id}/raw/{path:path}                            viewer  run@run_id
"""

# The MLflow REST API, under both /api/2.0/mlflow and /ajax-api/2.0/mlflow.
_MLFLOW_TABLE = """
POST   /experiments/create                     editor
GET    /experiments/get                        viewer   experiment?experiment_id
GET    /experiments/get-by-name                viewer
POST   /experiments/search                     viewer
GET    /experiments/search                     viewer
POST   /experiments/update                     editor   experiment?experiment_id
POST   /experiments/delete                     editor   experiment?experiment_id
POST   /experiments/restore                    editor   experiment?experiment_id
POST   /experiments/set-experiment-tag         editor   experiment?experiment_id
POST   /experiments/delete-experiment-tag      editor   experiment?experiment_id
POST   /runs/create                            editor   experiment?experiment_id
GET    /runs/get                               viewer   run?run_id
POST   /runs/update                            editor   run?run_id
POST   /runs/delete                            editor   run?run_id
POST   /runs/restore                           editor   run?run_id
POST   /runs/log-metric                        editor   run?run_id
POST   /runs/log-parameter                     editor   run?run_id
POST   /runs/set-tag                           editor   run?run_id
POST   /runs/delete-tag                        editor   run?run_id
POST   /runs/log-batch                         editor   run?run_id
POST   /runs/log-inputs                        editor   run?run_id
POST   /runs/outputs                           editor   run?run_id
POST   /runs/search                            viewer   experiments?experiment_ids
GET    /runs/search                            viewer   experiments?experiment_ids
GET    /metrics/get-history                    viewer   run?run_id
POST   /logged-models                          editor   experiment?experiment_id
POST   /logged-models/search                   viewer   experiments?experiment_ids
GET    /logged-models/{model_id}               viewer
PATCH  /logged-models/{model_id}               editor
DELETE /logged-models/{model_id}               editor
PATCH  /logged-models/{model_id}/tags          editor
DELETE /logged-models/{model_id}/tags/{tag_key} editor
POST   /logged-models/{model_id}/params        editor
POST   /registered-models/create               editor
GET    /registered-models/get                  viewer   model?name
POST   /registered-models/rename               editor   model?name
PATCH  /registered-models/update               editor   model?name
DELETE /registered-models/delete               editor   model?name
GET    /registered-models/search               viewer
POST   /registered-models/get-latest-versions  viewer   model?name
GET    /registered-models/get-latest-versions  viewer   model?name
POST   /registered-models/set-tag              editor   model?name
DELETE /registered-models/delete-tag           editor   model?name
POST   /registered-models/alias                approver model?name
DELETE /registered-models/alias                approver model?name
GET    /registered-models/alias                viewer   model?name
POST   /model-versions/create                  editor   model?name
GET    /model-versions/get                     viewer   model?name
PATCH  /model-versions/update                  editor   model?name
DELETE /model-versions/delete                  editor   model?name
POST   /model-versions/transition-stage        approver model?name
GET    /model-versions/search                  viewer
GET    /model-versions/get-download-uri        viewer   model?name
POST   /model-versions/set-tag                 editor   model?name
DELETE /model-versions/delete-tag              editor   model?name
"""

# The mlflow-artifacts proxy, under /api/2.0/mlflow-artifacts and /ajax-api/2.0/mlflow-artifacts.
_ARTIFACTS_TABLE = """
GET    /artifacts                              viewer
GET    /artifacts/{path:path}                  viewer
PUT    /artifacts/{path:path}                  editor
DELETE /artifacts/{path:path}                  editor
"""


def parse_rules(text: str, prefixes: Sequence[str] = ("",)) -> list[Rule]:
    """Rules from table lines ``METHOD PATH NEEDS [kind@param | kind?param]``."""
    out: list[Rule] = []
    for line in text.strip().splitlines():
        if not line.strip():
            continue
        method, path, needs, *rest = line.split()
        need: Need = needs if needs in (PUBLIC, SIGNED_IN) else Role.parse(needs)
        resource = PROJECT_WIDE
        if rest:
            kind, _, param = rest[0].replace("?", "@").partition("@")
            many = kind == "experiments"
            resource = Resource(
                EXPERIMENT if many else kind, param, "path" if "@" in rest[0] else "arg", many
            )
        out += [Rule(method, prefix + path, need, resource) for prefix in prefixes]
    return out


RULES: list[Rule] = [
    *parse_rules(_TABLE),
    *parse_rules(_MLFLOW_TABLE, ("/api/2.0/mlflow", "/ajax-api/2.0/mlflow")),
    *parse_rules(_ARTIFACTS_TABLE, ("/api/2.0/mlflow-artifacts", "/ajax-api/2.0/mlflow-artifacts")),
]


def add_rules(*rules: Rule) -> None:
    """Register rules for routes added elsewhere (call before the app is built)."""
    RULES.extend(rules)


def _compile(path: str) -> re.Pattern[str]:
    pattern = _PARAM.sub(
        lambda m: f"(?P<{m[1]}>{'.+' if m[2] else '[^/]+'})",
        re.escape(path).replace(r"\{", "{").replace(r"\}", "}"),
    )
    return re.compile(f"^{pattern}$")


class RuleTable:
    """Rules by (method, path): static paths by dict lookup, parameterised ones by regex."""

    def __init__(self, rules: Sequence[Rule]) -> None:
        self.static: dict[tuple[str, str], Rule] = {}
        self.dynamic: list[tuple[str, re.Pattern[str], Rule]] = []
        for rule in rules:
            if "{" in rule.pattern:
                self.dynamic.append((rule.method, _compile(rule.pattern), rule))
            else:
                self.static[(rule.method, rule.pattern)] = rule

    def match(self, method: str, path: str) -> tuple[Rule, dict[str, str]] | None:
        method = "GET" if method == "HEAD" else method
        rule = self.static.get((method, path))
        if rule is not None:
            return rule, {}
        for m, pattern, candidate in self.dynamic:
            if m == method and (found := pattern.match(path)):
                return candidate, found.groupdict()
        return None


@dataclass
class Gatekeeper:
    """What the middleware needs: the identity service, lookups from runs and promotion requests
    to what they belong to, and whether authentication is on."""

    identity: IdentityService
    enabled: bool
    run_experiment: Callable[[str], str | None]
    request_model: Callable[[str], str | None]
    table: RuleTable = field(default_factory=lambda: RuleTable(RULES))
    _run_cache: dict[str, str | None] = field(default_factory=dict)

    def resources(
        self, rule: Rule, path_params: dict[str, str], args: dict[str, Any]
    ) -> list[tuple[str, str]]:
        """The (resource type, name) pairs a request touches; the project when none is named."""
        res = rule.resource
        if res.kind == PROJECT:
            return [(PROJECT, "")]
        raw = path_params.get(res.param) if res.source == "path" else args.get(res.param)
        values = [str(v) for v in raw] if isinstance(raw, list) else ([] if raw in (None, "") else [str(raw)])
        if not values:
            return [(PROJECT, "")]
        out: list[tuple[str, str]] = []
        for value in values:
            if res.kind == "run":
                exp = self._experiment_of(value)
                out.append((PROJECT, "") if exp is None else (EXPERIMENT, exp))
            elif res.kind == "request":
                model = self.request_model(value)
                out.append((PROJECT, "") if model is None else (MODEL, model))
            else:
                out.append((res.kind, value))
        return out

    def _experiment_of(self, run_id: str) -> str | None:
        if run_id not in self._run_cache:  # a run never changes experiment
            if len(self._run_cache) > 100_000:
                self._run_cache.clear()
            self._run_cache[run_id] = self.run_experiment(run_id)
        return self._run_cache[run_id]

    def check(
        self, principal: Principal, rule: Rule, targets: list[tuple[str, str]], conn: Connection
    ) -> None:
        """Raise :class:`PermissionDenied` unless ``principal`` may do ``rule`` on every target."""
        if principal.kind == "bootstrap":
            raise PermissionDenied(
                "the bootstrap token only creates the first admin (POST /api/v1/auth/bootstrap)"
            )
        if rule.needs == SIGNED_IN:
            return
        assert isinstance(rule.needs, Role)
        for rtype, rname in targets:
            roles.require(conn, principal.user, rule.needs, rtype, rname)

    def authenticate(self, headers: dict[str, str], conn: Connection) -> Principal | None:
        """The caller's principal from ``Authorization``; None when no credentials were sent."""
        scheme, _, value = headers.get("authorization", "").partition(" ")
        scheme, value = scheme.lower(), value.strip()
        if scheme == "bearer":
            return self.identity.authenticate_token(value, conn)
        if scheme == "basic":
            user, password = _basic(value)
            if user is None:
                raise Unauthenticated("malformed basic credentials")
            return self.identity.authenticate_password(user, password)
        if scheme:
            raise Unauthenticated(f"unsupported authorization scheme {scheme!r}; use Bearer or Basic")
        return None


def _basic(value: str) -> tuple[str | None, str]:
    try:
        decoded = base64.b64decode(value, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None, ""
    user, sep, password = decoded.partition(":")
    return (user.strip() or None) if sep else None, password


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", ())}


def _unverified_user(headers: dict[str, str]) -> str | None:
    """Auth off: who the caller says they are (X-Loopml-User, else the basic-auth user name)."""
    user = headers.get(USER_HEADER.lower(), "").strip()
    if user:
        return user
    scheme, _, value = headers.get("authorization", "").partition(" ")
    return _basic(value.strip())[0] if scheme.lower() == "basic" else None


class AuthMiddleware:
    """Authenticate, authorize by :data:`RULES`, and bind the audit context, for every request."""

    def __init__(self, app: ASGIApp, gatekeeper: Gatekeeper) -> None:
        self.app = app
        self.gk = gatekeeper

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method, path = scope["method"], scope["path"]
        headers = _headers(scope)
        found = self.gk.table.match(method, path)
        request_id = _request_id(headers)
        client = (scope.get("client") or ("", 0))[0] or ""
        ctx = audit.AuditContext(
            actor="anonymous", action=f"{method} {path}", request_id=request_id, client=client
        )
        if found is not None:
            ctx.action = f"{method} {found[0].pattern}"
        if not self.gk.enabled:
            ctx.actor = _unverified_user(headers) or "anonymous"
            if found is not None and method in _MUTATING:
                receive, args = await self._args(scope, receive, found)
                ctx.target = self._target(found[0], found[1], args)
            await self._run(scope, receive, send, ctx, method in _MUTATING)
            return
        try:
            receive, args = await self._args(scope, receive, found)
            principal = await run_in_threadpool(self._admit, headers, found, args, ctx)
        except LoopmlError as exc:
            await self._refuse(scope, receive, send, ctx, exc, headers)
            return
        scope = {**scope, SCOPE_AUTH: True}
        if principal is not None:
            scope.update({SCOPE_USER: principal.user, SCOPE_PRINCIPAL: principal})
        await self._run(scope, receive, send, ctx, method in _MUTATING)

    async def _run(
        self, scope: Scope, receive: Receive, send: Send, ctx: audit.AuditContext, audited: bool
    ) -> None:
        status = 0

        async def send_noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        token = audit.bind(ctx if audited else None)
        try:
            await self.app(scope, receive, send_noting_status)
        finally:
            audit.unbind(token)
        if status in (401, 403):  # refused by the handler (e.g. approving one's own request)
            ctx.after = {"status": status}
            await run_in_threadpool(audit.record, self.gk.identity.db, ctx, "denied")

    def _admit(
        self, headers: dict[str, str], found: tuple[Rule, dict[str, str]] | None, args: dict[str, Any],
        ctx: audit.AuditContext,
    ) -> Principal | None:  # fmt: skip
        """Runs in a worker thread: it reads the database (one read transaction)."""
        with self.gk.identity.db.read() as conn:
            return self._admit_in(conn, headers, found, args, ctx)

    def _admit_in(
        self, conn: Connection, headers: dict[str, str], found: tuple[Rule, dict[str, str]] | None,
        args: dict[str, Any], ctx: audit.AuditContext,
    ) -> Principal | None:  # fmt: skip
        principal = self.gk.authenticate(headers, conn)
        if principal is not None:
            ctx.actor, ctx.token_id = principal.user, principal.token_id
        if found is None:
            if principal is None:
                raise Unauthenticated("authentication required: send Authorization: Bearer <token>")
            raise PermissionDenied(f"no route {ctx.action} (and no permission rule for it)")
        rule, params = found
        if rule.needs == PUBLIC:
            return principal
        if principal is None:
            raise Unauthenticated(
                "authentication required: send Authorization: Bearer <token> (LOOPML_TOKEN or "
                "MLFLOW_TRACKING_TOKEN), or basic auth with a token or password"
            )
        targets = self.gk.resources(rule, params, args)
        ctx.target = ",".join(f"{t}:{n}" if n else t for t, n in targets)
        if rule.resource.kind in ("run", "request"):
            ctx.target += "/" + self._target(rule, params, args)
        self.gk.check(principal, rule, targets, conn)
        return principal

    def _target(self, rule: Rule, params: dict[str, str], args: dict[str, Any]) -> str:
        res = rule.resource
        value = params.get(res.param) if res.source == "path" else args.get(res.param)
        return res.kind if value in (None, "") else f"{res.kind}:{value}"

    async def _args(
        self, scope: Scope, receive: Receive, found: tuple[Rule, dict[str, str]] | None
    ) -> tuple[Receive, dict[str, Any]]:
        """Query arguments, plus the JSON body's when the rule takes its resource from there (the
        body is read once and replayed to the route)."""
        if found is None or found[0].resource.source != "arg":
            return receive, {}
        args: dict[str, Any] = {
            k: (v if len(v) > 1 else v[0])
            for k, v in parse_qs(scope.get("query_string", b"").decode("latin-1")).items()
        }
        if scope["method"] in ("GET", "HEAD") or found[0].resource.param in args:
            return receive, args
        chunks: list[bytes] = []
        size, more = 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            more = message.get("more_body", False) and size <= _MAX_JSON_PEEK
        body = b"".join(chunks)
        try:
            parsed = orjson.loads(body) if body and size <= _MAX_JSON_PEEK else {}
        except orjson.JSONDecodeError:
            parsed = {}
        if isinstance(parsed, dict):
            args = {**parsed, **args}
        return _replay(body, receive, more), args

    async def _refuse(
        self, scope: Scope, receive: Receive, send: Send, ctx: audit.AuditContext, exc: LoopmlError,
        headers: dict[str, str],
    ) -> None:  # fmt: skip
        if isinstance(exc, Unauthenticated):
            outcome = "login_failed" if headers.get("authorization") else "unauthenticated"
        else:
            outcome = "denied"
        ctx.after = {"status": exc.status_code, "message": exc.message}
        await run_in_threadpool(audit.record, self.gk.identity.db, ctx, outcome)
        response = JSONResponse(exc.to_dict(), status_code=exc.status_code)
        if isinstance(exc, Unauthenticated):
            # A browser asks for a user name and password (a token works) on a Basic challenge.
            browser = scope["path"] == "/" or scope["path"].startswith("/ui/")
            response.headers["WWW-Authenticate"] = (
                'Basic realm="loopml"' if browser else 'Bearer realm="loopml"'
            )
        await response(scope, receive, send)


def _replay(body: bytes, receive: Receive, more: bool) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": more}
        return await receive()

    return replay


def _request_id(headers: dict[str, str]) -> str:
    given = headers.get("x-request-id", "")
    return given if 0 < len(given) <= 64 and given.isascii() and given.isprintable() else uuid.uuid4().hex


def refusal_recorder(db: Database) -> Callable[[Scope, str, LoopmlError], None]:
    """The hardening middleware's ``on_refused``: one audit entry per refused request, appended
    in its own transaction like the refusals above. Nothing was verified, so the actor is
    ``unverified:<name>`` (``X-Loopml-User`` or the basic-auth user name) or ``anonymous``."""

    def record_refusal(scope: Scope, reason: str, exc: LoopmlError) -> None:
        headers = _headers(scope)
        claimed = _unverified_user(headers)
        ctx = audit.AuditContext(
            actor=f"unverified:{claimed}" if claimed else "anonymous",
            action=f"refused:{reason}",
            target=str(scope.get("path", "")),
            request_id=_request_id(headers),
            client=(scope.get("client") or ("", 0))[0] or "",
            after={"status": exc.status_code, "method": scope.get("method", "WS"), "message": exc.message},
        )
        audit.record(db, ctx, "refused")

    return record_refusal


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the server on this machine."""
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def auth_required(settings: Settings) -> bool:
    """Auth is on with ``--auth`` (LOOPML_AUTH=1) and always when bound off loopback."""
    return settings.auth or bool(settings.bind_host and not is_loopback(settings.bind_host))
