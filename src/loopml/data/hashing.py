"""The content hash of a dataset: a digest of its rows as a multiset.

What it depends on, and what it does not:

* **Rows, as a multiset.** Row order does not matter (a directory of parts read in any
  order, or a file sorted differently, hashes the same); a duplicated row does matter.
* **Columns by name.** Column order does not matter; names and values do.
* **Values by type family, not physical type.** int8..int64 and uint hash as integers,
  float32/float64 as floats (``-0.0 == 0.0``, every NaN alike), string/large_string/
  string_view and dictionary-encoded strings as strings, timestamps by instant and time
  zone.  So the same typed values read from CSV or Parquet, one file or many, row groups
  of any size, give the same digest; ``1`` (int) and ``1.0`` (float) do not.

How: each value gets a 64-bit hash (a splitmix64 finalizer over its canonical bits, or a
fold of its 64-bit words for strings), computed with numpy over whole columns;
a row's hash combines its columns' hashes with per-column odd multipliers and is mixed
again; the dataset's digest is the sha256 of the column names and families, the row count
and two independent 64-bit sums of the row hashes.

>>> import pyarrow as pa
>>> a = pa.table({"x": [1, 2], "y": ["a", "b"]})
>>> b = pa.table({"y": ["b", "a"], "x": pa.array([2, 1], pa.int32())})
>>> table_digest(a) == table_digest(b)
True
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

import numpy as np
import orjson
import pyarrow as pa
from numpy.typing import NDArray

from loopml.data.columns import Column, decode_table

HASH_VERSION = "loopml-rows-v2"
_C1 = np.uint64(0xBF58476D1CE4E5B9)
_C2 = np.uint64(0x94D049BB133111EB)
_NULL = np.uint64(0x6A09E667F3BCC908)  # the hash of a null, in every column
_LANE2 = np.uint64(0x3C6EF372FE94F82B)
U64 = NDArray[np.uint64]


def mix(v: U64, scratch: U64 | None = None) -> U64:
    """splitmix64's finalizer, in place on ``v`` (which it returns); ``scratch``: a temporary like ``v``."""
    t = np.right_shift(v, np.uint64(30), out=scratch)
    np.bitwise_xor(v, t, out=v)
    np.multiply(v, _C1, out=v)
    np.right_shift(v, np.uint64(27), out=t)
    np.bitwise_xor(v, t, out=v)
    np.multiply(v, _C2, out=v)
    np.right_shift(v, np.uint64(31), out=t)
    np.bitwise_xor(v, t, out=v)
    return v


def _salt(*parts: str) -> np.uint64:
    raw = hashlib.sha256("\x1f".join(parts).encode()).digest()[:8]
    return np.uint64(int.from_bytes(raw, "little") | 1)  # odd: multiplying by it is a bijection


