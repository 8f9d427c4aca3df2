"""The content hash: the same rows in any file layout hash alike; one changed value does not."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from loopml.data.hashing import hash_bytes, table_digest
from loopml.data.sources import read_source


def frame(n: int = 500, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "id": np.arange(n),
            "amount": rng.normal(100, 15, n).round(6),
            "city": rng.choice(["paris", "lyon", "nice", "lille"], n),
            "churned": rng.random(n) < 0.2,
            "score": rng.integers(-5, 5, n),
        }
    )


def digest(source: object) -> str:
    return table_digest(read_source(source).table)


def test_one_parquet_file_and_a_directory_of_csv_and_parquet_parts_hash_alike(tmp_path: Path) -> None:
    df = frame()
    df.to_parquet(tmp_path / "one.parquet", index=False)
    parts = tmp_path / "parts"
    parts.mkdir()
    shuffled = df.sample(frac=1.0, random_state=1)
    for i in range(4):  # shuffled rows in 4 parts, alternately CSV and Parquet (int32 ids, small row groups)
        chunk = shuffled.iloc[i * 125 : (i + 1) * 125]
        if i % 2:
            chunk.to_csv(parts / f"part-{i}.csv", index=False)
        else:
            table = pa.Table.from_pandas(chunk, preserve_index=False)
            table = table.cast(
                table.schema.set(table.schema.get_field_index("id"), pa.field("id", pa.int32()))
            )
            pq.write_table(table, parts / f"part-{i}.parquet", row_group_size=37)
    (parts / "_SUCCESS").write_text("")
    (parts / ".part-0.parquet.crc").write_text("ignored")

    single, directory = digest(tmp_path / "one.parquet"), digest(parts)

    assert single == directory == digest(df)
    assert len(single) == 64 and int(single, 16) >= 0


def test_row_order_and_column_order_do_not_matter() -> None:
    df = frame()
    shuffled = df.sample(frac=1.0, random_state=7)[["score", "city", "id", "churned", "amount"]]
    assert digest(df) == digest(shuffled)


@pytest.mark.parametrize(
    ("column", "row", "value"),
    [("amount", 17, 1e-9), ("city", 250, "paris!"), ("churned", 3, None), ("score", 499, 99), ("id", 0, -1)],
)
def test_one_changed_value_changes_the_hash(column: str, row: int, value: object) -> None:
    df = frame()
    changed = df.copy()
    if column == "amount":
        changed.loc[row, column] += value  # type: ignore[operator]
    elif column == "churned":
        changed[column] = changed[column].astype(object)
        changed.loc[row, column] = not changed.loc[row, column]
    else:
        changed.loc[row, column] = value
    assert digest(df) != digest(changed)


def test_duplicated_rows_count() -> None:
    df = frame(10)
    assert digest(df) != digest(pd.concat([df, df.iloc[:1]]))


def test_values_moving_between_rows_or_columns_change_the_hash() -> None:
    base = pa.table({"a": [1, 2], "b": [3, 4]})
    assert table_digest(base) != table_digest(pa.table({"a": [1, 2], "b": [4, 3]}))
    assert table_digest(base) != table_digest(pa.table({"a": [3, 4], "b": [1, 2]}))
    assert table_digest(base) != table_digest(pa.table({"a": [1, 2], "c": [3, 4]}))


@pytest.mark.parametrize(
    ("left", "right"),
    [
        (pa.array(["ab", "c"]), pa.array(["a", "bc"])),
        (pa.array(["ab", "x"]), pa.array(["ba", "x"])),
        (pa.array(["", "x"]), pa.array([None, "x"], pa.string())),
        (pa.array([1, 2]), pa.array([1.0, 2.0])),
        (pa.array([0.0, 1.0]), pa.array([None, 1.0])),
        (pa.array([True, False]), pa.array([1, 0])),
        (pa.array(["x" * 70 + "a"]), pa.array(["x" * 70 + "b"])),
        (pa.array(["a" + "x" * 63 + "b"]), pa.array(["b" + "x" * 63 + "a"])),
    ],
    ids=[
        "split",
        "byte-order",
        "empty-vs-null",
        "int-vs-float",
        "zero-vs-null",
        "bool-vs-int",
        "long",
        "far-swap",
    ],
)
def test_values_that_only_look_alike_hash_differently(left: pa.Array, right: pa.Array) -> None:
    assert table_digest(pa.table({"x": left})) != table_digest(pa.table({"x": right}))


@pytest.mark.parametrize(
    ("left", "right"),
    [
        (pa.array([1, 2], pa.int8()), pa.array([1, 2], pa.uint64())),
        (pa.array([0.5, -0.0]), pa.array([0.5, 0.0], pa.float32())),
        (pa.array([float("nan"), 1.0]), pa.array([-float("nan"), 1.0])),
        (pa.array(["a", "b"]), pa.array(["a", "b"], pa.large_string())),
        (pa.array(["a", "b", "a"]).dictionary_encode(), pa.array(["a", "b", "a"])),
        (pa.array([0, 1_000], pa.timestamp("ms")), pa.array([0, 1_000_000], pa.timestamp("us"))),
    ],
    ids=["int-widths", "float-widths-and-signed-zero", "nan", "large-string", "dictionary", "time-units"],
)
def test_physical_types_of_one_family_hash_alike(left: pa.Array, right: pa.Array) -> None:
    assert table_digest(pa.table({"x": left})) == table_digest(pa.table({"x": right}))


def test_timestamps_in_different_time_zones_hash_differently() -> None:
    utc = pa.array([0], pa.timestamp("s", tz="UTC"))
    paris = pa.array([0], pa.timestamp("s", tz="Europe/Paris"))
    assert table_digest(pa.table({"t": utc})) != table_digest(pa.table({"t": paris}))


def test_other_types_hash_and_change_with_their_values() -> None:
    base = {
        "d": pa.array([0, 1], pa.date32()),
        "bin": pa.array([b"\x00", b"\x01"]),
        "lst": pa.array([[1, 2], [3]]),
        "dec": pa.array([1, 2], pa.decimal128(5, 2)),
        "nothing": pa.nulls(2),
    }
    digest_base = table_digest(pa.table(base))
    for key, other in [
        ("d", pa.array([0, 2], pa.date32())),
        ("bin", pa.array([b"\x00", b"\x02"])),
        ("lst", pa.array([[1], [2, 3]])),
        ("dec", pa.array([1, 3], pa.decimal128(5, 2))),
    ]:
        assert table_digest(pa.table({**base, key: other})) != digest_base, key
    assert table_digest(pa.table(base)) == digest_base


def test_an_empty_table_has_a_digest_that_depends_on_its_columns() -> None:
    a = pa.table({"x": pa.array([], pa.int64())})
    b = pa.table({"y": pa.array([], pa.int64())})
    assert table_digest(a) != table_digest(b)


def test_long_mostly_distinct_string_columns_hash_their_values_directly() -> None:
    from loopml.data.columns import decode
    from loopml.data.hashing import hash_bytes, value_hashes

    ids = pa.array([None if i % 1000 == 0 else f"user-{i}" for i in range(70_000)])
    col = decode("id", pa.chunked_array([ids]))
    assert col.kind == "categorical" and col.codes is None  # the direct path
    encoded = ids.dictionary_encode()
    via_dictionary = hash_bytes(encoded.dictionary)[encoded.indices.fill_null(0).to_numpy()]
    direct = value_hashes(col)
    valid = ids.is_valid().to_numpy(zero_copy_only=False)
    assert (direct[valid] == via_dictionary[valid]).all()
    changed = ids.to_pylist()
    changed[12_345] = "user-x"
    assert table_digest(pa.table({"id": ids})) != table_digest(pa.table({"id": changed}))


def test_the_parallel_analysis_agrees_with_the_sequential_hash_and_profile() -> None:
    from loopml.data.analysis import analyse
    from loopml.data.profile import profile_table

    table = pa.Table.from_pandas(frame(2_000), preserve_index=False)
    digest, profile = analyse(table, workers=3)
    assert digest == table_digest(table) and profile == profile_table(table)


def _reference_string_hash(value: bytes) -> int:
    """The documented algorithm, one value at a time in plain Python."""
    mask = (1 << 64) - 1

    def mix(v: int) -> int:
        v ^= v >> 30
        v = (v * 0xBF58476D1CE4E5B9) & mask
        v ^= v >> 27
        v = (v * 0x94D049BB133111EB) & mask
        return v ^ (v >> 31)

    h = ((len(value) + 0x94D049BB133111EB) * 0xBF58476D1CE4E5B9) & mask
    for i in range(0, len(value), 8):
        h = mix(h ^ int.from_bytes(value[i : i + 8].ljust(8, b"\0"), "little"))
    return h


def test_vectorised_string_hash_equals_the_reference_on_every_length_and_slices() -> None:
    rng = np.random.default_rng(7)
    words = ["", "a", "é", "naïve café", "x" * 8, "y" * 9, "z" * 16, "日本語のテキスト", "\0\0"]
    words += ["".join(rng.choice(list("abcdé€ 0123"), size=int(k))) for k in rng.integers(0, 40, 300)]
    arr = pa.array(words)
    for piece in (arr, arr.slice(3, 200), arr.slice(150)):
        got = hash_bytes(piece)
        expected = [_reference_string_hash(v.as_py().encode()) for v in piece]
        assert got.tolist() == expected


def test_a_dictionary_encoded_parquet_file_hashes_like_the_plain_table(tmp_path: Path) -> None:
    df = frame(3000, seed=3)
    pq.write_table(
        pa.Table.from_pandas(df, preserve_index=False), tmp_path / "dict.parquet", use_dictionary=True
    )
    pq.write_table(
        pa.Table.from_pandas(df, preserve_index=False), tmp_path / "plain.parquet", use_dictionary=False
    )
    assert digest(tmp_path / "dict.parquet") == digest(tmp_path / "plain.parquet") == digest(df)


def test_timestamps_beyond_the_nanosecond_range_hash_without_error() -> None:
    far = pa.array([0, 32_503_680_000_000, None], type=pa.timestamp("ms"))  # 1970, year 3000, null
    near = pa.array([0, 1_000, None], type=pa.timestamp("ms"))
    table = pa.table({"t": far})
    assert table_digest(table) != table_digest(pa.table({"t": near}))
    same_in_us = pa.table({"t": near.cast(pa.timestamp("us"))})
    assert table_digest(pa.table({"t": near})) == table_digest(same_in_us)
