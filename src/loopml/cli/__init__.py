"""The ``loopml`` command line: a thin adapter over the capability services.

    $ loopml experiments list
    $ loopml runs search "metrics.roc_auc > 0.99" --order-by "metrics.roc_auc DESC" --json
    $ loopml server --port 5000

Importing this package loads only typer and loopml's settings and errors; the
stores, the SDK and the server stack are imported inside the command that needs
them, so ``loopml --help`` starts fast (``tests/unit/cli/test_import_light.py``).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer
from typer.core import TyperArgument, TyperGroup

from loopml import __version__
from loopml.cli import audit as audit_cli
from loopml.cli import data, experiments, runs
from loopml.cli import demo as demo_cli
from loopml.cli import endpoints as endpoints_cli
from loopml.cli import features as features_cli
from loopml.cli import models as models_cli
from loopml.cli import monitor as monitor_cli
from loopml.cli import pipeline as pipeline_cli
from loopml.cli import predict as predict_cli
from loopml.cli import serve as serve_cli
from loopml.cli import stream as stream_cli
from loopml.cli import users as users_cli
from loopml.errors import LoopmlError

# Commands that run until stopped (their requests and background work are audited by the
# server's own per-request context) or audit themselves (``users``, ``audit``).
_WORDS = "loopml.command_line"
_NOT_AUDITED_HERE = frozenset({"server", "serve", "scheduler", "stream", "demo", "users", "audit"})


class LoopmlGroup(TyperGroup):
    """The root command: a :class:`LoopmlError` becomes one ``error: ...`` line and its exit code.

    A command that changes the local store (embedded mode) is audited like a request to the
    server: each write transaction appends an entry, as the local user, from ``cli``, with the
    command (``cli models transition``) and its positional arguments as the target."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        # The root has no option taking a value: the command line is what follows its flags.
        ctx.meta[_WORDS] = list(itertools.dropwhile(lambda word: word.startswith("-"), args))
        return super().parse_args(ctx, args)

    def invoke(self, ctx: Any) -> Any:
        try:
            with _audited(self, ctx):
                return super().invoke(ctx)
        except LoopmlError as exc:
            typer.echo(f"error: {exc.message}", err=True)
            raise typer.Exit(exc.exit_code or 1) from None


@contextmanager
def _audited(group: TyperGroup, ctx: Any) -> Iterator[None]:
    words = list(ctx.meta.get(_WORDS, []))
    if not words or words[0] in _NOT_AUDITED_HERE:
        yield
        return
    action, target = _command_line(group, ctx, words)
    if not action:
        yield
        return
    import uuid

    from loopml.config import Settings
    from loopml.governance import audit  # here, not at import: `loopml --help` stays light

    audit.install()
    who = Settings.load().user
    token = audit.bind(
        audit.AuditContext(
            actor=who, action=f"cli {action}", target=target, request_id=uuid.uuid4().hex, client="cli"
        )
    )
    try:
        yield
    finally:
        audit.unbind(token)


def _command_line(group: TyperGroup, ctx: Any, words: list[str]) -> tuple[str, str]:
    """(``models transition``, ``churn 2 Production``): the command path and its positional
    arguments (never its options, which may carry passwords)."""
    path: list[str] = []
    command: Any = group
    try:
        while isinstance(command, TyperGroup) and words:
            name, command, words = command.resolve_command(ctx, words)
            if command is None or name is None:
                return "", ""
            path.append(name)
        if not path or isinstance(command, TyperGroup):
            return " ".join(path), ""
        with command.make_context(path[-1], list(words), parent=ctx, resilient_parsing=True) as leaf:
            values = [leaf.params.get(p.name) for p in command.params if isinstance(p, TyperArgument)]
    except Exception:  # a label only: the command itself reports bad arguments when it parses them
        return " ".join(path), ""
    shown = [str(v) for v in values if v is not None and v != ()]
    return " ".join(path), " ".join(shown)[:1000]


app = typer.Typer(
    name="loopml",
    cls=LoopmlGroup,
    help="loopml: experiment tracking, registry and serving for the whole ML loop.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(experiments.app, name="experiments")
app.add_typer(runs.app, name="runs")
app.add_typer(data.app, name="data")
app.add_typer(models_cli.app, name="models")
app.add_typer(endpoints_cli.app, name="endpoints")
app.add_typer(monitor_cli.app, name="monitor")
app.add_typer(features_cli.app, name="features")
app.add_typer(pipeline_cli.app, name="pipeline")
app.add_typer(users_cli.app, name="users")
app.add_typer(audit_cli.app, name="audit")
app.command("serve")(serve_cli.serve)
app.command("demo")(demo_cli.demo)
app.command("predict")(predict_cli.predict)
app.command("stream")(stream_cli.stream)
app.command("scheduler")(pipeline_cli.scheduler)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"loopml {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit."),
    ] = False,
) -> None:
    """loopml: experiment tracking, registry and serving for the whole ML loop."""


@app.command()
def server(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 5000,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 1,
    auth: Annotated[
        bool, typer.Option("--auth", help="Require API tokens (always on when HOST is not loopback).")
    ] = False,
) -> None:
    """Start the tracking server (native API and MLflow REST API) on the configured store."""
    import os

    from loopml.server.main import serve

    if auth:  # the worker processes read their settings from the environment
        os.environ["LOOPML_AUTH"] = "1"
    typer.echo(f"loopml server on http://{host}:{port} (Ctrl+C to stop)", err=True)
    serve(host, port, workers)


def main() -> None:
    """The ``loopml`` console script."""
    app()
