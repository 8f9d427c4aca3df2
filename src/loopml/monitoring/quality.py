"""Data quality of a batch against a reference dataset version's schema and profile.

Checks, each a :class:`QualityIssue` naming the column and what to look at:

* ``empty_batch`` (warning): the batch has no rows;
* ``missing_column`` (error): a reference column is absent;
* ``extra_column`` (warning): a column the reference does not have;
* ``type_change`` (error): a column's type family changed (int32 -> int64 is not a change;
  float -> string is);
* ``null_rate`` (error when a non-nullable column has nulls or a column is entirely null,
  else warning): the null rate rose by more than ``null_tolerance`` over the reference's;
* ``out_of_range`` (warning): numeric values below the reference minimum or above its maximum;
* ``unseen_category`` (warning): categorical values the reference never had (only when the
  reference profile lists every value, i.e. its ``other`` count is 0).

>>> report = check_quality(loopml.data.get("churn", 3), todays_rows)  # doctest: +SKIP
>>> report.passed, [i.kind for i in report.issues]                      # doctest: +SKIP
(False, ['missing_column'])
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from loopml.data.columns import family
from loopml.data.profile import ColumnProfile
from loopml.data.records import DatasetVersion, Field
from loopml.monitoring.records import QualityIssue, QualityReport
from loopml.monitoring.windows import category_counts, column_kind, numeric_values, to_table

NULL_TOLERANCE = 0.05
EXAMPLES = 10

_FAMILY_OF_TYPE = {
    "int": ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"),
    "float": ("halffloat", "float", "double", "float16", "float32", "float64"),
}


def _reference_family(f: Field) -> str:
    """Type family of a schema field from the type string Arrow printed."""
    t = f.type
    for fam, names in _FAMILY_OF_TYPE.items():
        if t in names:
            return fam
    if t in ("string", "large_string", "string_view", "utf8", "large_utf8"):
        return "string"
    if t == "bool":
        return "bool"
    if t.startswith("dictionary<values="):
        return _reference_family(Field(f.name, t.removeprefix("dictionary<values=").split(",")[0]))
    return t.split("[")[0]


def _null_issue(
    name: str, f: Field, ref: ColumnProfile | None, ref_rows: int, col: pa.ChunkedArray, tol: float
) -> QualityIssue | None:
    n = len(col)
    nulls = col.null_count
    if n == 0 or nulls == 0:
        return None
    rate = nulls / n
    ref_rate = (ref.nulls / ref_rows) if ref is not None and ref_rows else 0.0
    if nulls == n:
        msg = (
            f"column {name!r} is entirely null ({n} rows); the reference had {ref_rate:.1%} nulls: "
            "check the producer of this column"
        )
        return QualityIssue(name, "null_rate", "error", msg, observed=rate, expected=ref_rate)
    if not f.nullable:
        msg = f"column {name!r} has {nulls} nulls but the reference schema says it is never null"
        return QualityIssue(name, "null_rate", "error", msg, observed=rate, expected=ref_rate)
    if rate - ref_rate > tol:
        msg = f"column {name!r} is {rate:.1%} null, up from {ref_rate:.1%} (tolerance {tol:.0%})"
        return QualityIssue(name, "null_rate", "warning", msg, observed=rate, expected=ref_rate)
    return None


def _range_issue(name: str, ref: ColumnProfile, col: pa.ChunkedArray) -> QualityIssue | None:
    if ref.min is None or ref.max is None:
        return None
    x = numeric_values(col)[0]
    if len(x) == 0:
        return None
    below = int(np.count_nonzero(x < ref.min))
    above = int(np.count_nonzero(x > ref.max))
    if not below and not above:
        return None
    share = (below + above) / len(x)
    msg = (
        f"column {name!r} has {below + above} values ({share:.2%}) outside the reference range "
        f"[{ref.min:g}, {ref.max:g}] (current range [{float(x.min()):g}, {float(x.max()):g}])"
    )
    observed = {"below": below, "above": above, "share": share, "min": float(x.min()), "max": float(x.max())}
    return QualityIssue(name, "out_of_range", "warning", msg, observed=observed, expected=[ref.min, ref.max])


def _category_issue(name: str, ref: ColumnProfile, col: pa.ChunkedArray) -> QualityIssue | None:
    if ref.other:  # the profile lists only its top values: "unseen" cannot be told apart from rare
        return None
    known = {v for v, _ in ref.top}
    values, counts, _ = category_counts(col)
    unseen = [(v, c) for v, c in zip(values, counts.tolist(), strict=True) if v not in known]
    if not unseen:
        return None
    total = int(counts.sum())
    rows = sum(c for _, c in unseen)
    examples = [v for v, _ in sorted(unseen, key=lambda vc: -vc[1])[:EXAMPLES]]
    msg = (
        f"column {name!r} has {len(unseen)} categories the reference never had ({rows} rows, "
        f"{rows / total:.2%}), e.g. {examples}"
    )
    observed = {"categories": len(unseen), "rows": rows, "share": rows / total, "examples": examples}
    return QualityIssue(name, "unseen_category", "warning", msg, observed=observed)


def _column_issues(
    name: str, f: Field, ref: ColumnProfile | None, ref_rows: int, col: pa.ChunkedArray, tol: float
) -> list[QualityIssue]:
    expected, actual = _reference_family(f), family(col.type)
    if expected != actual:
        msg = (
            f"column {name!r} is {col.type} but the reference has {f.type}; "
            "cast it back or register a new reference version"
        )
        return [QualityIssue(name, "type_change", "error", msg, observed=str(col.type), expected=f.type)]
    issues = [_null_issue(name, f, ref, ref_rows, col, tol)]
    if ref is not None and column_kind(col.type) == "numeric":
        issues.append(_range_issue(name, ref, col))
    elif ref is not None and column_kind(col.type) == "categorical":
        issues.append(_category_issue(name, ref, col))
    return [i for i in issues if i is not None]


def check_quality(
    reference: DatasetVersion, current: Any, *, null_tolerance: float = NULL_TOLERANCE
) -> QualityReport:
    """Check a batch (pyarrow/pandas/polars table) against a reference dataset version.

    >>> import pyarrow as pa
    >>> from loopml.data.records import DatasetVersion, Field
    >>> from loopml.data.profile import profile_table
    >>> t = pa.table({"x": [1.0, 2.0]})
    >>> ref = DatasetVersion("d", 1, "", 2, [Field("x", "double")], profile_table(t), "", "", 0)
    >>> [i.kind for i in check_quality(ref, pa.table({"x": [9.0]})).issues]
    ['out_of_range']
    """
    table = to_table(current, "current")
    fields = {f.name: f for f in reference.schema}
    issues: list[QualityIssue] = []
    if table.num_rows == 0:
        issues.append(
            QualityIssue(
                "",
                "empty_batch",
                "warning",
                "the batch has no rows: nothing to check beyond its columns",
                observed=0,
            )
        )
    for name, f in fields.items():
        if name not in table.column_names:
            msg = (
                f"column {name!r} of reference {reference.ref} is missing from the batch; "
                "add it or drop it from the model's inputs"
            )
            issues.append(QualityIssue(name, "missing_column", "error", msg, expected=f.type))
            continue
        col = table.column(name)
        issues += _column_issues(
            name, f, reference.profile.columns.get(name), reference.num_rows, col, null_tolerance
        )
    for name in table.column_names:
        if name not in fields:
            msg = f"column {name!r} is not in reference {reference.ref}; drift and quality checks ignore it"
            issues.append(
                QualityIssue(name, "extra_column", "warning", msg, observed=str(table.column(name).type))
            )
    checked = sum(1 for n in fields if n in table.column_names)
    return QualityReport(reference.ref, table.num_rows, issues, columns_checked=checked)
