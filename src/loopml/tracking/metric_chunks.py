"""Metric points stored as packed columnar chunks: one row per (run, key, batch), not per point.

A ``log_batch`` of 1000 points over 10 keys writes 10 chunk rows.  A chunk's ``data`` is three
little-endian columns back to back: ``int64 step[n]``, ``int64 timestamp[n]``, ``float64 value[n]``
(NaN and infinities are native IEEE values, unlike in SQL).  Its ``digest`` (BLAKE2b-128 of
``data``) is part of the primary key, so re-sending a batch writes nothing new.  A point sent in
two different batches lands in two chunks; :func:`history` returns each distinct point once, so
the observable behaviour is that of a table keyed by (step, timestamp, value).

This is an on-disk format: change it only together with a migration.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import sys
from array import array
from collections.abc import Iterable, Sequence

from loopml.tracking.records import Metric, MetricTuple
from loopml.tracking.validation import check_int, check_key, metric_value

_LITTLE = sys.byteorder == "little"
_INT = {int}  # exactly: bool is an int subclass and is refused
_NUMBER = {int, float}

Chunk = tuple[str, bytes, int, bytes]  # key, digest, number of points, data
Latest = tuple[str, int, int, float, bool]  # key, step, timestamp, value (0.0 for NaN), is_nan


def pack(steps: Sequence[int], timestamps: Sequence[int], values: Sequence[float]) -> bytes:
    """The ``data`` of a chunk; raises TypeError/OverflowError on values that are not int64/float."""
    cols = (array("q", steps), array("q", timestamps), array("d", values))
    if not _LITTLE:
        for col in cols:
            col.byteswap()
    return b"".join(col.tobytes() for col in cols)


def unpack(data: bytes) -> tuple[array[int], array[int], array[float]]:
    """(steps, timestamps, values) of a chunk's ``data``."""
    n = len(data) // 24
    steps, stamps, values = array("q"), array("q"), array("d")
    steps.frombytes(data[: 8 * n])
    stamps.frombytes(data[8 * n : 16 * n])
    values.frombytes(data[16 * n :])
    if not _LITTLE:
        for col in (steps, stamps, values):
            col.byteswap()
    return steps, stamps, values


def digest(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=16).digest()


def build(metrics: Iterable[MetricTuple]) -> tuple[list[Chunk], list[Latest]]:
    """Validate a batch's metrics and pack them: one chunk and one latest point per key.

    Raises :class:`InvalidInput` naming the field before anything is written.
    """
    groups: dict[object, tuple[list[object], list[object], list[object]]] = {}
    for key, value, timestamp, step in metrics:
        cols = groups.get(key)
        if cols is None:
            cols = groups[key] = ([], [], [])
        cols[0].append(step)
        cols[1].append(timestamp)
        cols[2].append(value)
    chunks: list[Chunk] = []
    latest: list[Latest] = []
    for raw_key, (steps, stamps, values) in groups.items():
        key = check_key(raw_key, "metric")
        data = None
        if {*map(type, steps), *map(type, stamps)} <= _INT and set(map(type, values)) <= _NUMBER:
            with contextlib.suppress(OverflowError):  # beyond int64: the slow path names the field
                data = pack(steps, stamps, values)  # type: ignore[arg-type]
        if data is None:  # strings from protobuf JSON, or bad input: check point by point
            steps = [check_int(s, "metric step") for s in steps]
            stamps = [check_int(t, "metric timestamp") for t in stamps]
            values = [metric_value(key, v) for v in values]
            data = pack(steps, stamps, values)  # type: ignore[arg-type]
        chunks.append((key, digest(data), len(steps), data))
        latest.append(_latest(key, *unpack(data)))
    return chunks, latest


def _latest(key: str, steps: array[int], stamps: array[int], values: array[float]) -> Latest:
    """The greatest (step, timestamp, value) point, NaN ordering as 0.0 (as MLflow stores it)."""
    if not math.isnan(sum(values)):  # no NaN (inf - inf also sums to NaN: that takes the slow way)
        step, stamp, value = max(zip(steps, stamps, values, strict=True))
        return key, step, stamp, value, False
    step, stamp, value = max(zip(steps, stamps, values, strict=True), key=_nan_as_zero)
    return (key, step, stamp, 0.0, True) if math.isnan(value) else (key, step, stamp, value, False)


def _nan_as_zero(point: tuple[int, int, float]) -> tuple[int, int, float]:
    return (point[0], point[1], 0.0) if math.isnan(point[2]) else point


def history(key: str, blobs: Iterable[bytes]) -> list[Metric]:
    """Every distinct point of the chunks, ordered by (step, timestamp, value)."""
    points: set[tuple[int, int, bool, float]] = set()
    for data in blobs:
        steps, stamps, values = unpack(data)
        for step, stamp, value in zip(steps, stamps, values, strict=True):
            nan = math.isnan(value)
            points.add((step, stamp, nan, 0.0 if nan else value))
    ordered = sorted(points, key=lambda p: (p[0], p[1], p[3], p[2]))
    return [Metric(key, math.nan if nan else value, stamp, step) for step, stamp, nan, value in ordered]
