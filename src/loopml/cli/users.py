"""``loopml users``: the first admin, users, API tokens and roles.

    $ loopml users bootstrap --token lm_... --admin ana      # once, with the token the server printed
    $ loopml users create bo --role viewer
    $ loopml users token bo --name ci --expires-in 86400      # the secret is printed once
    $ loopml users grant bo editor --experiment 3
    $ loopml users grant bo approver --model churn

Against a server (``LOOPML_TRACKING_URI=http://...``) these call its API with ``LOOPML_TOKEN``;
otherwise they work on the local store directly.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated

import typer

from loopml.cli._common import JsonOption
from loopml.errors import InvalidInput

if TYPE_CHECKING:
    from loopml.governance.service import GovernanceService

app = typer.Typer(
    help="Users, API tokens and roles (authentication and authorization).", no_args_is_help=True
)

ExperimentOpt = Annotated[str | None, typer.Option("--experiment", help="Experiment id (else project-wide).")]
ModelOpt = Annotated[str | None, typer.Option("--model", help="Registered model name (else project-wide).")]


@contextmanager
def governance() -> Iterator[GovernanceService]:
    """The governance service the environment configures (local store or server), closed after."""
    from loopml.config import Settings

    settings = Settings.load()
    svc: GovernanceService
    if settings.is_remote:
        from loopml.client.http_governance import HttpGovernanceService

        svc = HttpGovernanceService(
            str(settings.tracking_uri), token=settings.token, retries=settings.http_retries,
            timeout=settings.http_timeout,
        )  # fmt: skip
    else:
        from loopml.governance.service import LocalGovernanceService
        from loopml.store.db import Database

        svc = LocalGovernanceService(Database(settings.database_url), settings.user)
    try:
        yield svc
    finally:
        svc.close()


def _resource(experiment: str | None, model: str | None) -> tuple[str, str]:
    if experiment and model:
        raise InvalidInput("give --experiment or --model, not both")
    if experiment:
        return "experiment", experiment
    if model:
        return "model", model
    return "project", ""


def _print_token(found: dict[str, object], as_json: bool) -> None:
    from loopml.cli import render

    if as_json:
        render.print_json(found)
        return
    typer.echo(f"token for {found['user']} (id {found['token_id']}); it is shown only now:", err=True)
    typer.echo(str(found["token"]))


@app.command()
def bootstrap(
    token: Annotated[str, typer.Option("--token", help="The bootstrap token the server printed.")],
    admin: Annotated[str, typer.Option("--admin", help="The first admin's user name.")],
    password: Annotated[str | None, typer.Option(help="Optional password (12+ characters).")] = None,
    as_json: JsonOption = False,
) -> None:
    """Create the first admin with the one-time bootstrap token; prints the admin's API token."""
    with governance() as svc:
        _print_token(svc.bootstrap(token, admin, password), as_json)


@app.command()
def create(
    name: Annotated[str, typer.Argument(help="User name.")],
    role: Annotated[
        str | None, typer.Option(help="Project-wide role: viewer, editor, approver, admin.")
    ] = None,
    password: Annotated[str | None, typer.Option(help="Optional password (12+ characters).")] = None,
    as_json: JsonOption = False,
) -> None:
    """Create a user (admins only)."""
    from loopml.cli import render

    with governance() as svc:
        found = svc.create_user(name, password, role)
    if as_json:
        render.print_json(found)
    else:
        typer.echo(f"created user {name}" + (f" with project role {role}" if role else ""))


@app.command("list")
def list_users(as_json: JsonOption = False) -> None:
    """List users and their roles."""
    from loopml.cli import render

    with governance() as svc:
        users, bindings = svc.list_users(), svc.list_roles(None)
    if as_json:
        render.print_json({"users": users, "roles": bindings})
        return
    table = render._table("User", "Roles", "Disabled", "Password", "Created")
    for u in users:
        mine = [
            b["role"]
            + ("" if b["resource_type"] == "project" else f" on {b['resource_type']} {b['resource_name']}")
            for b in bindings
            if b["user"] == u["name"]
        ]
        flags = ("yes" if u["disabled"] else "", "yes" if u["has_password"] else "")
        table.add_row(u["name"], ", ".join(mine) or "-", *flags, render.fmt_time(u["created_at"]))
    render.print_table(table)


@app.command()
def disable(name: Annotated[str, typer.Argument(help="User name.")]) -> None:
    """Disable a user: their tokens and password stop working at once."""
    with governance() as svc:
        svc.update_user(name, True, None)
    typer.echo(f"disabled {name}")


@app.command()
def enable(name: Annotated[str, typer.Argument(help="User name.")]) -> None:
    """Re-enable a disabled user."""
    with governance() as svc:
        svc.update_user(name, False, None)
    typer.echo(f"enabled {name}")


@app.command()
def token(
    user: Annotated[str | None, typer.Argument(help="For this user (admins); default: yourself.")] = None,
    name: Annotated[str, typer.Option(help="A label, e.g. 'ci'.")] = "",
    expires_in: Annotated[int | None, typer.Option(min=1, help="Seconds until it expires.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Issue an API token (printed once; use it as LOOPML_TOKEN or MLFLOW_TRACKING_TOKEN)."""
    with governance() as svc:
        _print_token(svc.create_token(user, name, expires_in), as_json)


@app.command()
def tokens(
    user: Annotated[str | None, typer.Argument(help="Whose tokens (default: yours / all locally).")] = None,
    as_json: JsonOption = False,
) -> None:
    """List tokens (never their secrets) with expiry, revocation and last use."""
    from loopml.cli import render

    with governance() as svc:
        found = svc.list_tokens(user)
    if as_json:
        render.print_json(found)
        return
    table = render._table("Id", "User", "Kind", "Name", "Created", "Expires", "Revoked", "Last used")
    for t in found:
        times = [render.fmt_time(t[k]) for k in ("created_at", "expires_at", "revoked_at", "last_used_at")]
        table.add_row(t["token_id"], t["user"], t["kind"], t["name"], *times)
    render.print_table(table)


@app.command()
def revoke_token(
    token_id: Annotated[str, typer.Argument(help="The token's id (see `loopml users tokens`).")],
) -> None:
    """Revoke a token: it stops working at once."""
    with governance() as svc:
        svc.revoke_token(token_id)
    typer.echo(f"revoked token {token_id}")


@app.command()
def grant(
    user: Annotated[str, typer.Argument(help="User name, or '*' for every signed-in user.")],
    role: Annotated[str, typer.Argument(help="viewer, editor, approver or admin.")],
    experiment: ExperimentOpt = None,
    model: ModelOpt = None,
) -> None:
    """Give a user a role, project-wide or on one experiment / registered model."""
    rtype, rname = _resource(experiment, model)
    with governance() as svc:
        svc.grant(user, role, rtype, rname)
    typer.echo(f"{user} is {role} on " + ("the project" if rtype == "project" else f"{rtype} {rname}"))


@app.command()
def revoke(
    user: Annotated[str, typer.Argument(help="User name.")],
    experiment: ExperimentOpt = None,
    model: ModelOpt = None,
) -> None:
    """Remove a user's role binding (project-wide, or on one experiment / model)."""
    rtype, rname = _resource(experiment, model)
    with governance() as svc:
        svc.revoke_role(user, rtype, rname)
    typer.echo(f"removed {user}'s role on " + ("the project" if rtype == "project" else f"{rtype} {rname}"))
