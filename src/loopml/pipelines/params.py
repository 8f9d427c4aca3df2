"""Pipeline parameters: coerced to the annotated types and validated before anything runs.

Strings (from the CLI's ``-p key=value`` or a trigger) are parsed: ``"3"`` for an ``int``,
``"[1, 2]"`` for a ``list[int]``, ``"churn@3"`` for a ``DatasetVersion``. A wrong type or an
unknown or missing parameter is an :class:`~loopml.errors.InvalidInput` naming the
pipeline's definition line.
"""

from __future__ import annotations

import inspect
import typing
from typing import Any

import orjson

from loopml.errors import InvalidInput
from loopml.pipelines.dsl import Param, Pipeline, where


def coerce_params(pipe: Pipeline, given: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments to call the pipeline function with."""
    declared = {p.name: p for p in pipe.params()}
    unknown = sorted(set(given) - set(declared))
    if unknown:
        raise InvalidInput(
            f"pipeline {pipe.name!r} ({where(pipe.fn)}) has no parameter {unknown[0]!r}; "
            f"its parameters are: {', '.join(declared) or '(none)'}",
            details={"pipeline": pipe.name, "field": unknown[0]},
        )
    out: dict[str, Any] = {}
    for p in declared.values():
        if p.name in given:
            out[p.name] = _coerce(pipe, p, given[p.name])
        elif p.default is inspect.Parameter.empty:
            raise InvalidInput(
                f"pipeline {pipe.name!r} ({where(pipe.fn)}) needs parameter {p.name!r}; pass it "
                f"with -p {p.name}=VALUE",
                details={"pipeline": pipe.name, "field": p.name},
            )
    return out


def _coerce(pipe: Pipeline, p: Param, value: Any) -> Any:
    ann = p.annotation
    if ann is inspect.Parameter.empty or ann is Any:
        return value
    if is_dataset_annotation(ann) and value is not None:
        return _dataset(pipe, p, value)
    from pydantic import TypeAdapter, ValidationError
    from pydantic.errors import PydanticSchemaGenerationError

    try:
        adapter: TypeAdapter[Any] = TypeAdapter(ann)
    except PydanticSchemaGenerationError:
        if isinstance(ann, type) and not isinstance(value, ann):
            raise _wrong(pipe, p, value, f"wants {ann.__name__}") from None
        return value
    try:
        return adapter.validate_python(value)
    except ValidationError as exc:
        if isinstance(value, str):
            try:
                return adapter.validate_json(value)
            except ValidationError:
                pass
        raise _wrong(pipe, p, value, exc.errors()[0]["msg"]) from None


def is_dataset_annotation(ann: Any) -> bool:
    """Whether ``ann`` is ``DatasetVersion`` (or a union with it, e.g. ``DatasetVersion | None``)."""
    if getattr(ann, "__name__", "") == "DatasetVersion":
        return True
    return any(getattr(a, "__name__", "") == "DatasetVersion" for a in typing.get_args(ann))


def _wrong(pipe: Pipeline, p: Param, value: Any, why: str) -> InvalidInput:
    return InvalidInput(
        f"pipeline {pipe.name!r} ({where(pipe.fn)}): parameter {p.name!r} got {value!r:.80}: {why}",
        details={"pipeline": pipe.name, "field": p.name},
    )


def _dataset(pipe: Pipeline, p: Param, value: Any) -> Any:
    if not isinstance(value, str):
        if type(value).__name__ == "DatasetVersion":
            return value
        raise _wrong(pipe, p, value, "wants a dataset version or 'name@version'")
    import loopml.data

    return loopml.data.get(value)


def recordable(params: dict[str, Any]) -> dict[str, Any]:
    """Parameters as JSON (a dataset version as its ``name@version``), for the run record."""
    plain = {k: v.ref if type(v).__name__ == "DatasetVersion" else v for k, v in params.items()}
    loaded: dict[str, Any] = orjson.loads(orjson.dumps(plain, default=str, option=orjson.OPT_SERIALIZE_NUMPY))
    return loaded
