"""The code part of a step's cache key: its source plus the project code it calls.

Starting from the step function, every global name its code (and nested code) uses is
looked up in its module; functions and classes defined in *project* modules (not the
standard library, not installed packages, not loopml) are hashed too, transitively, as are
simple constants (numbers, strings, tuples of them). Editing a helper two calls away
therefore changes the key, which a cache keyed on the step's own source misses.

>>> def helper(x): return x + 1
>>> def f(x): return helper(x)
>>> len(code_digest(f))
64
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import sys
import sysconfig
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

_CONSTANTS = (int, float, str, bytes, bool, type(None))


@functools.lru_cache(maxsize=1)
def _library_roots() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    roots = {paths[k] for k in ("stdlib", "platstdlib", "purelib", "platlib") if k in paths}
    roots.add(str(Path(__file__).resolve().parents[1]))  # loopml itself is not user code
    roots.update({sys.prefix, sys.base_prefix, sys.exec_prefix})
    return tuple(sorted(str(Path(r).resolve()) for r in roots))


@functools.lru_cache(maxsize=4096)
def _is_project_file(filename: str) -> bool:
    if not filename or filename.startswith("<"):
        return filename.startswith("<ipython") or filename == "<stdin>"
    resolved = str(Path(filename).resolve())
    return "site-packages" not in resolved and not resolved.startswith(_library_roots())


def is_project_module(module: types.ModuleType | None) -> bool:
    """Whether ``module`` is the user's code (its file is outside the interpreter's libraries)."""
    if module is None:
        return False
    filename = getattr(module, "__file__", None)
    if filename is None:
        return module.__name__ == "__main__"
    return _is_project_file(filename)


def _is_project_object(obj: Any) -> bool:
    code = getattr(obj, "__code__", None)
    if code is not None:
        return _is_project_file(code.co_filename)
    if isinstance(obj, type):
        return is_project_module(sys.modules.get(obj.__module__))
    return False


def _source(obj: Any) -> str:
    try:
        return inspect.getsource(obj)
    except (OSError, TypeError):
        code = getattr(obj, "__code__", None)
        return repr(code.co_code) + repr(code.co_consts) if code is not None else repr(obj)


def _names(code: types.CodeType) -> list[str]:
    names = list(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names += _names(const)
    return names


class _Hasher:
    def __init__(self) -> None:
        self.seen: set[int] = set()
        self.hasher = hashlib.sha256()

    def visit(self, obj: Any) -> None:
        obj = getattr(obj, "fn", obj) if _is_step_like(obj) else obj
        if id(obj) in self.seen:
            return
        self.seen.add(id(obj))
        self.hasher.update(f"{getattr(obj, '__qualname__', '')}\0{_source(obj)}\0".encode())
        if isinstance(obj, type):
            for member in vars(obj).values():
                if inspect.isfunction(member) and _is_project_object(member):
                    self.visit(member)
            return
        code: types.CodeType | None = getattr(obj, "__code__", None)
        if code is None:
            return
        scope: dict[str, Any] = dict(getattr(obj, "__globals__", {}))
        for name, cell in zip(code.co_freevars, getattr(obj, "__closure__", None) or (), strict=False):
            try:
                scope[name] = cell.cell_contents
            except ValueError:  # an empty cell (a name assigned later)
                continue
            self._reference(name, scope[name], [])
        names = _names(code)
        for name in names:
            if name in scope and name not in code.co_freevars:
                self._reference(name, scope[name], names)

    def _reference(self, name: str, value: Any, names: list[str]) -> None:
        if isinstance(value, _CONSTANTS) or (
            isinstance(value, tuple | frozenset) and all(isinstance(v, _CONSTANTS) for v in value)
        ):
            self.hasher.update(f"{name}={value!r}\0".encode())
        elif isinstance(value, types.ModuleType):
            if is_project_module(value):  # helpers.normalize: hash the attributes used
                for attr in names:
                    member = getattr(value, attr, None)
                    if member is not None and (_is_project_object(member) or _is_step_like(member)):
                        self.visit(member)
        elif _is_step_like(value) or _is_project_object(value):
            self.visit(value)


def _is_step_like(obj: Any) -> bool:
    return hasattr(obj, "fn") and hasattr(obj, "signature") and callable(getattr(obj, "fn", None))


def code_digest(fn: Callable[..., Any]) -> str:
    """sha256 over the source of ``fn`` and of the project functions, classes and constants it
    reaches through its globals and closure."""
    hasher = _Hasher()
    hasher.visit(fn)
    return hasher.hasher.hexdigest()
