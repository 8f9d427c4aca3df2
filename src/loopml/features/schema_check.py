"""Check at apply time that a feature view's source has the columns and types it declares.

A mismatch found here is a message at ``loopml features apply``, not a failed training job
hours later. Widening is accepted (an int32 column for an int64 feature, an integer column for a
float feature, a timestamp of any unit or time zone); narrowing or a change of kind is not.

>>> import pyarrow as pa
>>> compatible("float64", pa.int32())
True
>>> compatible("int64", pa.float64())
False
"""

from __future__ import annotations

import pyarrow as pa

from loopml.errors import InvalidInput
from loopml.features.definitions import FeatureView


def compatible(dtype: str, arrow_type: pa.DataType) -> bool:
    """Whether a source column of ``arrow_type`` can feed a feature declared as ``dtype``."""
    if pa.types.is_dictionary(arrow_type):
        arrow_type = arrow_type.value_type
    if dtype in ("int32", "int64"):
        return bool(pa.types.is_integer(arrow_type))
    if dtype in ("float32", "float64"):
        return bool(pa.types.is_integer(arrow_type) or pa.types.is_floating(arrow_type))
    if dtype == "string":
        return bool(pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type))
    if dtype == "bytes":
        return bool(pa.types.is_binary(arrow_type) or pa.types.is_large_binary(arrow_type))
    if dtype == "bool":
        return bool(pa.types.is_boolean(arrow_type))
    if dtype == "timestamp":
        return _is_time(arrow_type)
    return False


def _is_time(arrow_type: pa.DataType) -> bool:
    return bool(pa.types.is_timestamp(arrow_type) or pa.types.is_date(arrow_type))


def expected_columns(view: FeatureView) -> list[tuple[str, str]]:
    """(column, dtype) pairs a view's source must provide: join keys, timestamps, features."""
    columns = [
        (key, dtype)
        for entity in view.entities
        for key, dtype in zip(entity.join_keys, entity.value_types, strict=True)
    ]
    columns.append((view.timestamp_field, "timestamp"))
    if view.created_timestamp_field:
        columns.append((view.created_timestamp_field, "timestamp"))
    columns.extend((f.name, f.dtype) for f in view.fields)
    return columns


def check_source_schema(view: FeatureView, schema: pa.Schema | None = None) -> None:
    """Raise InvalidInput listing every column of ``view`` its source lacks or types differently.

    ``schema`` defaults to the source's own (read without loading rows).
    """
    schema = view.source.arrow_schema() if schema is None else schema
    problems: list[str] = []
    for column, dtype in expected_columns(view):
        index = schema.get_field_index(column)
        if index < 0:
            problems.append(f"column {column!r} is missing")
        elif not compatible(dtype, schema.field(index).type):
            problems.append(f"column {column!r} is {schema.field(index).type}, not {dtype}")
    if problems:
        raise InvalidInput(
            f"feature view {view.name!r} does not match its source {view.source.spec()}: "
            f"{'; '.join(problems)}; fix the definition or the source (source columns: "
            f"{', '.join(schema.names)})",
            details={"field": "source", "feature_view": view.name, "problems": problems},
        )
