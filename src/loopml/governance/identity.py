"""Users, opaque API tokens and the one-time bootstrap token.

A token is ``lm_<id>_<secret>``: the id finds the row, only the sha256 of the whole text is
stored, and the comparison is constant-time. Passwords (optional) are scrypt hashes. There is no
default password: with no admin yet, :meth:`IdentityService.issue_bootstrap_token` makes a token
whose only power is :meth:`IdentityService.bootstrap` (create the first admin).

>>> from loopml.store.db import Database
>>> ids = IdentityService(Database("sqlite:///:memory:"))
>>> boot = ids.issue_bootstrap_token()
>>> first = ids.bootstrap(boot, "ana")
>>> ids.authenticate_token(first.secret).user
'ana'
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Row, insert, select, update

from loopml.errors import AlreadyExists, InvalidInput, NotFound, PermissionDenied, Unauthenticated
from loopml.governance import audit
from loopml.governance.roles import Role, admin_exists, grant_in
from loopml.store.db import Database
from loopml.store.schema import api_tokens, users

TOKEN_PREFIX = "lm_"
BOOTSTRAP = "bootstrap"
API = "api"
_TOKEN = re.compile(r"^lm_([0-9a-f]{16})_[A-Za-z0-9_-]{20,}$")
_USER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}$")
# last_used_at is refreshed at most this often, so authenticating is a read, not a write.
LAST_USED_GRANULARITY_MS = 60_000
_SCRYPT = (2**14, 8, 1)


# Every authenticated request runs this: hand-written SQL (building a Core statement cost more).
_TOKEN_ROW = (
    'SELECT t.token_id, t."user", t.kind, t.secret_hash, t.expires_at, t.revoked_at, t.last_used_at, '
    'u.disabled FROM api_tokens t LEFT JOIN users u ON u.name = t."user" WHERE t.token_id = ?'
)


@dataclass(frozen=True)
class Principal:
    """An authenticated caller."""

    user: str
    token_id: str | None
    kind: str = API


@dataclass(frozen=True)
class User:
    name: str
    disabled: bool
    has_password: bool
    created_at: int
    created_by: str


@dataclass(frozen=True)
class TokenInfo:
    token_id: str
    user: str
    kind: str
    name: str
    created_at: int
    expires_at: int | None
    revoked_at: int | None
    last_used_at: int | None


@dataclass(frozen=True)
class NewToken:
    """A freshly issued token: ``secret`` is shown this once and never stored."""

    info: TokenInfo
    secret: str


def now_ms() -> int:
    return int(time.time() * 1000)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def hash_password(password: str) -> str:
    """An scrypt hash with its parameters and salt: ``scrypt$n$r$p$salt$hash``."""
    n, r, p = _SCRYPT
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, dklen=32)
    return f"scrypt${n}${r}${p}${salt.hex()}${digest.hex()}"


def check_password(password: str, stored: str) -> bool:
    try:
        _, n, r, p, salt, digest = stored.split("$")
        got = hashlib.scrypt(
            password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p), dklen=32
        )
    except ValueError:
        return False
    return hmac.compare_digest(got.hex(), digest)


@functools.cache
def _dummy_hash() -> str:
    return hash_password(secrets.token_hex(16))


def looks_like_token(text: str) -> bool:
    return bool(_TOKEN.match(text))


def check_user_name(name: str) -> str:
    if not isinstance(name, str) or not _USER.match(name):
        raise InvalidInput(
            f"user name {name!r} is invalid: use 1-128 letters, digits and . _ @ + - "
            "(starting with a letter or digit)",
            details={"field": "name"},
        )
    return name


class IdentityService:
    """Users and tokens over the metadata store."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._verified: set[tuple[str, str, str]] = set()

    # ---- users ---------------------------------------------------------------------------
    def create_user(self, name: str, password: str | None = None, by: str = "") -> User:
        """Create a user (no role yet: grant one with :func:`loopml.governance.roles.grant`)."""
        check_user_name(name)
        with self.db.write() as conn:
            self._insert_user(conn, name, password, by)
        return self.get_user(name)

    def _insert_user(self, conn: Connection, name: str, password: str | None, by: str) -> None:
        if conn.execute(select(users.c.name).where(users.c.name == name)).first() is not None:
            raise AlreadyExists(f"user {name!r} already exists", details={"name": name})
        conn.execute(
            insert(users).values(
                name=name,
                password_hash=None if not password else hash_password(_check_password(password)),
                disabled=False,
                created_at=now_ms(),
                created_by=by,
            )
        )

    def get_user(self, name: str) -> User:
        with self.db.read() as conn:
            row = conn.execute(select(users).where(users.c.name == name)).first()
        if row is None:
            raise NotFound(f"user {name!r} does not exist; see `loopml users list`", details={"name": name})
        return _user(row)

    def list_users(self) -> list[User]:
        with self.db.read() as conn:
            return [_user(r) for r in conn.execute(select(users).order_by(users.c.name))]

    def set_password(self, name: str, password: str | None) -> User:
        """Set (or with None, remove) a user's password."""
        value = None if not password else hash_password(_check_password(password))
        with self.db.write() as conn:
            self._require_user(conn, name)
            conn.execute(update(users).where(users.c.name == name).values(password_hash=value))
        return self.get_user(name)

    def set_disabled(self, name: str, disabled: bool) -> User:
        """Disable (or re-enable) a user: a disabled user's tokens and password stop working."""
        with self.db.write() as conn:
            self._require_user(conn, name)
            conn.execute(update(users).where(users.c.name == name).values(disabled=disabled))
        return self.get_user(name)

    def _require_user(self, conn: Connection, name: str) -> Row[Any]:
        row = conn.execute(select(users).where(users.c.name == name)).first()
        if row is None:
            raise NotFound(f"user {name!r} does not exist; see `loopml users list`", details={"name": name})
        return row

    # ---- tokens --------------------------------------------------------------------------
    def create_token(
        self, user: str, name: str = "", expires_in_s: int | None = None, by: str = ""
    ) -> NewToken:
        """Issue an API token for ``user``; its secret is in the result and nowhere else."""
        if expires_in_s is not None and expires_in_s <= 0:
            raise InvalidInput(
                "expires_in must be a positive number of seconds", details={"field": "expires_in"}
            )
        with self.db.write() as conn:
            self._require_user(conn, user)
            return self._insert_token(conn, user, API, name, expires_in_s)

    def _insert_token(
        self, conn: Connection, user: str, kind: str, name: str, expires_in_s: int | None
    ) -> NewToken:
        token_id = secrets.token_hex(8)
        secret = f"{TOKEN_PREFIX}{token_id}_{secrets.token_urlsafe(32)}"
        t = now_ms()
        info = TokenInfo(
            token_id, user, kind, name[:256], t, None if expires_in_s is None else t + expires_in_s * 1000,
            None, None,
        )  # fmt: skip
        conn.execute(
            insert(api_tokens).values(
                token_id=token_id,
                user=user,
                kind=kind,
                name=info.name,
                secret_hash=hash_secret(secret),
                created_at=t,
                expires_at=info.expires_at,
            )
        )
        return NewToken(info, secret)

    def list_tokens(self, user: str | None = None) -> list[TokenInfo]:
        """Tokens (never their secrets), newest first."""
        query = select(api_tokens).order_by(api_tokens.c.created_at.desc())
        if user is not None:
            query = query.where(api_tokens.c.user == user)
        with self.db.read() as conn:
            return [_token(r) for r in conn.execute(query)]

    def get_token(self, token_id: str) -> TokenInfo:
        with self.db.read() as conn:
            row = conn.execute(select(api_tokens).where(api_tokens.c.token_id == token_id)).first()
        if row is None:
            raise NotFound(f"token {token_id!r} does not exist", details={"token_id": token_id})
        return _token(row)

    def revoke_token(self, token_id: str) -> TokenInfo:
        """Revoke a token: it stops working at once (idempotent)."""
        with self.db.write() as conn:
            row = conn.execute(select(api_tokens).where(api_tokens.c.token_id == token_id)).first()
            if row is None:
                raise NotFound(f"token {token_id!r} does not exist", details={"token_id": token_id})
            if row.revoked_at is None:
                conn.execute(
                    update(api_tokens).where(api_tokens.c.token_id == token_id).values(revoked_at=now_ms())
                )
        return self.get_token(token_id)

    # ---- authentication ------------------------------------------------------------------
    def authenticate_token(self, secret: str, conn: Connection | None = None) -> Principal:
        """The principal a token stands for, else :class:`Unauthenticated` (one message for
        every reason, so a caller cannot probe which tokens exist). ``conn``: a read transaction
        to use (the server shares one with the role check)."""
        m = _TOKEN.match(secret or "")
        if m is None:
            raise Unauthenticated("invalid token: expected lm_<id>_<secret> from `loopml users token`")
        if conn is None:
            with self.db.read() as own:
                row = own.exec_driver_sql(self.db.sql(_TOKEN_ROW), (m[1],)).first()
        else:
            row = conn.exec_driver_sql(self.db.sql(_TOKEN_ROW), (m[1],)).first()
        t = now_ms()
        expected = row.secret_hash if row is not None else hash_secret("")
        if not hmac.compare_digest(hash_secret(secret), expected) or row is None:
            raise Unauthenticated("invalid, expired or revoked token")
        if row.revoked_at is not None or (row.expires_at is not None and row.expires_at <= t):
            raise Unauthenticated("invalid, expired or revoked token")
        if row.kind == API and (row.disabled is None or row.disabled):
            raise Unauthenticated("invalid, expired or revoked token")
        if row.last_used_at is None or t - row.last_used_at > LAST_USED_GRANULARITY_MS:
            self._touch(row.token_id, t)
        return Principal(str(row.user), str(row.token_id), str(row.kind))

    def _touch(self, token_id: str, t: int) -> None:
        with audit.suspended(), self.db.write() as conn:
            conn.execute(update(api_tokens).where(api_tokens.c.token_id == token_id).values(last_used_at=t))

    def authenticate_password(self, user: str, password: str) -> Principal:
        """Basic auth: ``password`` is one of the user's tokens or the user's password."""
        if looks_like_token(password):
            principal = self.authenticate_token(password)
            if principal.user != user:
                raise Unauthenticated("the token does not belong to this user name")
            return principal
        with self.db.read() as conn:
            row = conn.execute(select(users).where(users.c.name == user)).first()
        stored = row.password_hash if row is not None else None
        # scrypt is deliberately slow: an MLflow client sending its password with every request
        # would pay it each time. Remember successes keyed on the stored hash too, so a changed
        # password is checked afresh; disabled users are refused from the row, never the memo.
        key = (user, hash_secret(password), stored or "")
        ok = key in self._verified
        if not ok:
            # Check against a dummy hash for unknown users, so timing does not tell which exist.
            ok = check_password(password, stored or _dummy_hash())
            if ok and stored:
                if len(self._verified) > 10_000:
                    self._verified.clear()
                self._verified.add(key)
        if row is None or not stored or not ok or row.disabled:
            raise Unauthenticated("wrong user name or password")
        return Principal(user, None, "password")

    # ---- bootstrap -----------------------------------------------------------------------
    def has_admin(self) -> bool:
        """Whether some user holds the project admin role."""
        with self.db.read() as conn:
            return admin_exists(conn)

    def issue_bootstrap_token(self) -> str:
        """A new one-time token that can create the first admin (earlier unused ones are revoked).
        Refused once an admin exists."""
        with self.db.write() as conn:
            if admin_exists(conn):
                raise PermissionDenied("an admin exists already; admins create users and tokens")
            conn.execute(
                update(api_tokens)
                .where(api_tokens.c.kind == BOOTSTRAP, api_tokens.c.revoked_at.is_(None))
                .values(revoked_at=now_ms())
            )
            return self._insert_token(conn, "", BOOTSTRAP, "bootstrap", 24 * 3600).secret

    def bootstrap(self, secret: str, admin: str, password: str | None = None) -> NewToken:
        """Spend the bootstrap token: create ``admin`` with the project admin role and return
        its first API token."""
        check_user_name(admin)
        principal = self.authenticate_token(secret)
        if principal.kind != BOOTSTRAP:
            raise PermissionDenied("this is not a bootstrap token; use `loopml users create` as an admin")
        with self.db.write() as conn:
            if admin_exists(conn):
                raise PermissionDenied("an admin exists already; the bootstrap token is spent")
            conn.execute(
                update(api_tokens)
                .where(api_tokens.c.token_id == principal.token_id)
                .values(revoked_at=now_ms(), last_used_at=now_ms())
            )
            self._insert_user(conn, admin, password, "bootstrap")
            grant_in(conn, admin, Role.ADMIN, "project", "", "bootstrap")
            return self._insert_token(conn, admin, API, "bootstrap", None)


def _check_password(password: str) -> str:
    if len(password) < 12:
        raise InvalidInput("a password needs at least 12 characters", details={"field": "password"})
    return password


def _user(row: Row[Any]) -> User:
    return User(
        row.name, bool(row.disabled), row.password_hash is not None, int(row.created_at), row.created_by
    )


def _token(row: Row[Any]) -> TokenInfo:
    return TokenInfo(
        row.token_id, row.user, row.kind, row.name, int(row.created_at), row.expires_at, row.revoked_at,
        row.last_used_at,
    )  # fmt: skip
