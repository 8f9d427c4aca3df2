"""``@step`` and ``@pipeline``: typed functions whose calls build a DAG of lazy outputs.

Inside a pipeline function a step call does not run the step: it records a node and returns
an :class:`Output` handle (one per output for a ``tuple[...]`` return annotation). Passing a
handle to another step is the data dependency the DAG is made of, so a cycle cannot be
written. Outside a pipeline a step is a plain function call (handy in unit tests).

>>> @step
... def double(x: int) -> int:
...     return 2 * x
>>> double(4)
8
"""

from __future__ import annotations

import functools
import inspect
import sys
import threading
import typing
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, ParamSpec, TypeVar, overload

from loopml.errors import InvalidInput

P = ParamSpec("P")
R = TypeVar("R")

_building = threading.local()


def where(fn: Callable[..., Any]) -> str:
    """``file:line`` of a function's definition, for error messages."""
    code = getattr(fn, "__code__", None)
    return f"{code.co_filename}:{code.co_firstlineno}" if code else repr(fn)


def _call_site(depth: int) -> str:
    frame = sys._getframe(depth + 1)
    return f"{frame.f_code.co_filename}:{frame.f_lineno}"


class Output:
    """The lazy result of a step call inside a pipeline; pass it to other steps."""

    __slots__ = ("graph", "index", "node")

    def __init__(self, graph: Graph, node: str, index: int | None) -> None:
        self.graph = graph
        self.node = node
        self.index = index

    def __repr__(self) -> str:
        suffix = "" if self.index is None else f"[{self.index}]"
        return f"<output of step {self.node!r}{suffix}>"

    def __bool__(self) -> bool:
        raise InvalidInput(
            f"{self!r} has no value while the pipeline is being built; branch on it inside a step, "
            "or on a pipeline parameter",
            details={"step": self.node},
        )

    def __iter__(self) -> Iterator[Output]:
        raise InvalidInput(
            f"{self!r} is one value; annotate the step's return as tuple[A, B] to unpack several "
            "outputs, or fan out with step.map(...)",
            details={"step": self.node},
        )


@dataclass
class Node:
    """One step call: its bound arguments (handles, lists of handles or literals)."""

    name: str
    step: Step[..., Any]
    args: dict[str, Any]
    site: str
    mapped: str | None = None  # the argument fanned out over, for step.map
    deps: list[str] = field(default_factory=list)


@dataclass
class Graph:
    """The DAG one pipeline call built: nodes in creation order (already topological)."""

    pipeline: str
    nodes: dict[str, Node] = field(default_factory=dict)
    result: Any = None

    def unique_name(self, base: str) -> str:
        if base not in self.nodes:
            return base
        n = 2
        while f"{base}_{n}" in self.nodes:
            n += 1
        return f"{base}_{n}"


def handles_in(value: Any) -> list[Output]:
    """The handles in an argument: itself, or the items of a list/tuple/dict."""
    if isinstance(value, Output):
        return [value]
    if isinstance(value, list | tuple):
        return [v for v in value if isinstance(v, Output)]
    if isinstance(value, dict):
        return [v for v in value.values() if isinstance(v, Output)]
    return []


class StepContext:
    """What a running step records on its own (nested) tracking run: metrics, params, tags.

    Declare a parameter annotated ``StepContext`` and the engine passes one (it is not an
    input: callers leave it out). Works the same on every executor; a cached step's run gets
    what the execution it reuses recorded.

    >>> @step
    ... def train(n: int, ctx: StepContext) -> int:
    ...     ctx.log_metric("auc", 0.91)
    ...     return n
    >>> train(3)
    3
    """

    def __init__(self, step: str, attempt: int = 1) -> None:
        self.step = step
        self.attempt = attempt
        self.metrics: dict[str, float] = {}
        self.params: dict[str, str] = {}
        self.tags: dict[str, str] = {}

    def log_metric(self, key: str, value: float) -> None:
        self.metrics[key] = float(value)

    def log_metrics(self, metrics: dict[str, float]) -> None:
        for key, value in metrics.items():
            self.log_metric(key, value)

    def log_param(self, key: str, value: object) -> None:
        self.params[key] = str(value)

    def set_tag(self, key: str, value: object) -> None:
        self.tags[key] = str(value)

    def to_dict(self) -> dict[str, Any]:
        return {"metrics": self.metrics, "params": self.params, "tags": self.tags}


def _context_param(fn: Callable[..., Any]) -> str | None:
    try:
        hints = typing.get_type_hints(fn)
    except Exception:
        hints = {}
    for name, param in inspect.signature(fn).parameters.items():
        ann = hints.get(name, param.annotation)
        if ann is StepContext or ann == "StepContext":
            return name
    return None


