"""Versioned feature definitions in the metadata database.

``apply`` registers a batch of definitions in one transaction: an unchanged definition keeps its
version, a changed one gets the next version, and a breaking change (a removed feature, a type
change, different join keys) is refused unless ``force=True``, because models trained on the old
definition would silently get different data. A feature view's source is checked against its
declared columns before anything is written.

The stored specs rebuild the live objects (see :mod:`loopml.features.rebuild`), so code without
the user's definitions file (the server, ``loopml features materialize``) can use them:
``definitions()`` gives every latest definition, ``definition(kind, name, version)`` one of them,
``resolve_service(name)`` a :class:`FeatureService` carrying its views (pass it as ``service=`` to
``get_historical_features`` / ``get_online_features``) and ``resolve_views(["view:feature"])`` the
views to pass as ``views=`` with feature references.

>>> import tempfile
>>> from loopml.store.db import Database
>>> from loopml.features.definitions import Entity
>>> registry = FeatureRegistry(Database(f"sqlite:///{tempfile.mkdtemp()}/meta.db"))
>>> registry.apply([Entity("driver")]).changes[0].action
'create'
>>> registry.apply([Entity("driver")]).changes[0].action
'unchanged'
"""

from __future__ import annotations

import hashlib
import json
import runpy
import time
import traceback
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Row, exc, func, insert, select

from loopml.config import Settings
from loopml.errors import Conflict, InvalidInput, LoopmlError, NotFound
from loopml.features.definitions import (
    Definition,
    Entity,
    FeatureService,
    FeatureView,
    OnDemandFeatureView,
    View,
)
from loopml.features.rebuild import Lookup, Rebuilder
from loopml.features.schema_check import check_source_schema
from loopml.store.db import Database
from loopml.store.schema import feature_definitions as table

KINDS: dict[type, str] = {
    Entity: "entity",
    FeatureView: "feature_view",
    OnDemandFeatureView: "on_demand_feature_view",
    FeatureService: "feature_service",
}
# Applied in this order so that a definition's references are written before it.
ORDER = ("entity", "feature_view", "on_demand_feature_view", "feature_service")


@dataclass(frozen=True)
class DefinitionRecord:
    """One stored version of a definition."""

    kind: str
    name: str
    version: int
    spec: dict[str, Any]
    digest: str
    created_at: int
    created_by: str


@dataclass(frozen=True)
class Change:
    """What ``apply`` did (or would do) to one definition.

    ``action`` is ``create``, ``update`` or ``unchanged``; ``diff`` lists changed spec paths as
    ``"+ path: new"``, ``"- path: old"`` or ``"~ path: old -> new"``; ``breaking`` lists the
    changes that would give a model different data.
    """

    kind: str
    name: str
    action: str
    version: int
    previous_version: int | None = None
    diff: tuple[str, ...] = ()
    breaking: tuple[str, ...] = ()


@dataclass(frozen=True)
class ApplyResult:
    """The per-definition changes of one ``apply``, in the order they were applied."""

    changes: list[Change] = field(default_factory=list)
    dry_run: bool = False

    @property
    def changed(self) -> list[Change]:
        return [c for c in self.changes if c.action != "unchanged"]


def canonical(spec: dict[str, Any]) -> tuple[str, str]:
    """The spec's canonical JSON and its sha256."""
    text = json.dumps(spec, sort_keys=True, separators=(",", ":"), default=str)
    return text, hashlib.sha256(text.encode()).hexdigest()


def kind_of(obj: object) -> str:
    """The registry kind of a definition object; InvalidInput for anything else."""
    for cls, kind in KINDS.items():
        if isinstance(obj, cls):
            return kind
    raise InvalidInput(
        f"{type(obj).__name__} is not a feature definition; "
        "apply Entity, FeatureView, OnDemandFeatureView or FeatureService objects",
        details={"field": "objects", "type": type(obj).__name__},
    )


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Spec paths to leaf values; lists of named dicts are keyed by name so reordering is no diff."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    if isinstance(value, list) and value and all(isinstance(v, dict) and "name" in v for v in value):
        out = {}
        for item in value:
            out.update(_flatten(item, f"{prefix}[{item['name']}]"))
        return out
    return {prefix: value}


