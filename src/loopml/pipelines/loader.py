"""Finding pipelines by reference: ``path/to/file.py:name``, ``package.module:name`` or a
registered name (``loopml pipeline register``), so the CLI, resume and the scheduler can
load the code again.

>>> load_target("examples/churn.py:training")  # doctest: +SKIP
<pipeline 'training' at examples/churn.py:12>
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from loopml.errors import InvalidInput, NotFound
from loopml.pipelines.dsl import Pipeline
from loopml.pipelines.store import PipelineStore


def _load_file(path: Path) -> ModuleType:
    resolved = path.resolve()
    if not resolved.is_file():
        raise NotFound(f"pipeline file {str(path)!r} does not exist", details={"path": str(path)})
    # A stable module name per file, so functions pickle by value under the same name each time.
    name = f"loopml_user_{resolved.stem}_{hashlib.sha256(str(resolved).encode()).hexdigest()[:10]}"
    spec = importlib.util.spec_from_file_location(name, resolved)
    if spec is None or spec.loader is None:
        raise InvalidInput(f"cannot import {str(path)!r} as Python", details={"path": str(path)})
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def load_target(target: str) -> Pipeline:
    """The :class:`Pipeline` at ``FILE.py:ATTR`` or ``MODULE:ATTR`` (ATTR may be omitted when the
    file or module defines exactly one pipeline)."""
    where, _, attr = target.rpartition(":") if ":" in target else (target, "", "")
    if where.endswith(".py") or Path(where).suffix == ".py":
        module = _load_file(Path(where))
        reference = f"{Path(where).resolve()}:"
    else:
        try:
            module = importlib.import_module(where)
        except ImportError as exc:
            raise NotFound(f"cannot import module {where!r} for pipeline {target!r}: {exc}") from None
        reference = f"{where}:"
    found = {k: v for k, v in vars(module).items() if isinstance(v, Pipeline)}
    if not attr:
        if len(found) != 1:
            names = ", ".join(sorted(found)) or "none"
            raise InvalidInput(
                f"{where!r} defines {len(found)} pipelines ({names}); name one as {where}:NAME",
                details={"target": target},
            )
        attr = next(iter(found))
    pipe = getattr(module, attr, None)
    if not isinstance(pipe, Pipeline):
        raise NotFound(
            f"{where!r} has no pipeline {attr!r}; pipelines there: {', '.join(sorted(found)) or 'none'}",
            details={"target": target},
        )
    pipe.target = reference + attr
    return pipe


def resolve(name_or_target: str, store: PipelineStore | None) -> Pipeline:
    """A registered pipeline's name, else a ``FILE.py:ATTR`` / ``MODULE:ATTR`` reference."""
    if store is not None and ":" not in name_or_target and not name_or_target.endswith(".py"):
        definition = store.get_definition(name_or_target)
        pipe = load_target(definition.target)
        if pipe.name != definition.name:
            pipe.name = definition.name
        return pipe
    return load_target(name_or_target)
