"""Users and tokens: shown once, stored hashed, expiry, revocation, last use, no default password."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from sqlalchemy import select, text, update

from loopml.errors import AlreadyExists, InvalidInput, PermissionDenied, Unauthenticated
from loopml.governance import roles
from loopml.governance.identity import IdentityService, check_password, hash_password
from loopml.store.db import Database
from loopml.store.schema import api_tokens, users


@pytest.fixture
def ids(tmp_path: Path) -> IdentityService:
    return IdentityService(Database(f"sqlite:///{tmp_path / 'gov.db'}"))


def _admin(ids: IdentityService) -> str:
    return ids.bootstrap(ids.issue_bootstrap_token(), "ana").secret


def test_a_fresh_store_has_no_user_and_no_password_to_guess(ids: IdentityService) -> None:
    assert ids.list_users() == []
    assert not ids.has_admin()
    with pytest.raises(Unauthenticated):
        ids.authenticate_password("admin", "admin")


def test_the_bootstrap_token_creates_the_first_admin_once(ids: IdentityService) -> None:
    boot = ids.issue_bootstrap_token()
    first = ids.bootstrap(boot, "ana")
    assert ids.authenticate_token(first.secret).user == "ana"
    assert roles.role_of(ids.db, "ana") is roles.Role.ADMIN
    with pytest.raises(Unauthenticated):  # spent
        ids.bootstrap(boot, "eve")
    with pytest.raises(PermissionDenied):  # and no second one once an admin exists
        ids.issue_bootstrap_token()
    with pytest.raises(PermissionDenied):  # an API token is no bootstrap token
        ids.bootstrap(first.secret, "eve")
    assert [u.name for u in ids.list_users()] == ["ana"]


def test_only_the_hash_of_a_token_is_stored(ids: IdentityService) -> None:
    secret = _admin(ids)
    with ids.db.read() as conn:
        stored = [tuple(str(v) for v in row) for row in conn.execute(select(api_tokens))]
    assert not any(secret in value for row in stored for value in row)
    assert any(hashlib.sha256(secret.encode()).hexdigest() in row for row in stored)


def test_a_changed_character_revocation_and_expiry_are_refused(ids: IdentityService) -> None:
    secret = _admin(ids)
    tampered = secret[:-1] + ("A" if secret[-1] != "A" else "B")
    with pytest.raises(Unauthenticated):
        ids.authenticate_token(tampered)
    short = ids.create_token("ana", "ci", expires_in_s=3600)
    assert ids.authenticate_token(short.secret).token_id == short.info.token_id
    with ids.db.write() as conn:  # move its expiry into the past
        conn.execute(
            update(api_tokens).where(api_tokens.c.token_id == short.info.token_id).values(expires_at=1)
        )
    with pytest.raises(Unauthenticated):
        ids.authenticate_token(short.secret)
    ids.revoke_token(ids.authenticate_token(secret).token_id or "")
    with pytest.raises(Unauthenticated):
        ids.authenticate_token(secret)


def test_use_is_recorded_and_a_disabled_user_is_locked_out(ids: IdentityService) -> None:
    secret = _admin(ids)
    bo = ids.create_user("bo", by="ana")
    assert not bo.disabled
    token = ids.create_token("bo")
    assert ids.get_token(token.info.token_id).last_used_at is None
    ids.authenticate_token(token.secret)
    assert ids.get_token(token.info.token_id).last_used_at is not None
    ids.set_disabled("bo", True)
    with pytest.raises(Unauthenticated):
        ids.authenticate_token(token.secret)
    assert ids.authenticate_token(secret).user == "ana"


def test_basic_auth_takes_a_token_or_an_scrypt_password(ids: IdentityService) -> None:
    secret = _admin(ids)
    ids.create_user("bo", password="correct horse battery", by="ana")
    assert ids.authenticate_password("ana", secret).token_id is not None
    assert ids.authenticate_password("bo", "correct horse battery").user == "bo"
    with pytest.raises(Unauthenticated):
        ids.authenticate_password("bo", "wrong horse battery")
    with pytest.raises(Unauthenticated):  # a token only for its own user
        ids.authenticate_password("bo", secret)
    with ids.db.read() as conn:
        stored = conn.execute(select(users.c.password_hash).where(users.c.name == "bo")).scalar_one()
    assert stored.startswith("scrypt$") and "correct" not in stored


def test_password_hashes_are_salted_and_checked() -> None:
    one, two = hash_password("a long enough password"), hash_password("a long enough password")
    assert one != two
    assert check_password("a long enough password", one) and not check_password("another password!", one)


def test_names_and_passwords_are_validated(ids: IdentityService) -> None:
    with pytest.raises(InvalidInput, match="user name"):
        ids.create_user("../root")
    with pytest.raises(InvalidInput, match="12 characters"):
        ids.create_user("bo", password="short")
    ids.create_user("bo")
    with pytest.raises(AlreadyExists):
        ids.create_user("bo")
    with ids.db.read() as conn:
        assert conn.execute(text("select count(*) from users")).scalar() == 1


def test_a_remembered_password_check_never_outlives_a_change(ids: IdentityService) -> None:
    ids.create_user("bo", password="correct horse battery")
    assert ids.authenticate_password("bo", "correct horse battery").user == "bo"
    assert ids.authenticate_password("bo", "correct horse battery").user == "bo"  # from the memo
    ids.set_password("bo", "a brand new passphrase")
    with pytest.raises(Unauthenticated):
        ids.authenticate_password("bo", "correct horse battery")
    assert ids.authenticate_password("bo", "a brand new passphrase").user == "bo"
    ids.set_disabled("bo", True)
    with pytest.raises(Unauthenticated):
        ids.authenticate_password("bo", "a brand new passphrase")