def hash_bytes(arr: pa.Array) -> U64:
    """One hash per string/binary value (nulls hash as the empty value: callers overwrite them).

    A value's bytes are read as little-endian 64-bit words (the last one zero-padded) and folded
    into a constant per length, ``(length + C2) * C1``, with ``h = mix(h ^ word)``; changing one
    word changes the hash (``mix`` is a bijection).  Whole columns at once: strings are taken
    longest first, so the ones still being folded at word ``j`` are a prefix and every step is a
    slice, not a gather.
    """
    arr = arr.cast(pa.large_binary())
    n = len(arr)
    if n == 0:
        return np.zeros(0, dtype=np.uint64)
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int64)[arr.offset : arr.offset + n + 1]
    data_buf = arr.buffers()[2]
    data = np.frombuffer(data_buf, dtype=np.uint8) if data_buf is not None else np.zeros(0, np.uint8)
    data = data[offsets[0] : offsets[-1]]
    starts = offsets[:-1] - offsets[0]
    lengths = np.diff(offsets)
    words = np.zeros(len(data) // 8 + 2, dtype=np.uint64)  # room for the word after the last
    words.view(np.uint8)[: len(data)] = data
    count = np.right_shift(lengths + 7, 3)
    most = int(count.max())
    order = None
    if most != int(count.min()):  # longest first (a radix sort of small integers)
        order = np.argsort((most - count).astype(np.min_scalar_type(most)), kind="stable")
    if order is not None:
        starts, lengths, count = starts[order], lengths[order], count[order]
    # active[j]: how many strings (a prefix, longest first) have more than j words
    active = np.searchsorted(-count, -np.arange(most + 1), side="left")
    h = lengths.astype(np.uint64)
    np.add(h, _C2, out=h)
    np.multiply(h, _C1, out=h)
    for j in range(most):
        m, last = int(active[j]), int(active[j + 1])  # strings with more than j (j + 1) words
        word = _words_at(words, starts[:m] + 8 * j)
        word[last:m] &= _LOW_BYTES[lengths[last:m] - 8 * j]  # a last word keeps only its bytes
        np.bitwise_xor(h[:m], word, out=h[:m])
        mix(h[:m])
    if order is None:
        return h
    out = np.empty_like(h)
    out[order] = h
    return out


_LOW_BYTES = np.array([(1 << (8 * k)) - 1 for k in range(8)] + [(1 << 64) - 1], dtype=np.uint64)


def _words_at(words: U64, at: NDArray[np.int64]) -> U64:
    """The little-endian 64-bit words starting at byte offsets ``at`` of ``words``' bytes."""
    index = np.right_shift(at, 3)
    shift = np.left_shift(np.bitwise_and(at.view(np.uint64), np.uint64(7)), np.uint64(3))  # at >= 0
    low = np.right_shift(words[index], shift)
    index += 1
    high = words[index]
    np.left_shift(high, np.uint64(64) - shift, out=high)  # a shift by 64 gives 0 in numpy
    np.bitwise_or(low, high, out=low)
    return low


_NS_PER_UNIT = {"s": 1_000_000_000, "ms": 1_000_000, "us": 1_000, "ns": 1}


def _fixed_bits(arr: pa.Array, fam: str) -> U64:
    """Canonical 64-bit patterns of a temporal column (by instant, whatever the unit).

    Timestamps and durations are scaled to nanoseconds in wrapping 64-bit arithmetic: the
    same as a cast to ``ns`` inside its range (years 1677-2262), and no overflow outside it.
    """
    if fam == "date":
        ints = arr.cast(pa.date32()).cast(pa.int32()).cast(pa.int64())
    elif fam == "time":
        ints = arr.cast(pa.time64("ns")).cast(pa.int64())
    else:
        raw = np.array(arr.cast(pa.int64()).fill_null(0).to_numpy(), dtype=np.int64).view(np.uint64)
        scaled: U64 = raw * np.uint64(_NS_PER_UNIT[arr.type.unit])
        return scaled
    bits: U64 = np.array(ints.fill_null(0).to_numpy(), dtype=np.int64).view(np.uint64)
    return bits


def _other_values(col: Column) -> U64:
    arr = col.array
    assert arr is not None
    fam = col.family
    if fam == "null":
        return np.full(col.length, _NULL, dtype=np.uint64)
    if fam in ("binary", "decimal"):
        return hash_bytes(arr.cast(pa.string()) if fam == "decimal" else arr)
    if fam in ("date", "time", "duration") or fam.startswith("timestamp"):
        bits = _fixed_bits(arr, fam)  # a fresh copy: xor and mix in place
        return mix(np.bitwise_xor(bits, _salt(fam), out=bits))
    # Nested and rare types: canonical JSON per value (slow, but exact and stable).
    texts = [json.dumps(v, sort_keys=True, default=str) for v in arr.to_pylist()]
    return hash_bytes(pa.array(texts, pa.large_string()))


def value_hashes(col: Column, *, consume: bool = False) -> U64:
    """One 64-bit hash per row of a decoded column, nulls included.

    With ``consume`` a numeric column's ``bits`` may be overwritten (saves a copy of the column);
    the column's type family is mixed in later, by :func:`column_salt`.
    """
    if col.kind == "categorical" and col.codes is None:
        h = hash_bytes(col.array)  # a high-cardinality string column, not dictionary-encoded
    elif col.kind == "categorical":
        assert col.dictionary is not None and col.codes is not None
        if col.family == "bool":
            dict_bits = np.asarray(col.dictionary.to_numpy(zero_copy_only=False), dtype=np.uint64)
            per_value = mix(dict_bits ^ _C2)
        else:
            per_value = hash_bytes(col.dictionary)
        # Code -1 (null) picks the appended null hash.
        return np.append(per_value, _NULL)[col.codes]
    elif col.kind == "numeric":
        assert col.bits is not None
        h, temp = _numeric_buffers(col, consume)
        mix(h, temp)
        if col.valid is not None:
            h[~col.valid] = _NULL
        return h
    else:
        h = _other_values(col)
    if col.null_count:
        assert col.array is not None
        h[col.array.is_null().to_numpy(zero_copy_only=False)] = _NULL
    return h


def _numeric_buffers(col: Column, consume: bool) -> tuple[U64, U64 | None]:
    """Where to mix a numeric column's hashes, and a temporary: its scratch buffers when it has
    them (the profile is done with buffers 1 and 2 by then), else a copy of its bits."""
    assert col.bits is not None
    n, scratch = len(col.bits), col.scratch
    if consume and col.bits.flags.writeable:
        h = col.bits
    elif scratch is None:
        return col.bits.copy(), None
    else:
        h = scratch.buffer(1, n).view(np.uint64)
        np.copyto(h, col.bits)
    return h, None if scratch is None else scratch.buffer(2, n).view(np.uint64)


def column_salt(col: Column) -> np.uint64:
    """The odd multiplier of a column's hashes in a row: names and type families keep columns apart."""
    return _salt(col.name, col.family)


class RowDigest:
    """Accumulates columns' hashes into row hashes, then into the dataset's digest.

    Columns may be added in any order (and from several threads, under a lock held by the caller).
    """

    def __init__(self, num_rows: int) -> None:
        self.num_rows = num_rows
        self.acc = np.zeros(num_rows, dtype=np.uint64)
        self.columns: list[list[str]] = []

    def add(self, col: Column, hashes: U64) -> None:
        """Fold one column's :func:`value_hashes` in (``hashes`` is overwritten)."""
        np.multiply(hashes, column_salt(col), out=hashes)
        np.add(self.acc, hashes, out=self.acc)
        self.columns.append([col.name, col.family])

    def hexdigest(self) -> str:
        rows = mix(self.acc.copy())
        lane1 = int(rows.sum(dtype=np.uint64))
        lane2 = int(mix(rows ^ _LANE2).sum(dtype=np.uint64))
        payload = {
            "hash": HASH_VERSION,
            "columns": sorted(self.columns),
            "num_rows": self.num_rows,
            "lanes": [f"{lane1:016x}", f"{lane2:016x}"],
        }
        return hashlib.sha256(orjson.dumps(payload)).hexdigest()


def digest_of(columns: Sequence[Column], num_rows: int) -> str:
    """The content digest (64 hex characters) of decoded columns."""
    rows = RowDigest(num_rows)
    for col in columns:
        rows.add(col, value_hashes(col))
    return rows.hexdigest()


def table_digest(table: pa.Table) -> str:
    """The content digest of a table."""
    return digest_of(decode_table(table), table.num_rows)
