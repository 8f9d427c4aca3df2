"""Mergeable window profiles: the statistics drift needs, without keeping a window's raw rows.

A window (an hour of the prediction log, one batch of a stream) is profiled against the
*reference's* fixed bins, so two windows' profiles add up exactly to the profile of their union
(:meth:`WindowProfile.merge`) and a large window is profiled chunk by chunk:

* numeric columns: count, nulls, non-finite values, min, max, mean and M2 (merged with Chan's
  pairwise update, exact up to float rounding); counts in the reference's drift bins (PSI bins:
  inner edges from the reference, the outer two bins open-ended so values outside the
  reference range are counted, never dropped); and a *fine* histogram of :data:`FINE`
  equal-width bins over the reference's [min, max] plus the two open outer bins, with the sums
  of the values falling in the outer bins.  Quantiles and the ECDF of a window are read from
  the fine histogram: inside the reference range the error is at most one fine bin,
  ``(ref_max - ref_min) / FINE``; outside it, values are taken as spread evenly between the
  window's extreme and the reference's (the sums of outer values keep the mean exact).
* categorical columns (strings, booleans): the exact count of every value, and nulls.

>>> import pyarrow as pa
>>> ref = pa.table({"x": [0.0, 1.0, 2.0, 3.0], "c": ["a", "b", "a", "a"]})
>>> w = profile_window(pa.table({"x": [5.0], "c": ["z"]}), ref)
>>> w.merge(profile_window(pa.table({"x": [1.0], "c": ["a"]}), ref)).columns["c"].counts
{'z': 1, 'a': 1}
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
from numpy.typing import NDArray

from loopml.data.columns import combine, family
from loopml.data.profile import ColumnProfile, Profile
from loopml.data.records import DatasetVersion
from loopml.errors import InvalidInput

FINE = 1024
PSI_BINS = 10  # drift bins from the reference's deciles when the raw reference is given

Float = NDArray[np.float64]


# ---- input coercion ---------------------------------------------------------------------------


def open_dataset(data: Any, what: str = "current") -> pads.Dataset | None:
    """A ``pyarrow.dataset.Dataset`` for a path (a Parquet file or a directory of them) or a
    dataset; ``None`` for anything else.  Drift reads such a side one column at a time."""
    if isinstance(data, pads.Dataset):
        return data
    if not isinstance(data, str | os.PathLike):
        return None
    try:
        return pads.dataset(os.fspath(data), format="parquet")
    except (OSError, pa.ArrowInvalid) as e:
        raise InvalidInput(
            f"{what} data {os.fspath(data)!r} is not a readable Parquet file or directory: {e}",
            details={"field": what},
        ) from e


def to_table(data: Any, what: str = "current") -> pa.Table:
    """An Arrow table from a pyarrow/pandas/polars table, a mapping of columns, or a Parquet
    path or ``pyarrow.dataset.Dataset`` (read whole)."""
    if isinstance(data, pa.Table):
        return data
    if isinstance(data, pa.RecordBatch):
        return pa.Table.from_batches([data])
    if hasattr(data, "to_arrow"):  # polars
        return to_table(data.to_arrow(), what)
    if hasattr(data, "columns") and hasattr(data, "dtypes"):  # pandas
        return pa.Table.from_pandas(data, preserve_index=False)
    if isinstance(data, dict):
        return pa.table(data)
    dataset = open_dataset(data, what)
    if dataset is not None:
        return dataset.to_table()
    raise InvalidInput(
        f"{what} data is a {type(data).__name__}; pass a pyarrow, pandas or polars table or a Parquet path",
        details={"field": what},
    )


def column_kind(t: pa.DataType) -> str:
    """numeric (int, float), categorical (string, bool) or other, as data profiles classify them."""
    fam = family(t)
    if fam in ("int", "float"):
        return "numeric"
    if fam in ("string", "bool"):
        return "categorical"
    return "other"


def numeric_values(chunked: pa.ChunkedArray) -> tuple[Float, int, int]:
    """(finite values as float64, nulls, non-finite count) of a numeric column, copied at most once."""
    arr = combine(chunked)
    nulls = arr.null_count
    if nulls:
        arr = pc.drop_null(arr)
    values = np.asarray(arr.cast(pa.float64(), safe=False).to_numpy(zero_copy_only=False))
    if len(values) and not (np.isfinite(values.min()) and np.isfinite(values.max())):
        keep = np.isfinite(values)
        return values[keep], nulls, int(len(values) - keep.sum())
    return values, nulls, 0


def category_counts(chunked: pa.ChunkedArray) -> tuple[list[Any], NDArray[np.int64], int]:
    """(distinct values, their counts, nulls) of a categorical column, counted in Arrow."""
    arr = combine(chunked)
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    nulls = arr.null_count
    vc = pc.value_counts(pc.drop_null(arr) if nulls else arr)
    values = vc.field("values").to_pylist()
    counts = vc.field("counts").to_numpy(zero_copy_only=False).astype(np.int64)
    return values, counts, nulls


# ---- the reference's bins ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Bins:
    """Fixed bins of one numeric column, from the reference: drift bins and the fine grid.

    Drift bin ``i`` is ``[edges[i-1], edges[i])`` with bin 0 = ``(-inf, edges[0])`` and the last
    bin ``[edges[-1], +inf)``: values outside the reference range land in the outer bins.
    """

    edges: list[float]
    lo: float
    hi: float


def quantile_edges(ordered: Float, bins: int = PSI_BINS) -> list[float]:
    """Inner drift-bin edges at the reference's quantiles (distinct; a constant column gets a
    bin for its value alone, so any other current value is counted outside it)."""
    n = len(ordered)
    if n == 0:
        return []
    pos = np.arange(1, bins) / bins * (n - 1)
    lo = np.floor(pos).astype(np.int64)
    frac = pos - lo
    q = ordered[lo] + (ordered[np.minimum(lo + 1, n - 1)] - ordered[lo]) * frac
    edges = np.unique(np.concatenate([[ordered[0]], q]))
    if len(edges) == 1:
        edges = np.array([edges[0], np.nextafter(edges[0], np.inf)])
    return [float(e) for e in edges]


def profile_bins(cp: ColumnProfile) -> Bins | None:
    """Bins of a stored profile column: its histogram's inner edges, the outer bins open."""
    if cp.kind != "numeric" or cp.count == 0 or cp.min is None or cp.max is None:
        return None
    edges = cp.edges[1:-1] if cp.min != cp.max else [cp.min, float(np.nextafter(cp.min, np.inf))]
    return Bins(list(edges), float(cp.min), float(cp.max))