def spec_diff(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Human-readable differences between two specs, one line per changed path."""
    before, after = _flatten(old), _flatten(new)
    lines = [f"- {path}: {before[path]!r}" for path in before if path not in after]
    lines += [f"+ {path}: {after[path]!r}" for path in after if path not in before]
    lines += [
        f"~ {path}: {before[path]!r} -> {after[path]!r}"
        for path in before
        if path in after and before[path] != after[path]
    ]
    return lines


def breaking_changes(kind: str, old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """The changes that would give a model trained on ``old`` different data."""
    if kind == "entity":
        keys = ("join_keys", "value_types")
        return [f"{key} changed from {old[key]} to {new[key]}" for key in keys if old[key] != new[key]]
    if kind not in ("feature_view", "on_demand_feature_view"):
        return []
    problems: list[str] = []
    old_types = {f["name"]: f["dtype"] for f in old["fields"]}
    new_types = {f["name"]: f["dtype"] for f in new["fields"]}
    for name, dtype in old_types.items():
        if name not in new_types:
            problems.append(f"feature {name!r} removed")
        elif new_types[name] != dtype:
            problems.append(f"feature {name!r} type changed from {dtype} to {new_types[name]}")
    if kind == "feature_view" and old["entities"] != new["entities"]:
        problems.append(f"entities changed from {old['entities']} to {new['entities']}")
    return problems


def _to_record(row: Row[Any]) -> DefinitionRecord:
    return DefinitionRecord(
        kind=row.kind,
        name=row.name,
        version=int(row.version),
        spec=json.loads(row.spec),
        digest=row.digest,
        created_at=int(row.created_at),
        created_by=row.created_by,
    )


def collect(objects: Iterable[object]) -> list[Definition]:
    """The definitions in ``objects`` plus those they hold (a view's entities, a service's views),
    once each, in dependency order; two different definitions of one name are refused."""
    found: dict[tuple[str, str], Definition] = {}

    def add(obj: object) -> None:
        kind = kind_of(obj)
        definition: Definition = obj  # type: ignore[assignment]
        key = (kind, definition.name)
        if key in found:
            if canonical(found[key].spec())[1] != canonical(definition.spec())[1]:
                raise InvalidInput(
                    f"{kind} {definition.name!r} is defined twice, differently; keep one definition",
                    details={"field": "objects", "kind": kind, "name": definition.name},
                )
            return
        for inner in _held(definition):
            add(inner)
        found[key] = definition

    for obj in objects:
        add(obj)
    return sorted(found.values(), key=lambda d: ORDER.index(kind_of(d)))


def _held(definition: Definition) -> list[object]:
    if isinstance(definition, FeatureView):
        return list(definition.entities)
    if isinstance(definition, OnDemandFeatureView):
        return [s for s in definition.sources if isinstance(s, FeatureView)]
    if isinstance(definition, FeatureService):
        return [f for f in definition.features if not isinstance(f, str)]
    return []


class FeatureRegistry:
    """Apply, list and look up versioned feature definitions on a metadata database."""

    def __init__(self, db: Database, user: str = "") -> None:
        self.db = db
        self.user = user or "unknown"

    @classmethod
    def from_settings(cls, settings: Settings) -> FeatureRegistry:
        return cls(Database(settings.database_url), settings.user)

    def close(self) -> None:
        self.db.dispose()

    def apply(
        self,
        objects: Iterable[object],
        *,
        force: bool = False,
        dry_run: bool = False,
        check_sources: bool = True,
    ) -> ApplyResult:
        """Register ``objects`` (and the definitions they hold) in one transaction.

        Raises Conflict listing every breaking change unless ``force``; InvalidInput when a
        reference does not resolve or a source disagrees with its view; nothing is written then.

        >>> import tempfile
        >>> from loopml.store.db import Database
        >>> registry = FeatureRegistry(Database(f"sqlite:///{tempfile.mkdtemp()}/meta.db"))
        >>> registry.apply([Entity("driver")], dry_run=True).changes[0].action
        'create'
        """
        definitions = collect(objects)
        self._check_references(definitions)
        if check_sources:
            for definition in definitions:
                if isinstance(definition, FeatureView):
                    check_source_schema(definition)
        changes, rows = self._plan(definitions)
        breaking = [f"{c.kind} {c.name!r}: {b}" for c in changes for b in c.breaking]
        if breaking and not force:
            raise Conflict(
                f"breaking change(s): {'; '.join(breaking)}; models trained on the current version "
                "would get different data. Add a new feature/view instead, or apply with force",
                details={"breaking": breaking},
            )
        if rows and not dry_run:
            self._write(rows)
        return ApplyResult(changes, dry_run=dry_run)

    def _plan(self, definitions: Sequence[Definition]) -> tuple[list[Change], list[dict[str, Any]]]:
        now = int(time.time() * 1000)
        changes: list[Change] = []
        rows: list[dict[str, Any]] = []
        for definition in definitions:
            kind, spec = kind_of(definition), definition.spec()
            text, digest = canonical(spec)
            current = self._latest(kind, definition.name)
            if current is not None and current.digest == digest:
                changes.append(Change(kind, definition.name, "unchanged", current.version))
                continue
            version = 1 if current is None else current.version + 1
            old = None if current is None else current.spec
            changes.append(
                Change(
                    kind,
                    definition.name,
                    "create" if current is None else "update",
                    version,
                    previous_version=None if current is None else current.version,
                    diff=tuple(spec_diff(old, spec)) if old is not None else (),
                    breaking=tuple(breaking_changes(kind, old, spec)) if old is not None else (),
                )
            )
            rows.append(
                {"kind": kind, "name": definition.name, "version": version, "spec": text}
                | {"digest": digest, "created_at": now, "created_by": self.user}
            )
        return changes, rows

    def _write(self, rows: list[dict[str, Any]]) -> None:
        try:
            with self.db.write() as conn:
                conn.execute(insert(table), rows)
        except exc.IntegrityError:
            names = ", ".join(f"{r['kind']} {r['name']!r}" for r in rows)
            raise Conflict(
                f"{names} changed while applying (someone else applied meanwhile); apply again",
                details={"field": "objects"},
            ) from None

    def _check_references(self, definitions: Sequence[Definition]) -> None:
        batch = {(kind_of(d), d.name): d for d in definitions}
        for definition in definitions:
            if isinstance(definition, FeatureService):
                for ref in definition.refs:
                    self._feature_names(batch, ref.partition(":")[0], owner=definition.name, ref=ref)

    def _feature_names(
        self, batch: dict[tuple[str, str], Definition], view: str, owner: str, ref: str
    ) -> None:
        for kind in ("feature_view", "on_demand_feature_view"):
            held = batch.get((kind, view))
            names = list(held.feature_names) if isinstance(held, FeatureView | OnDemandFeatureView) else None
            if names is None and (record := self._latest(kind, view)) is not None:
                names = [f["name"] for f in record.spec["fields"]]
            if names is not None:
                if ref.partition(":")[2] not in names:
                    raise NotFound(
                        f"feature service {owner!r} refers to {ref!r}, but view {view!r} has "
                        f"features {', '.join(names)}",
                        details={"field": "features", "ref": ref, "known": names},
                    )
                return
        known = sorted({name for kind, name in batch if kind in ("feature_view", "on_demand_feature_view")})
        known += [
            r.name
            for r in self.list_definitions("feature_view") + self.list_definitions("on_demand_feature_view")
        ]
        raise NotFound(
            f"feature service {owner!r} refers to {ref!r}, but no feature view {view!r} exists; "
            f"known views: {', '.join(sorted(set(known))) or 'none'}",
            details={"field": "features", "ref": ref, "known": sorted(set(known))},
        )

    # ---- lookup -------------------------------------------------------------------------------

    def _latest(self, kind: str, name: str, as_of: int | None = None) -> DefinitionRecord | None:
        query = select(table).where(table.c.kind == kind, table.c.name == name)
        if as_of is not None:
            query = query.where(table.c.created_at <= as_of)
        with self.db.read() as conn:
            row = conn.execute(query.order_by(table.c.version.desc()).limit(1)).first()
        return None if row is None else _to_record(row)

    def get(self, kind: str, name: str, version: int | None = None) -> DefinitionRecord:
        """One version (default: the latest) of a definition; NotFound names the known ones."""
        if kind not in ORDER:
            raise InvalidInput(f"kind {kind!r} is not one of {', '.join(ORDER)}", details={"field": "kind"})
        query = select(table).where(table.c.kind == kind, table.c.name == name)
        if version is not None:
            query = query.where(table.c.version == version)
        with self.db.read() as conn:
            row = conn.execute(query.order_by(table.c.version.desc()).limit(1)).first()
        if row is not None:
            return _to_record(row)
        if version is not None and (latest := self._latest(kind, name)) is not None:
            raise NotFound(
                f"{kind} {name!r} has no version {version}; latest is {latest.version}",
                details={"kind": kind, "name": name, "version": version, "latest": latest.version},
            )
        known = [r.name for r in self.list_definitions(kind)]
        raise NotFound(
            f"{kind} {name!r} is not registered; known: "
            f"{', '.join(known) or 'none (run loopml features apply)'}",
            details={"kind": kind, "name": name, "known": known},
        )

    def list_definitions(self, kind: str | None = None) -> list[DefinitionRecord]:
        """The latest version of every definition (of ``kind``), by kind then name."""
        latest = select(table.c.kind, table.c.name, func.max(table.c.version).label("version")).group_by(
            table.c.kind, table.c.name
        )
        if kind is not None:
            latest = latest.where(table.c.kind == kind)
        sub = latest.subquery()
        query = select(table).join(
            sub,
            (table.c.kind == sub.c.kind) & (table.c.name == sub.c.name) & (table.c.version == sub.c.version),
        )
        with self.db.read() as conn:
            records = [_to_record(row) for row in conn.execute(query)]
        return sorted(records, key=lambda r: (ORDER.index(r.kind), r.name))

    # ---- live definitions, rebuilt from the stored specs ----------------------------------------

    def _lookup(self, as_of: int | None) -> Lookup:
        def lookup(kind: str, name: str) -> dict[str, Any] | None:
            record = self._latest(kind, name, as_of)
            return None if record is None else record.spec

        return lookup

    def definition(self, kind: str, name: str, version: int | None = None) -> Definition:
        """The live object of one registered definition (default: its latest version).

        The definitions it references are taken as they were when that version was applied.
        An on-demand view's transform is imported and checked against its recorded source.
        """
        record = self.get(kind, name, version)
        as_of = None if version is None else record.created_at
        return Rebuilder(self._lookup(as_of)).build(kind, record.spec)

    def definitions(self, kind: str | None = None) -> list[Definition]:
        """The live objects of the latest version of every definition (of ``kind``)."""
        records = self.list_definitions()
        specs = {(r.kind, r.name): r.spec for r in records}
        rebuilder = Rebuilder(lambda k, n: specs.get((k, n)))
        return [rebuilder.get(r.kind, r.name) for r in records if kind is None or r.kind == kind]

    def resolve_service(self, name: str, version: int | None = None) -> FeatureService:
        """The registered feature service ``name``, carrying the views its references name.

        >>> service = registry.resolve_service("churn")  # doctest: +SKIP
        >>> get_online_features([{"driver_id": 1}], service=service, store=store)  # doctest: +SKIP
        """
        service = self.definition("feature_service", name, version)
        assert isinstance(service, FeatureService)
        return service

    def resolve_views(self, refs: Sequence[str | View]) -> list[View]:
        """The registered views that ``"view:feature"`` references (or bare view names) name.

        >>> views = registry.resolve_views(["stats:rate"])  # doctest: +SKIP
        >>> get_historical_features(entity_df, ["stats:rate"], views=views)  # doctest: +SKIP
        """
        rebuilder = Rebuilder(self._lookup(None))
        names = dict.fromkeys(r.partition(":")[0] for r in refs if isinstance(r, str))
        return [rebuilder.view(name) for name in names]

    def versions(self, kind: str, name: str) -> list[DefinitionRecord]:
        """Every version of one definition, oldest first."""
        query = select(table).where(table.c.kind == kind, table.c.name == name).order_by(table.c.version)
        with self.db.read() as conn:
            return [_to_record(row) for row in conn.execute(query)]


def load_definitions(path: str | Path) -> list[Definition]:
    """Run a Python definitions file and collect the definitions its module-level names hold.

    An error inside the file is reported with the file's line, not a traceback into loopml.
    """
    path = Path(path)
    if not path.is_file():
        raise NotFound(f"definitions file {str(path)!r} does not exist", details={"field": "path"})
    try:
        namespace = runpy.run_path(str(path), run_name="__loopml_features__")
    except Exception as error:
        frames = [f for f in traceback.extract_tb(error.__traceback__) if Path(f.filename) == path]
        where = f"{path}:{frames[-1].lineno}" if frames else str(path)
        message = error.message if isinstance(error, LoopmlError) else f"{type(error).__name__}: {error}"
        raise InvalidInput(f"{where}: {message}", details={"field": "path", "where": where}) from None
    found = [value for key, value in namespace.items() if not key.startswith("_") and _is_definition(value)]
    if not found:
        raise InvalidInput(
            f"{path} defines no Entity, FeatureView, OnDemandFeatureView or FeatureService at module level",
            details={"field": "path"},
        )
    return found


def _is_definition(value: object) -> bool:
    return isinstance(value, tuple(KINDS))
