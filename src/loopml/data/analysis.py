"""Content hash and profile of a table in one pass per column, columns in parallel.

Each worker decodes one column, profiles it and hashes it, then folds the hashes into the
row digest under a lock and drops the decoded copy, so at most a few decoded columns are
in memory at once.  numpy and pyarrow release the GIL in their kernels, so threads use
every core.

>>> import pyarrow as pa
>>> digest, profile = analyse(pa.table({"x": [1.0, 2.0]}))
>>> len(digest), profile.columns["x"].mean
(64, 1.5)
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa

from loopml.data.columns import Scratch, check_names, decode
from loopml.data.hashing import RowDigest, value_hashes
from loopml.data.profile import ColumnProfile, Profile, profile_column

_MAX_WORKERS = 4


def analyse(table: pa.Table, workers: int | None = None) -> tuple[str, Profile]:
    """The content digest (see :mod:`loopml.data.hashing`) and the profile of ``table``."""
    names = check_names(table.column_names)
    rows = RowDigest(table.num_rows)
    lock = threading.Lock()
    local = threading.local()

    def one(index: int) -> ColumnProfile:
        if not hasattr(local, "scratch"):
            local.scratch = Scratch(table.num_rows)
        col = decode(names[index], table.column(index), local.scratch)
        if col.kind == "numeric":
            profile = profile_column(col)  # before hashing: the hash may reuse the column's memory
            hashes = value_hashes(col, consume=True)
        else:
            hashes = value_hashes(col)
            profile = profile_column(col, hashes)
        with lock:
            rows.add(col, hashes)
        return profile

    count = workers or min(os.cpu_count() or 1, _MAX_WORKERS, len(names))
    # Largest columns first, so that no worker is left with a long one while the others idle.
    order = sorted(range(len(names)), key=lambda i: -table.column(i).nbytes)
    if count <= 1:
        profiles = [one(i) for i in order]
    else:
        with ThreadPoolExecutor(max_workers=count, thread_name_prefix="loopml-profile") as pool:
            profiles = list(pool.map(one, order))
    by_name = {p.name: p for p in profiles}
    return rows.hexdigest(), Profile(table.num_rows, {n: by_name[n] for n in names})