def reference_bins(reference: DatasetVersion | Profile | Any) -> dict[str, Bins | None]:
    """The fixed bins of every column of a reference (a dataset version, profile or raw table)."""
    if isinstance(reference, DatasetVersion):
        reference = reference.profile
    if isinstance(reference, Profile):
        return {n: profile_bins(c) for n, c in reference.columns.items()}
    table = to_table(reference, "reference")
    out: dict[str, Bins | None] = {}
    for name in table.column_names:
        col = table.column(name)
        if column_kind(col.type) != "numeric":
            out[name] = None
            continue
        ordered = np.sort(numeric_values(col)[0])
        out[name] = (
            Bins(quantile_edges(ordered), float(ordered[0]), float(ordered[-1])) if len(ordered) else None
        )
    return out


# ---- window records ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NumericWindow:
    """A numeric column of a window (see the module docstring)."""

    count: int
    nulls: int
    nonfinite: int
    min: float | None
    max: float | None
    mean: float
    m2: float
    edges: list[float]
    counts: list[int]
    lo: float
    hi: float
    fine: list[int]
    below_sum: float = 0.0
    above_sum: float = 0.0
    kind: str = "numeric"

    def merge(self, o: NumericWindow) -> NumericWindow:
        if (self.edges, self.lo, self.hi) != (o.edges, o.lo, o.hi):
            raise InvalidInput(
                "cannot merge window profiles made against different reference bins; profile both "
                "windows against the same reference",
                details={"field": "edges"},
            )
        n = self.count + o.count
        delta = o.mean - self.mean
        mean = self.mean + delta * o.count / n if n else 0.0
        m2 = self.m2 + o.m2 + (delta * delta * self.count * o.count / n if n else 0.0)
        mins = [v for v in (self.min, o.min) if v is not None]
        maxs = [v for v in (self.max, o.max) if v is not None]
        return NumericWindow(
            n,
            self.nulls + o.nulls,
            self.nonfinite + o.nonfinite,
            min(mins) if mins else None,
            max(maxs) if maxs else None,
            mean,
            m2,
            self.edges,
            [a + b for a, b in zip(self.counts, o.counts, strict=True)],
            self.lo,
            self.hi,
            [a + b for a, b in zip(self.fine, o.fine, strict=True)],
            self.below_sum + o.below_sum,
            self.above_sum + o.above_sum,
        )

    def quantile(self, q: float) -> float | None:
        """A quantile read from the fine histogram (error <= one fine bin inside the reference range)."""
        knots, cdf = self.cdf_knots()
        if len(knots) == 0:
            return None
        return float(np.interp(q, cdf, knots))

    def cdf_knots(self) -> tuple[Float, Float]:
        """Points and values of the piecewise-linear ECDF the fine histogram implies (values in
        an outer bin are spread evenly between the window's extreme and the reference's)."""
        if self.count == 0 or self.min is None or self.max is None:
            return np.zeros(0), np.zeros(0)
        fine = np.asarray(self.fine, dtype=np.float64)
        xs = np.linspace(self.lo, self.hi, FINE + 1)
        ys = np.cumsum(fine)[: FINE + 1] / self.count  # at lo: the share below it
        if fine[0]:
            xs, ys = np.concatenate([[self.min], xs]), np.concatenate([[0.0], ys])
        if fine[-1]:
            xs, ys = np.concatenate([xs, [self.max]]), np.concatenate([ys, [1.0]])
        return xs, ys


