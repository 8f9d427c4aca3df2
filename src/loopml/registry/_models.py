"""Registered models, versions, tags and aliases over SQL (a mixin of the local registry)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from sqlalchemy import Connection, delete, insert, select, update

from loopml.errors import AlreadyExists, InvalidInput, NotFound, PermissionDenied
from loopml.registry import _store as st
from loopml.registry._search import (
    model_conditions,
    order_columns,
    parse_registry_filter,
    version_conditions,
)
from loopml.registry._sources import resolve_source
from loopml.registry.records import (
    CHAMPION_ALIAS,
    ModelStage,
    ModelVersion,
    ModelVersionPage,
    RegisteredModel,
    RegisteredModelPage,
)
from loopml.store.db import Database
from loopml.store.schema import (
    model_evaluations,
    model_gates,
    model_transitions,
    model_version_tags,
    model_versions,
    promotion_requests,
    registered_model_aliases,
    registered_model_tags,
    registered_models,
)
from loopml.tracking.local import LocalTrackingService
from loopml.tracking.search import check_max_results, decode_page_token, encode_page_token
from loopml.tracking.validation import check_key

MAX_REGISTRY_RESULTS = 1000
# Children first: PostgreSQL and SQLite (foreign_keys=ON) both check the references.
_MODEL_CHILDREN = (
    model_transitions,
    promotion_requests,
    model_evaluations,
    model_gates,
    registered_model_aliases,
    model_version_tags,
    model_versions,
    registered_model_tags,
)


class ModelsMixin:
    db: Database
    tracking: LocalTrackingService

    if TYPE_CHECKING:  # provided by the class that assembles the mixins

        def _user(self, user: str | None) -> str: ...

    # ---- registered models ---------------------------------------------------------------
    def create_registered_model(
        self,
        name: str,
        description: str | None = None,
        tags: dict[str, str] | None = None,
        user: str | None = None,
    ) -> RegisteredModel:
        name = st.check_model_name(name)
        tags = {check_key(k, "tag"): str(v) for k, v in (tags or {}).items()}
        t = st.now_ms()
        with self.db.write() as conn:
            if conn.execute(select(registered_models.c.id).where(registered_models.c.name == name)).first():
                raise AlreadyExists(
                    f"registered model {name!r} already exists; create a new version of it instead",
                    details={"name": name},
                )
            mid = conn.execute(
                insert(registered_models)
                .values(
                    name=name,
                    description=description or "",
                    creation_timestamp=t,
                    last_updated_timestamp=t,
                    max_version=0,
                )
                .returning(registered_models.c.id)
            ).scalar_one()
            if tags:
                conn.execute(
                    insert(registered_model_tags),
                    [{"model_id": mid, "key": k, "value": v} for k, v in tags.items()],
                )
        return self.get_registered_model(name)

    def get_registered_model(self, name: str) -> RegisteredModel:
        with self.db.read() as conn:
            return st.load_models(conn, [st.model_id(conn, name)])[0]

    def rename_registered_model(self, name: str, new_name: str, user: str | None = None) -> RegisteredModel:
        new_name = st.check_model_name(new_name)
        with self.db.write() as conn:
            mid = st.model_id(conn, name)
            if conn.execute(
                select(registered_models.c.id).where(registered_models.c.name == new_name)
            ).first():
                raise AlreadyExists(
                    f"registered model {new_name!r} already exists", details={"name": new_name}
                )
            self._touch(conn, mid, name=new_name)
        return self.get_registered_model(new_name)

    def update_registered_model(
        self, name: str, description: str, user: str | None = None
    ) -> RegisteredModel:
        with self.db.write() as conn:
            self._touch(conn, st.model_id(conn, name), description=description or "")
        return self.get_registered_model(name)

    def delete_registered_model(self, name: str, user: str | None = None) -> None:
        with self.db.write() as conn:
            mid = st.model_id(conn, name)
            for table in _MODEL_CHILDREN:
                conn.execute(delete(table).where(table.c.model_id == mid))
            conn.execute(delete(registered_models).where(registered_models.c.id == mid))

    def search_registered_models(
        self,
        filter_string: str = "",
        max_results: int = 100,
        order_by: Sequence[str] = (),
        page_token: str | None = None,
    ) -> RegisteredModelPage:
        _check_registry_max(max_results)
        conditions = model_conditions(parse_registry_filter(filter_string, models=True))
        offset = decode_page_token(page_token)
        order = [*order_columns(order_by, models=True), registered_models.c.name.asc()]
        query = (
            select(registered_models.c.id)
            .where(*conditions)
            .order_by(*order)
            .offset(offset)
            .limit(max_results + 1)
        )
        with self.db.read() as conn:
            ids = [int(i) for i in conn.execute(query).scalars()]
            found = st.load_models(conn, ids[:max_results])
        token = encode_page_token(offset + max_results) if len(ids) > max_results else None
        return RegisteredModelPage(found, token)

    def set_registered_model_tag(self, name: str, key: str, value: str, user: str | None = None) -> None:
        check_key(key, "tag")
        with self.db.write() as conn:
            mid = st.model_id(conn, name)
            t = registered_model_tags.c
            conn.execute(delete(registered_model_tags).where(t.model_id == mid, t.key == key))
            conn.execute(insert(registered_model_tags).values(model_id=mid, key=key, value=str(value)))
            self._touch(conn, mid)

    def delete_registered_model_tag(self, name: str, key: str, user: str | None = None) -> None:
        with self.db.write() as conn:
            mid = st.model_id(conn, name)
            t = registered_model_tags.c
            conn.execute(delete(registered_model_tags).where(t.model_id == mid, t.key == key))

    def get_latest_versions(self, name: str, stages: Sequence[str] = ()) -> list[ModelVersion]:
        wanted = {ModelStage.parse(s) for s in stages} or set(ModelStage)
        model = self.get_registered_model(name)
        return [v for v in model.latest_versions if v.current_stage in wanted]

    # ---- versions ------------------------------------------------------------------------
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
        tags = {check_key(k, "tag"): str(v) for k, v in (tags or {}).items()}
        resolved = resolve_source(self.tracking, source, run_id)
        if model_id and resolved.model_id and model_id != resolved.model_id:
            raise InvalidInput(
                f"model_id {model_id!r} does not match the source's logged model {resolved.model_id!r}",
                details={"field": "model_id"},
            )
        t = st.now_ms()
        with self.db.write() as conn:
            mid = st.model_id(conn, name)
            version = (
                int(
                    conn.execute(
                        select(registered_models.c.max_version).where(registered_models.c.id == mid)
                    ).scalar_one()
                )
                + 1
            )
            conn.execute(
                insert(model_versions).values(
                    model_id=mid,
                    version=version,
                    creation_timestamp=t,
                    last_updated_timestamp=t,
                    description=description or "",
                    user_id=self._user(user),
                    current_stage=ModelStage.NONE.value,
                    source=source,
                    storage_location=resolved.storage_location,
                    run_id=resolved.run_id,
                    logged_model_id=resolved.model_id or model_id,
                    digest=resolved.digest,
                    status="READY",
                )
            )
            if tags:
                conn.execute(
                    insert(model_version_tags),
                    [{"model_id": mid, "version": version, "key": k, "value": v} for k, v in tags.items()],
                )
            self._touch(conn, mid, max_version=version)
        return self.get_model_version(name, version)

    def get_model_version(self, name: str, version: int | str) -> ModelVersion:
        number = st.parse_version(version)
        with self.db.read() as conn:
            mid = st.model_id(conn, name)
            row = st.version_row(conn, mid, name, number)
            return st.load_versions(conn, [row], {mid: name})[0]

    def update_model_version(
        self, name: str, version: int | str, description: str, user: str | None = None
    ) -> ModelVersion:
        number = st.parse_version(version)
        with self.db.write() as conn:
            mid = st.model_id(conn, name)
            st.version_row(conn, mid, name, number)
            self._touch_version(conn, mid, number, description=description or "")
        return self.get_model_version(name, number)

    def delete_model_version(self, name: str, version: int | str, user: str | None = None) -> None:
        number = st.parse_version(version)
        with self.db.write() as conn:
            mid = st.model_id(conn, name)
            st.version_row(conn, mid, name, number)
            for table in (registered_model_aliases, model_version_tags):
                conn.execute(delete(table).where(table.c.model_id == mid, table.c.version == number))
            c = model_versions.c
            conn.execute(delete(model_versions).where(c.model_id == mid, c.version == number))
            self._touch(conn, mid)

    def search_model_versions(
        self,
        filter_string: str = "",
        max_results: int = 1000,
        order_by: Sequence[str] = (),
        page_token: str | None = None,
    ) -> ModelVersionPage:
        check_max_results(max_results)
        conditions = version_conditions(parse_registry_filter(filter_string, models=False))
        offset = decode_page_token(page_token)
        c = model_versions.c
        order = [*order_columns(order_by, models=False), registered_models.c.name.asc(), c.version.desc()]
        query = (
            select(model_versions, registered_models.c.name.label("model_name"))
            .join(registered_models, registered_models.c.id == c.model_id)
            .where(*conditions)
            .order_by(*order)
            .offset(offset)
            .limit(max_results + 1)
        )
        with self.db.read() as conn:
            rows = conn.execute(query).all()
            page = rows[:max_results]
            names = {int(r.model_id): r.model_name for r in page}
            found = st.load_versions(conn, page, names)
        token = encode_page_token(offset + max_results) if len(rows) > max_results else None
        return ModelVersionPage(found, token)

    def set_model_version_tag(
        self, name: str, version: int | str, key: str, value: str, user: str | None = None
    ) -> None:
        check_key(key, "tag")
        number = st.parse_version(version)
        with self.db.write() as conn:
            mid = st.model_id(conn, name)
            st.version_row(conn, mid, name, number)
            t = model_version_tags.c
            conn.execute(
                delete(model_version_tags).where(t.model_id == mid, t.version == number, t.key == key)
            )
            conn.execute(
                insert(model_version_tags).values(model_id=mid, version=number, key=key, value=str(value))
            )
            self._touch_version(conn, mid, number)

    def delete_model_version_tag(
        self, name: str, version: int | str, key: str, user: str | None = None
    ) -> None:
        number = st.parse_version(version)
        with self.db.write() as conn:
            mid = st.model_id(conn, name)
            st.version_row(conn, mid, name, number)
            t = model_version_tags.c
            conn.execute(
                delete(model_version_tags).where(t.model_id == mid, t.version == number, t.key == key)
            )

    def get_model_version_download_uri(self, name: str, version: int | str) -> str:
        return self.get_model_version(name, version).storage_location

    # ---- aliases -------------------------------------------------------------------------
    def set_registered_model_alias(
        self, name: str, alias: str, version: int | str, user: str | None = None
    ) -> None:
        alias = st.check_alias(alias)
        number = st.parse_version(version)
        with self.db.write() as conn:
            mid = st.model_id(conn, name)
            st.version_row(conn, mid, name, number)
            _champion_guard(conn, mid, name, alias)
            self._set_alias(conn, mid, alias, number)

    def _set_alias(self, conn: Connection, mid: int, alias: str, number: int) -> None:
        a = registered_model_aliases.c
        conn.execute(delete(registered_model_aliases).where(a.model_id == mid, a.alias == alias))
        conn.execute(insert(registered_model_aliases).values(model_id=mid, alias=alias, version=number))
        self._touch(conn, mid)

    def delete_registered_model_alias(self, name: str, alias: str, user: str | None = None) -> None:
        with self.db.write() as conn:
            mid = st.model_id(conn, name)
            self._alias_version(conn, mid, name, alias)
            _champion_guard(conn, mid, name, alias)
            a = registered_model_aliases.c
            conn.execute(delete(registered_model_aliases).where(a.model_id == mid, a.alias == alias))
            self._touch(conn, mid)

    def get_model_version_by_alias(self, name: str, alias: str) -> ModelVersion:
        with self.db.read() as conn:
            mid = st.model_id(conn, name)
            number = self._alias_version(conn, mid, name, alias)
        return self.get_model_version(name, number)

    def _alias_version(self, conn: Connection, mid: int, name: str, alias: str) -> int:
        aliases = st.aliases_of(conn, mid)
        if alias in aliases:
            return aliases[alias]
        hint = f"aliases are {', '.join(aliases)}" if aliases else "it has no aliases"
        raise NotFound(
            f"model {name!r} has no alias {alias!r}; {hint}", details={"name": name, "alias": alias}
        )

    # ---- shared --------------------------------------------------------------------------
    def _touch(self, conn: Connection, mid: int, **values: object) -> None:
        conn.execute(
            update(registered_models)
            .where(registered_models.c.id == mid)
            .values(last_updated_timestamp=st.now_ms(), **values)
        )

    def _touch_version(self, conn: Connection, mid: int, number: int, **values: object) -> None:
        c = model_versions.c
        conn.execute(
            update(model_versions)
            .where(c.model_id == mid, c.version == number)
            .values(last_updated_timestamp=st.now_ms(), **values)
        )


def _check_registry_max(n: int) -> None:
    check_max_results(n)
    if n > MAX_REGISTRY_RESULTS:
        raise InvalidInput(
            f"max_results must be between 1 and {MAX_REGISTRY_RESULTS}, got {n}",
            details={"field": "max_results"},
        )


def _champion_guard(conn: Connection, mid: int, name: str, alias: str) -> None:
    """The champion is what serves: under a gate that requires approval it moves only through an
    approved promotion, never by setting the alias directly."""
    if alias != CHAMPION_ALIAS:
        return
    gated = conn.execute(select(model_gates.c.require_approval).where(model_gates.c.model_id == mid)).scalar()
    if gated:
        raise PermissionDenied(
            f"model {name!r} requires approval for Production, so its {CHAMPION_ALIAS!r} alias moves only "
            f"through `loopml models promote {name} VERSION` and another user's approval",
            details={"name": name, "alias": alias},
        )