class Step(Generic[P, R]):
    """A pipeline step: a typed function plus how to run it (cache, retries).

    Subclassing is not needed; use the :func:`step` decorator.
    """

    def __init__(
        self,
        fn: Callable[P, R],
        *,
        name: str | None = None,
        cache: bool = True,
        retries: int = 0,
        backoff_s: float = 1.0,
        max_backoff_s: float = 60.0,
    ) -> None:
        if retries < 0 or backoff_s < 0:
            raise InvalidInput(f"step {fn.__name__!r}: retries and backoff_s must be >= 0")
        self.fn = fn
        self.name = name or fn.__name__
        self.cache = cache
        self.retries = retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.signature = inspect.signature(fn)
        self.n_outputs = _count_outputs(fn)
        self.context_param = _context_param(fn)
        params = [p for p in self.signature.parameters.values() if p.name != self.context_param]
        self.inputs_signature = self.signature.replace(parameters=params)
        functools.update_wrapper(self, fn)

    def __repr__(self) -> str:
        return f"<step {self.name!r} at {where(self.fn)}>"

    def hints(self) -> dict[str, Any]:
        try:
            return typing.get_type_hints(self.fn)
        except Exception:  # unresolvable forward references: no type checks then
            return {}

    @overload
    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R: ...
    @overload
    def __call__(self, *args: Any, **kwargs: Any) -> Any: ...
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        graph: Graph | None = getattr(_building, "graph", None)
        if graph is None:
            return self.fn(*args, **self._with_context(kwargs))
        return self._add(graph, args, kwargs, None, _call_site(1))

    def _with_context(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        if self.context_param is None or self.context_param in kwargs:
            return kwargs
        return {**kwargs, self.context_param: StepContext(self.name)}

    def map(self, items: Any, /, **kwargs: Any) -> Any:
        """Run the step once per item of ``items`` (a list, or another step's list output),
        passed as its first parameter not in ``kwargs``; the result is the list of outputs."""
        graph: Graph | None = getattr(_building, "graph", None)
        site = _call_site(1)
        free = [p for p in self.inputs_signature.parameters if p not in kwargs]
        if not free:
            raise InvalidInput(f"{self.name}.map at {site}: every parameter is already given")
        if graph is None:
            fn: Callable[..., Any] = self.fn
            return [fn(**self._with_context({free[0]: item, **kwargs})) for item in items]
        if not isinstance(items, Output | list | tuple):
            raise InvalidInput(
                f"{self.name}.map at {site}: map over a list or a step's output, "
                f"not a {type(items).__name__}",
                details={"step": self.name, "where": site},
            )
        return self._add(graph, (), {**kwargs, free[0]: items}, free[0], site)

    def _add(
        self, graph: Graph, args: Sequence[Any], kwargs: dict[str, Any], mapped: str | None, site: str
    ) -> Any:
        try:
            bound = self.inputs_signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise InvalidInput(
                f"step {self.name!r} called at {site}: {exc}", details={"step": self.name, "where": site}
            ) from None
        bound.apply_defaults()
        node = Node(graph.unique_name(self.name), self, dict(bound.arguments), site, mapped)
        for arg, value in node.args.items():
            for h in handles_in(value):
                if h.graph is not graph or h.node not in graph.nodes:
                    raise InvalidInput(
                        f"step {self.name!r} called at {site}: argument {arg!r} is an output of "
                        "another pipeline; pass it as a parameter instead",
                        details={"step": self.name, "where": site},
                    )
                if h.node not in node.deps:
                    node.deps.append(h.node)
        _check_types(self, node)
        graph.nodes[node.name] = node
        if self.n_outputs > 1 and mapped is None:
            return tuple(Output(graph, node.name, i) for i in range(self.n_outputs))
        return Output(graph, node.name, None)


def _count_outputs(fn: Callable[..., Any]) -> int:
    try:
        ret = typing.get_type_hints(fn).get("return")
    except Exception:
        return 1
    if typing.get_origin(ret) is tuple:
        items = typing.get_args(ret)
        if items and items[-1] is not Ellipsis:
            return len(items)
    return 1


def _check_types(step: Step[..., Any], node: Node) -> None:
    hints = step.hints()
    for arg, value in node.args.items():
        want = hints.get(arg)
        if not isinstance(want, type) or want is object or arg == node.mapped:
            continue
        if isinstance(value, Output):
            got = node_output_type(value.graph.nodes[value.node], value.index)
            if isinstance(got, type) and not _compatible(got, want):
                raise InvalidInput(
                    f"step {step.name!r} called at {node.site}: argument {arg!r} wants {want.__name__} "
                    f"but step {value.node!r} returns {got.__name__}",
                    details={"step": step.name, "where": node.site, "argument": arg},
                )
        elif not handles_in(value) and value is not None and not _compatible(type(value), want):
            raise InvalidInput(
                f"step {step.name!r} called at {node.site}: argument {arg!r} wants {want.__name__}, "
                f"got {type(value).__name__} {value!r:.60}",
                details={"step": step.name, "where": node.site, "argument": arg},
            )


def node_output_type(node: Node, index: int | None) -> Any:
    """The annotated type of a node's output (``list`` for a map node)."""
    if node.mapped is not None:
        return list
    ret = node.step.hints().get("return")
    if index is not None:
        items = typing.get_args(ret)
        return items[index] if index < len(items) else None
    return typing.get_origin(ret) or ret


def _compatible(got: type, want: type) -> bool:
    if issubclass(got, want):
        return True
    return want is float and got is int and got is not bool


@dataclass(frozen=True)
class Param:
    """One pipeline parameter: name, annotation and default (``inspect.Parameter.empty`` if none)."""

    name: str
    annotation: Any
    default: Any


class Pipeline:
    """A pipeline: a function whose step calls define the DAG, and its typed parameters.

    ``pipe.run({"alpha": "0.5"})`` (or ``pipe(alpha=0.5)``) coerces and validates the
    parameters, builds the graph, and runs it (see :mod:`loopml.pipelines.engine`).
    """

    def __init__(self, fn: Callable[..., Any], *, name: str | None = None, cache: bool = True) -> None:
        self.fn = fn
        self.name = name or fn.__name__
        self.cache = cache
        self.target = _target(fn)  # how to load it again: module:qualname or /path/file.py:qualname
        functools.update_wrapper(self, fn)

    def __repr__(self) -> str:
        return f"<pipeline {self.name!r} at {where(self.fn)}>"

    def params(self) -> list[Param]:
        try:
            hints = typing.get_type_hints(self.fn)
        except Exception:
            hints = {}
        return [
            Param(p.name, hints.get(p.name, p.annotation), p.default)
            for p in inspect.signature(self.fn).parameters.values()
        ]

    def build(self, params: dict[str, Any]) -> Graph:
        """Call the pipeline function with (already coerced) ``params``, recording its DAG."""
        graph = Graph(self.name)
        previous = getattr(_building, "graph", None)
        _building.graph = graph
        try:
            graph.result = self.fn(**params)
        finally:
            _building.graph = previous
        if not graph.nodes:
            raise InvalidInput(f"pipeline {self.name!r} at {where(self.fn)} calls no step")
        return graph

    def run(self, params: dict[str, Any] | None = None, /, **options: Any) -> Any:
        """Run the pipeline; ``options`` are those of :func:`loopml.pipelines.engine.run_pipeline`."""
        from loopml.pipelines.engine import run_pipeline

        return run_pipeline(self, params or {}, **options)

    def __call__(self, **params: Any) -> Any:
        return self.run(params)


def _target(fn: Callable[..., Any]) -> str:
    module = getattr(fn, "__module__", None)
    if not module or "<locals>" in fn.__qualname__:
        return ""
    if module != "__main__":
        return f"{module}:{fn.__qualname__}"
    main_file = getattr(sys.modules.get("__main__"), "__file__", None)  # `python flow.py`
    return f"{Path(main_file).resolve()}:{fn.__qualname__}" if main_file else ""


@overload
def step(fn: Callable[P, R], /) -> Step[P, R]: ...
@overload
def step(
    *,
    name: str | None = None,
    cache: bool = True,
    retries: int = 0,
    backoff_s: float = 1.0,
    max_backoff_s: float = 60.0,
) -> Callable[[Callable[P, R]], Step[P, R]]: ...
def step(fn: Callable[..., Any] | None = None, /, **options: Any) -> Any:
    """Make a function a pipeline step: ``@step`` or ``@step(cache=False, retries=3)``.

    ``retries`` re-runs a failing step after ``backoff_s``, doubling up to ``max_backoff_s``.
    """
    if fn is not None:
        return Step(fn)
    return lambda f: Step(f, **options)


@overload
def pipeline(fn: Callable[..., Any], /) -> Pipeline: ...
@overload
def pipeline(*, name: str | None = None, cache: bool = True) -> Callable[[Callable[..., Any]], Pipeline]: ...
def pipeline(fn: Callable[..., Any] | None = None, /, **options: Any) -> Any:
    """Make a function a pipeline: ``@pipeline`` or ``@pipeline(name="churn-ct", cache=False)``."""
    if fn is not None:
        return Pipeline(fn)
    return lambda f: Pipeline(f, **options)
