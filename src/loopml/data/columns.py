"""One decoded view per column, shared by the content hash and the profile.

Decoding is the expensive part (dictionary-encoding strings, casting numbers), so it is
done once per column and both consumers read the result: a categorical column becomes
integer codes into its distinct values; a numeric column becomes a float64 array of its
finite values plus the canonical bits the hash needs.

>>> import pyarrow as pa
>>> col = decode("city", pa.chunked_array([["a", None, "a"]]))
>>> col.kind, col.codes.tolist(), col.dictionary.to_pylist()
('categorical', [0, -1, 0], ['a'])
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from numpy.typing import NDArray

from loopml.errors import InvalidInput


@dataclass(slots=True)
class Column:
    """A decoded column: ``kind`` is numeric, categorical or other.

    numeric: ``bits`` (uint64 canonical bit pattern of every row, for hashing), ``valid``
    (None when no row is null), ``finite`` (float64 of the non-null finite values).
    categorical: ``codes`` (int64, -1 for null) into ``dictionary`` (distinct values), or, for
    a long string column whose values are mostly distinct, just ``array``.
    other: ``array`` (the combined column), hashed by type-specific rules.
    """

    name: str
    family: str
    kind: str
    length: int
    null_count: int
    bits: NDArray[np.uint64] | None = None
    valid: NDArray[np.bool_] | None = None
    finite: NDArray[np.float64] | None = None
    codes: NDArray[np.int64] | None = None
    dictionary: pa.Array | None = None
    array: pa.Array | None = None
    scratch: Scratch | None = None


class Scratch:
    """Reusable row-length buffers of one worker, so that the columns it decodes, profiles and
    hashes one after the other do not each fault in fresh memory (a third of the time on
    million-row numeric columns).  Buffer 0 holds a numeric column's decoded values (``finite``,
    and ``bits`` of floats); 1 and 2 are temporaries of the profile and the hash.  A column decoded
    into them is valid only until the worker decodes the next one.
    """

    def __init__(self, rows: int) -> None:
        self.rows = rows
        self._buffers: list[NDArray[np.float64]] = []

    def buffer(self, index: int, length: int) -> NDArray[np.float64]:
        while len(self._buffers) <= index:
            self._buffers.append(np.empty(self.rows, dtype=np.float64))
        return self._buffers[index][:length]


def family(t: pa.DataType) -> str:
    """The type family the content hash uses: int32 and int64 (or CSV and Parquet strings) agree."""
    if pa.types.is_dictionary(t):
        return family(t.value_type)
    checks = (
        (pa.types.is_integer, "int"),
        (pa.types.is_floating, "float"),
        (pa.types.is_boolean, "bool"),
        (_is_string, "string"),
        (_is_binary, "binary"),
        (pa.types.is_date, "date"),
        (pa.types.is_time, "time"),
        (pa.types.is_duration, "duration"),
        (pa.types.is_decimal, "decimal"),
        (pa.types.is_null, "null"),
    )
    for check, name in checks:
        if check(t):
            return name
    if pa.types.is_timestamp(t):
        return f"timestamp[{t.tz}]" if t.tz else "timestamp"
    return str(t)


def _is_string(t: pa.DataType) -> bool:
    return bool(pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t))


def _is_binary(t: pa.DataType) -> bool:
    return bool(
        pa.types.is_binary(t)
        or pa.types.is_large_binary(t)
        or pa.types.is_binary_view(t)
        or pa.types.is_fixed_size_binary(t)
    )


def combine(chunked: pa.ChunkedArray) -> pa.Array:
    """One contiguous array (no copy when there is a single chunk)."""
    if chunked.num_chunks == 1:
        return chunked.chunk(0)
    if chunked.num_chunks == 0:
        return pa.array([], type=chunked.type)
    return chunked.combine_chunks()


def decode(name: str, chunked: pa.ChunkedArray, scratch: Scratch | None = None) -> Column:
    """Decode one column of a table (see :class:`Column`), numbers into ``scratch`` if given."""
    arr = combine(chunked)
    fam = family(arr.type)
    if pa.types.is_dictionary(arr.type):
        if fam == "string" and _usable_dictionary(arr):
            return _encoded(name, fam, arr)
        arr = arr.dictionary_decode()
    base = {"name": name, "family": fam, "length": len(arr), "null_count": arr.null_count}
    if fam in ("int", "float"):
        return _numeric(arr, fam, base, scratch)
    if fam == "bool":
        return _boolean(arr, base)
    if fam == "string":
        if pa.types.is_string_view(arr.type):
            arr = arr.cast(pa.large_string())
        if _mostly_distinct(arr):
            # Ids, free text: a dictionary would be as large as the column and slow to build; the
            # hash and the profile work on the strings (and their hashes) directly.
            return Column(**base, kind="categorical", array=arr)
        encoded = pc.dictionary_encode(arr)
        codes = pc.fill_null(encoded.indices.cast(pa.int64()), -1).to_numpy()
        return Column(**base, kind="categorical", codes=codes, dictionary=encoded.dictionary)
    return Column(**base, kind="other", array=arr)


def _usable_dictionary(arr: pa.DictionaryArray) -> bool:
    """Whether a dictionary-encoded column's dictionary can be used as it is: no null and no value
    twice (so its positions are the distinct values)."""
    values = arr.dictionary
    return bool(values.null_count == 0 and pc.count_distinct(values).as_py() == len(values))


def _encoded(name: str, fam: str, arr: pa.DictionaryArray) -> Column:
    values = arr.dictionary
    if pa.types.is_string_view(values.type):
        values = values.cast(pa.large_string())
    indices = arr.indices.cast(pa.int64())
    codes = (pc.fill_null(indices, -1) if arr.null_count else indices).to_numpy()
    base = {"name": name, "family": fam, "length": len(arr), "null_count": arr.null_count}
    return Column(**base, kind="categorical", codes=codes, dictionary=values)  # type: ignore[arg-type]


_BOOLEANS = pa.array([False, True])


def _boolean(arr: pa.Array, base: dict[str, object]) -> Column:
    """Codes 0/1 into [False, True] straight from the bits (no hash table to build)."""
    codes = (pc.fill_null(arr, False) if arr.null_count else arr).to_numpy(zero_copy_only=False)
    codes = codes.astype(np.int64)
    if arr.null_count:
        codes[arr.is_null().to_numpy(zero_copy_only=False)] = -1
    return Column(**base, kind="categorical", codes=codes, dictionary=_BOOLEANS)  # type: ignore[arg-type]


_SAMPLE = 8192


def _mostly_distinct(arr: pa.Array) -> bool:
    """Whether a leading sample of a long column is mostly distinct values."""
    if len(arr) < 8 * _SAMPLE:
        return False
    sample = arr.slice(0, _SAMPLE)
    return bool(pc.count_distinct(sample).as_py() > _SAMPLE // 2)


def _numeric(arr: pa.Array, fam: str, base: dict[str, object], scratch: Scratch | None) -> Column:
    target = pa.int64() if fam == "int" else pa.float64()
    cast = arr.cast(target, safe=False)  # uint64 above 2**63 keeps its bits, which is all the hash needs
    valid = arr.is_valid().to_numpy(zero_copy_only=False) if arr.null_count else None
    values = (pc.fill_null(cast, 0) if arr.null_count else cast).to_numpy()
    if fam == "int":
        bits = values.view(np.uint64)
        finite = values.astype(np.float64) if scratch is None else scratch.buffer(0, len(values))
        if scratch is not None:
            np.copyto(finite, values, casting="unsafe")
        if valid is not None:
            finite = finite[valid]
        return Column(**base, kind="numeric", bits=bits, valid=valid, finite=finite, scratch=scratch)  # type: ignore[arg-type]
    # A copy in which -0.0 became 0.0, so the two hash alike.
    floats = np.add(values, 0.0, out=None if scratch is None else scratch.buffer(0, len(values)))
    if len(floats) and np.isfinite(floats.min()) and np.isfinite(floats.max()):  # no NaN, no inf
        finite = floats if valid is None else floats[valid]
    else:
        nan = np.isnan(floats)
        if nan.any():
            floats[nan] = np.nan  # one NaN bit pattern
        keep = np.isfinite(floats)
        if valid is not None:
            keep &= valid
        finite = floats if keep.all() else floats[keep]
    return Column(
        **base,  # type: ignore[arg-type]
        kind="numeric",
        bits=floats.view(np.uint64),
        valid=valid,
        finite=finite,
        scratch=scratch,
    )


def check_names(names: list[str]) -> list[str]:
    """Column names of a table to register: at least one, none twice."""
    if not names:
        raise InvalidInput("the dataset has no columns; register a table with at least one column")
    seen: set[str] = set()
    for n in names:
        if n in seen:
            raise InvalidInput(f"column {n!r} appears twice; rename one of them", details={"field": n})
        seen.add(n)
    return names


def decode_table(table: pa.Table) -> list[Column]:
    """Decode every column; duplicate or empty column names are refused."""
    names = check_names(table.column_names)
    return [decode(n, table.column(i)) for i, n in enumerate(names)]
