"""Turn what a user registers into one Arrow table, and say where it came from.

Accepted: a pandas DataFrame (its index is kept as a column only when it is named), a
polars DataFrame, a pyarrow Table or RecordBatch, or a path (``str``/``Path``) to a Parquet
or CSV file or to a directory of them (read recursively in name order; hidden files and
``_``-prefixed markers such as ``_SUCCESS`` are skipped).  Parts of a directory may differ
in physical types (int32 in one part, int64 in another): they are unified as Arrow's
permissive promotion does.

>>> import pyarrow as pa
>>> read_source(pa.table({"x": [1]})).description
'pyarrow.Table'
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from loopml.errors import InvalidInput, NotFound

PARQUET_SUFFIXES = (".parquet", ".pq", ".parq")
CSV_SUFFIXES = (".csv", ".csv.gz", ".csv.bz2", ".csv.zst")
_DICTIONARY_SHARE = 64  # a dictionary page under 1/64 of its column chunk: few distinct values


@dataclass(frozen=True, slots=True)
class Source:
    """A table to register; ``parquet_file`` is set when it is exactly one Parquet file's rows,
    and ``parquet_bytes`` then holds that file's bytes as they were read (the rows were parsed
    from them, and the snapshot stores them).

    ``table`` may hold dictionary-encoded columns where the file stores plain strings (they are
    read as the file encodes them, which is cheaper); ``schema`` is the table's schema as loading
    the rows gives it back.
    """

    table: pa.Table
    description: str
    parquet_file: Path | None = None
    stored_schema: pa.Schema | None = None
    parquet_bytes: pa.Buffer | None = None

    @property
    def schema(self) -> pa.Schema:
        return self.table.schema if self.stored_schema is None else self.stored_schema


def read_source(source: Any) -> Source:
    """Read ``source`` (see the module docstring) into a :class:`Source`."""
    if isinstance(source, pa.Table):
        return Source(source, "pyarrow.Table")
    if isinstance(source, pa.RecordBatch):
        return Source(pa.Table.from_batches([source]), "pyarrow.RecordBatch")
    if isinstance(source, str | Path):
        return _read_path(Path(source))
    module = type(source).__module__.split(".")[0]
    if module == "pandas" and type(source).__name__ == "DataFrame":
        # A named index is data (it becomes a column); an unnamed one is row numbering left over from
        # filtering or shuffling, and keeping it would make the same rows hash differently.
        named = any(n is not None for n in source.index.names)
        return Source(pa.Table.from_pandas(source, preserve_index=named), "pandas.DataFrame")
    if module == "polars" and type(source).__name__ == "DataFrame":
        return Source(_no_views(source.to_arrow()), "polars.DataFrame")
    raise InvalidInput(
        f"cannot register a {type(source).__module__}.{type(source).__name__}; pass a pandas or polars "
        "DataFrame, a pyarrow Table, or the path of a Parquet/CSV file or directory",
        details={"field": "source"},
    )


def _no_views(table: pa.Table) -> pa.Table:
    """Cast string_view/binary_view columns (polars' in-memory types) to large types Parquet stores."""
    fields = []
    for f in table.schema:
        if pa.types.is_string_view(f.type):
            f = f.with_type(pa.large_string())
        elif pa.types.is_binary_view(f.type):
            f = f.with_type(pa.large_binary())
        fields.append(f)
    schema = pa.schema(fields, metadata=table.schema.metadata)
    return table if schema.equals(table.schema) else table.cast(schema)


def _no_views_schema(schema: pa.Schema) -> pa.Schema:
    return _no_views(schema.empty_table()).schema


def _kind(path: Path) -> str | None:
    name = path.name.lower()
    if name.endswith(PARQUET_SUFFIXES):
        return "parquet"
    if name.endswith(CSV_SUFFIXES):
        return "csv"
    return None


def _read_file(path: Path) -> pa.Table:
    kind = _kind(path)
    try:
        if kind == "parquet":
            return pq.read_table(path)
        if kind == "csv":
            return pacsv.read_csv(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InvalidInput(f"cannot read {str(path)!r}: {exc}", details={"field": "source"}) from None
    raise InvalidInput(
        f"{str(path)!r} is neither Parquet ({', '.join(PARQUET_SUFFIXES)}) nor CSV "
        f"({', '.join(CSV_SUFFIXES)}); rename it or load it into a DataFrame first",
        details={"field": "source"},
    )


def _read_parquet(path: Path) -> tuple[pa.Table, pa.Schema, pa.Buffer]:
    """One Parquet file's rows, with string columns the file dictionary-encodes kept encoded (the
    profile and the hash need the dictionary anyway), its schema as a plain read gives it, and
    the file's bytes: read once, parsed from memory, so the rows and the bytes always agree."""
    try:
        with pa.OSFile(str(path)) as fh:
            data = fh.read_buffer()
        file = pq.ParquetFile(pa.BufferReader(data))
        schema = file.schema_arrow
        encoded = _dictionary_columns(file.metadata, schema)
        if encoded:
            file = pq.ParquetFile(pa.BufferReader(data), read_dictionary=encoded, metadata=file.metadata)
        # One chunk per row group (read_table would cut 128Ki-row batches that decoding then joins).
        table = file.read()
    except (pa.ArrowInvalid, OSError) as exc:
        raise InvalidInput(f"cannot read {str(path)!r}: {exc}", details={"field": "source"}) from None
    plain = schema if not encoded else table.schema
    for name in encoded:
        i = plain.get_field_index(name)
        plain = plain.set(i, plain.field(i).with_type(schema.field(name).type))
    return _no_views(table), _no_views_schema(plain), data


def _dictionary_columns(meta: pq.FileMetaData, schema: pa.Schema) -> list[str]:
    """Top-level string columns whose every chunk starts with a small dictionary page: few distinct
    values, so reading them encoded skips materialising the strings.  (A large dictionary page
    usually means the writer fell back to plain pages, which would cost more to encode.)"""
    wanted = {f.name for f in schema if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)}
    for g in range(meta.num_row_groups):
        group = meta.row_group(g)
        for c in range(group.num_columns):
            chunk = group.column(c)
            if chunk.path_in_schema in wanted and not _small_dictionary(chunk):
                wanted.discard(chunk.path_in_schema)
    return [f.name for f in schema if f.name in wanted] if meta.num_row_groups else []


def _small_dictionary(chunk: pq.ColumnChunkMetaData) -> bool:
    start = chunk.dictionary_page_offset
    if not chunk.has_dictionary_page or start is None:
        return False
    size = chunk.data_page_offset - start
    return bool(size > 0 and size * _DICTIONARY_SHARE < chunk.total_compressed_size)


def _read_path(path: Path) -> Source:
    if not path.exists():
        raise NotFound(f"path {str(path)!r} does not exist", details={"field": "source"})
    resolved = path.resolve()
    if path.is_file():
        if _kind(path) == "parquet":
            table, schema, data = _read_parquet(path)
            return Source(table, f"file:{resolved}", resolved, schema, data)
        return Source(_no_views(_read_file(path)), f"file:{resolved}")
    parts = sorted(
        p
        for p in path.rglob("*")
        if p.is_file() and not any(part.startswith((".", "_")) for part in p.relative_to(path).parts)
    )
    if not parts:
        raise InvalidInput(
            f"directory {str(path)!r} holds no Parquet or CSV file", details={"field": "source"}
        )
    tables = [_no_views(_read_file(p)) for p in parts]
    try:
        table = pa.concat_tables(tables, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise InvalidInput(
            f"the files under {str(path)!r} do not share a schema: {exc}", details={"field": "source"}
        ) from None
    return Source(table, f"dir:{resolved} ({len(parts)} files)")
