"""Roles (viewer < editor < approver < admin) per experiment and per registered model, with
project-wide defaults; deny by default.

A user's role on a resource is their binding on that resource, else their project binding; the
user ``*`` stands for every authenticated user and is resolved the same way; the higher of the
two wins. A project admin is admin everywhere.

>>> from loopml.store.db import Database
>>> db = Database("sqlite:///:memory:")
>>> _ = grant(db, "bo", Role.VIEWER, "project", "", by="ana")
>>> _ = grant(db, "bo", Role.EDITOR, "model", "churn", by="ana")
>>> role_of(db, "bo", "model", "churn"), role_of(db, "bo", "model", "fraud")
(<Role.EDITOR: 2>, <Role.VIEWER: 1>)
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass

from sqlalchemy import Connection, delete, insert, select

from loopml.errors import InvalidInput, NotFound, PermissionDenied
from loopml.store.db import Database
from loopml.store.schema import role_bindings

PROJECT = "project"
EXPERIMENT = "experiment"
MODEL = "model"
RESOURCE_TYPES = (PROJECT, EXPERIMENT, MODEL)
EVERYONE = "*"


class Role(enum.IntEnum):
    VIEWER = 1
    EDITOR = 2
    APPROVER = 3
    ADMIN = 4

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str | Role) -> Role:
        """``"viewer"`` .. ``"admin"`` (any case) to a role."""
        if isinstance(text, Role):
            return text
        try:
            return cls[str(text).upper()]
        except KeyError:
            known = ", ".join(r.label for r in cls)
            raise InvalidInput(f"role {text!r} is not one of {known}", details={"field": "role"}) from None


@dataclass(frozen=True)
class Binding:
    user: str
    resource_type: str
    resource_name: str
    role: Role
    created_at: int
    created_by: str

    def to_dict(self) -> dict[str, object]:
        return {
            "user": self.user,
            "resource_type": self.resource_type,
            "resource_name": self.resource_name,
            "role": self.role.label,
            "created_at": self.created_at,
            "created_by": self.created_by,
        }


def _check_resource(resource_type: str, resource_name: str) -> tuple[str, str]:
    if resource_type not in RESOURCE_TYPES:
        raise InvalidInput(
            f"resource type {resource_type!r} is not one of {', '.join(RESOURCE_TYPES)}",
            details={"field": "resource_type"},
        )
    if resource_type == PROJECT:
        return PROJECT, ""
    if not resource_name:
        raise InvalidInput(f"a {resource_type} binding needs the {resource_type}'s name or id")
    return resource_type, str(resource_name)


def grant_in(
    conn: Connection, user: str, role: Role, resource_type: str, resource_name: str, by: str
) -> Binding:
    """Give ``user`` ``role`` on a resource inside transaction ``conn`` (replacing any earlier)."""
    rtype, rname = _check_resource(resource_type, resource_name)
    c = role_bindings.c
    conn.execute(
        delete(role_bindings).where(c.user == user, c.resource_type == rtype, c.resource_name == rname)
    )
    b = Binding(user, rtype, rname, role, int(time.time() * 1000), by)
    conn.execute(
        insert(role_bindings).values(
            user=user, resource_type=rtype, resource_name=rname, role=role.label, created_at=b.created_at,
            created_by=by,
        )
    )  # fmt: skip
    return b


def grant(
    db: Database, user: str, role: Role | str, resource_type: str, resource_name: str, by: str
) -> Binding:
    """Give ``user`` (or ``*``: every user) ``role`` on a resource."""
    with db.write() as conn:
        return grant_in(conn, user, Role.parse(role), resource_type, resource_name, by)


def revoke(db: Database, user: str, resource_type: str, resource_name: str) -> None:
    """Remove a binding; refuses to remove the last project admin."""
    rtype, rname = _check_resource(resource_type, resource_name)
    c = role_bindings.c
    with db.write() as conn:
        row = conn.execute(
            select(c.role).where(c.user == user, c.resource_type == rtype, c.resource_name == rname)
        ).first()
        if row is None:
            raise NotFound(f"user {user!r} has no role on {rtype} {rname!r}".replace(" ''", ""))
        if rtype == PROJECT and row.role == Role.ADMIN.label:
            admins = conn.execute(
                select(c.user).where(c.resource_type == PROJECT, c.role == Role.ADMIN.label)
            ).all()
            if len(admins) <= 1:
                raise PermissionDenied(f"{user!r} is the last admin; grant admin to someone else first")
        conn.execute(
            delete(role_bindings).where(c.user == user, c.resource_type == rtype, c.resource_name == rname)
        )


def list_bindings(db: Database, user: str | None = None) -> list[Binding]:
    c = role_bindings.c
    query = select(role_bindings).order_by(c.user, c.resource_type, c.resource_name)
    if user is not None:
        query = query.where(c.user == user)
    with db.read() as conn:
        return [
            Binding(
                r.user, r.resource_type, r.resource_name, Role.parse(r.role), int(r.created_at), r.created_by
            )
            for r in conn.execute(query)
        ]


def admin_exists(conn: Connection) -> bool:
    """Whether some user holds the project admin role."""
    c = role_bindings.c
    found = conn.execute(
        select(c.user).where(c.resource_type == PROJECT, c.role == Role.ADMIN.label).limit(1)
    ).first()
    return found is not None


# Every authorized request runs this: hand-written SQL (building a Core statement cost more).
_BINDINGS = (
    'SELECT "user", resource_type, role FROM role_bindings WHERE "user" IN (?, ?) '
    "AND ((resource_type = ? AND resource_name = ?) OR (resource_type = ? AND resource_name = ?))"
)


def role_in(
    conn: Connection, user: str, resource_type: str = PROJECT, resource_name: str = ""
) -> Role | None:
    """``user``'s effective role on a resource (None: no access)."""
    rtype, rname = (PROJECT, "") if resource_type == PROJECT else (resource_type, str(resource_name))
    placeholder = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    rows = conn.exec_driver_sql(
        _BINDINGS.replace("?", placeholder), (user, EVERYONE, PROJECT, "", rtype, rname)
    ).all()
    best: Role | None = None
    for who in (user, EVERYONE):
        mine = {r[1]: Role.parse(r[2]) for r in rows if r[0] == who}
        project = mine.get(PROJECT)
        if who == user and project is Role.ADMIN:
            return Role.ADMIN
        role = mine.get(rtype, project) if rtype != PROJECT else project
        if role is not None and (best is None or role > best):
            best = role
    return best


def role_of(db: Database, user: str, resource_type: str = PROJECT, resource_name: str = "") -> Role | None:
    """``user``'s effective role on a resource (None: no access)."""
    with db.read() as conn:
        return role_in(conn, user, resource_type, resource_name)


def require(
    conn: Connection, user: str, needed: Role, resource_type: str = PROJECT, resource_name: str = ""
) -> Role:
    """The user's role, if at least ``needed``; else :class:`PermissionDenied` naming what is missing."""
    role = role_in(conn, user, resource_type, resource_name)
    if role is None or role < needed:
        where = "the project" if resource_type == PROJECT else f"{resource_type} {resource_name!r}"
        has = "no role" if role is None else f"role {role.label}"
        scope = "" if resource_type == PROJECT else f" --{resource_type} {resource_name}"
        raise PermissionDenied(
            f"user {user!r} has {has} on {where}; this needs {needed.label} "
            f"(an admin runs `loopml users grant {user} {needed.label}{scope}`)",
            details={"user": user, "needed": needed.label, "resource": f"{resource_type}:{resource_name}"},
        )
    return role