@dataclass(frozen=True, slots=True)
class CategoricalWindow:
    """A categorical column of a window: the exact count of every value, and nulls."""

    counts: dict[Any, int]
    nulls: int
    kind: str = "categorical"

    @property
    def count(self) -> int:
        return sum(self.counts.values())

    def merge(self, o: CategoricalWindow) -> CategoricalWindow:
        merged = dict(self.counts)
        for v, c in o.counts.items():
            merged[v] = merged.get(v, 0) + c
        return CategoricalWindow(merged, self.nulls + o.nulls)


@dataclass(frozen=True, slots=True)
class OtherWindow:
    """A column drift is not defined for (temporal, binary, nested): its count and nulls."""

    count: int
    nulls: int
    kind: str = "other"

    def merge(self, o: OtherWindow) -> OtherWindow:
        return OtherWindow(self.count + o.count, self.nulls + o.nulls)


ColumnWindow = NumericWindow | CategoricalWindow | OtherWindow


@dataclass(frozen=True, slots=True)
class WindowProfile:
    """The mergeable profile of a window of rows, against one reference's bins."""

    num_rows: int
    columns: dict[str, ColumnWindow] = field(default_factory=dict)

    def merge(self, other: WindowProfile) -> WindowProfile:
        """The profile of both windows' rows together (exact for counts, histograms, moments).

        >>> import pyarrow as pa
        >>> ref = pa.table({"x": [0.0, 1.0]})
        >>> a, b = profile_window(pa.table({"x": [0.0]}), ref), profile_window(pa.table({"x": [1.0]}), ref)
        >>> a.merge(b).columns["x"].mean
        0.5
        """
        names = list(self.columns) + [n for n in other.columns if n not in self.columns]
        merged: dict[str, ColumnWindow] = {}
        for n in names:
            a, b = self.columns.get(n), other.columns.get(n)
            if a is None or b is None:
                merged[n] = a if b is None else b  # type: ignore[assignment]
            elif a.kind != b.kind:
                raise InvalidInput(
                    f"column {n!r} is {a.kind} in one window and {b.kind} in the other; cannot merge",
                    details={"field": n},
                )
            else:
                merged[n] = a.merge(b)  # type: ignore[arg-type]
        return WindowProfile(self.num_rows + other.num_rows, merged)

    def to_dict(self) -> dict[str, Any]:
        cols = {}
        for n, c in self.columns.items():
            d = asdict(c)
            if isinstance(c, CategoricalWindow):
                d["counts"] = [[v, k] for v, k in c.counts.items()]
            cols[n] = d
        return {"num_rows": self.num_rows, "columns": cols}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> WindowProfile:
        cols: dict[str, ColumnWindow] = {}
        for n, c in d["columns"].items():
            c = dict(c)
            kind = c.pop("kind")
            if kind == "numeric":
                cols[n] = NumericWindow(**c)
            elif kind == "categorical":
                cols[n] = CategoricalWindow({v: int(k) for v, k in c["counts"]}, int(c["nulls"]))
            else:
                cols[n] = OtherWindow(**c)
        return cls(int(d["num_rows"]), cols)


# ---- profiling --------------------------------------------------------------------------------


def fine_index(x: Float, lo: float, hi: float) -> NDArray[np.intp]:
    """Fine-bin index of each value: 0 below ``lo``, FINE + 1 above ``hi``, 1..FINE inside."""
    width = (hi - lo) / FINE if hi > lo else 1.0
    idx = np.floor((x - lo) / width).astype(np.intp) + 1
    np.clip(idx, 1, FINE, out=idx)
    idx[x < lo] = 0
    idx[x > hi] = FINE + 1
    return idx


def profile_numeric(x: Float, nulls: int, nonfinite: int, bins: Bins) -> NumericWindow:
    """Profile the finite values ``x`` of one numeric column against the reference's bins."""
    n = len(x)
    edges = np.asarray(bins.edges, dtype=np.float64)
    counts = np.bincount(np.searchsorted(edges, x, side="right"), minlength=len(edges) + 1)
    idx = fine_index(x, bins.lo, bins.hi)
    fine = np.bincount(idx, minlength=FINE + 2)
    below = float(x[idx == 0].sum()) if fine[0] else 0.0
    above = float(x[idx == FINE + 1].sum()) if fine[-1] else 0.0
    mean = float(x.mean()) if n else 0.0
    dev = x - mean
    return NumericWindow(
        n,
        nulls,
        nonfinite,
        float(x.min()) if n else None,
        float(x.max()) if n else None,
        mean,
        float(np.dot(dev, dev)),
        list(bins.edges),
        [int(c) for c in counts],
        bins.lo,
        bins.hi,
        [int(c) for c in fine],
        below,
        above,
    )


def profile_window(table: Any, reference: DatasetVersion | Profile | Any) -> WindowProfile:
    """Profile a window of rows against a reference (dataset version, profile or raw table).

    Columns the reference does not have are profiled too (categorical ones exactly; numeric
    ones only by count and nulls, having no reference bins).

    >>> import pyarrow as pa
    >>> w = profile_window(pa.table({"x": [1.0, 9.0]}), pa.table({"x": [0.0, 1.0, 2.0]}))
    >>> w.columns["x"].count, w.columns["x"].fine[-1]
    (2, 1)
    """
    t = to_table(table, "window")
    bins = reference_bins(reference)
    cols: dict[str, ColumnWindow] = {}
    for name in t.column_names:
        col = t.column(name)
        kind = column_kind(col.type)
        b = bins.get(name)
        if kind == "numeric" and b is not None:
            cols[name] = profile_numeric(*numeric_values(col), b)
        elif kind == "categorical":
            values, counts, nulls = category_counts(col)
            cols[name] = CategoricalWindow(dict(zip(values, counts.tolist(), strict=True)), nulls)
        else:
            cols[name] = OtherWindow(len(col) - col.null_count, col.null_count)
    return WindowProfile(t.num_rows, cols)
