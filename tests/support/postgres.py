"""A throwaway, real PostgreSQL server for the test session.

``postgres_server()`` runs ``initdb`` into a fresh temporary directory, starts the server on a
free port on 127.0.0.1 only (unix sockets in that directory, durability switched off for speed),
creates the database ``loopml_test`` and yields a SQLAlchemy URL for it. On exit the server is
stopped with ``pg_ctl stop -m immediate`` and the directory is removed.

``initdb`` refuses to run as root: when the tests run as root, the server tools run as the
``postgres`` system user (created by Debian's ``postgresql`` package) through ``runuser``.

The binaries come from Debian's ``postgresql`` package (``make sysdeps`` installs it when root);
``find_pg_bin()`` returns ``None`` when they are missing. Intended session fixture (conftest)::

    @pytest.fixture(scope="session")
    def postgres_url():
        if find_pg_bin() is None:
            pytest.skip("PostgreSQL not installed: run `make sysdeps` as root")
        with postgres_server() as url:
            yield url

A server is left behind only if the test process is killed outright (SIGKILL).
"""

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.rows import TupleRow

__all__ = ["DB_NAME", "HOST", "SUPERUSER", "find_pg_bin", "postgres_server"]

DB_NAME = "loopml_test"
SUPERUSER = "postgres"
HOST = "127.0.0.1"
SERVICE_USER = "postgres"  # system user that runs the server when we are root

_DEBIAN_PG_ROOT = Path("/usr/lib/postgresql")
_TOOLS = ("initdb", "pg_ctl")
_SETTINGS = {
    "listen_addresses": f"'{HOST}'",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "100",
}
_PG_HBA = f"local all all trust\nhost all all {HOST}/32 trust\n"
_PORT_ATTEMPTS = 3
_STOP_TIMEOUT = 15
_LOG_TAIL_LINES = 40


# ---------------------------------------------------------------- finding the binaries


def _version_key(version_dir: Path) -> tuple[int, ...]:
    parts = version_dir.name.split(".")
    return tuple(int(p) for p in parts) if all(p.isdigit() for p in parts) else (-1,)


def _candidate_bin_dirs() -> Iterator[Path]:
    if _DEBIAN_PG_ROOT.is_dir():
        for version_dir in sorted(_DEBIAN_PG_ROOT.iterdir(), key=_version_key, reverse=True):
            yield version_dir / "bin"
    on_path = shutil.which("initdb")
    if on_path is not None:
        yield Path(on_path).resolve().parent


def _has_tools(bin_dir: Path) -> bool:
    return all(os.access(bin_dir / tool, os.X_OK) for tool in _TOOLS)


def find_pg_bin() -> Path | None:
    """The directory holding ``initdb`` and ``pg_ctl``: newest Debian version first, then PATH."""
    return next((d for d in _candidate_bin_dirs() if _has_tools(d)), None)


# ---------------------------------------------------------------- running the tools


@dataclass(frozen=True)
class _Tools:
    bin_dir: Path
    workdir: Path
    run_as: str | None  # None: run as the current user

    @property
    def data(self) -> Path:
        return self.workdir / "data"

    @property
    def log(self) -> Path:
        return self.workdir / "server.log"

    def run(self, tool: str, *args: str, timeout: float) -> tuple[int, str]:
        """Run one server tool; returns (exit code, combined output), -1 on time-out."""
        argv = [str(self.bin_dir / tool), *args]
        if self.run_as is not None:
            argv = ["runuser", "-u", self.run_as, "--", *argv]
        try:
            done = subprocess.run(
                argv,
                cwd=self.workdir,
                env=_tool_env(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return -1, f"{tool} timed out after {timeout:.0f} s"
        return done.returncode, done.stdout


def _tool_env() -> dict[str, str]:
    """Our environment without PG* variables, which could point the tools elsewhere."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PG")}


def _service_user() -> str | None:
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(SERVICE_USER)
    except KeyError:
        raise RuntimeError(
            f"running as root but there is no {SERVICE_USER!r} system user to run PostgreSQL "
            "(install Debian's postgresql package: `make sysdeps`)"
        ) from None
    if shutil.which("runuser") is None:
        raise RuntimeError("running as root but `runuser` (util-linux) is not on PATH")
    return SERVICE_USER


def _make_workdir(owner: str | None) -> Path:
    workdir = Path(tempfile.mkdtemp(prefix="loopml-pg-"))
    if owner is not None:
        entry = pwd.getpwnam(owner)
        os.chown(workdir, entry.pw_uid, entry.pw_gid)
    return workdir


def _log_tail(log: Path, offset: int = 0) -> str:
    try:
        with log.open("rb") as f:
            f.seek(offset)
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return "(no server log)"
    return "\n".join(text.splitlines()[-_LOG_TAIL_LINES:]) or "(server log empty)"


def _log_size(log: Path) -> int:
    try:
        return log.stat().st_size
    except OSError:
        return 0


# ---------------------------------------------------------------- the server's life


def _initdb(tools: _Tools) -> None:
    code, out = tools.run(
        "initdb",
        *("-D", str(tools.data), "-U", SUPERUSER, "-A", "trust", "-E", "UTF8"),
        *("--no-locale", "--no-sync"),
        timeout=120,
    )
    if code != 0:
        raise RuntimeError(f"initdb failed (exit {code}) in {tools.workdir}:\n{out}")


def _configure(tools: _Tools) -> None:
    settings = {**_SETTINGS, "unix_socket_directories": _quote(str(tools.workdir))}
    lines = "".join(f"{name} = {value}\n" for name, value in settings.items())
    with (tools.data / "postgresql.conf").open("a", encoding="utf-8") as conf:
        conf.write("\n# loopml test server\n" + lines)
    (tools.data / "pg_hba.conf").write_text(_PG_HBA, encoding="utf-8")


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


def _start(tools: _Tools, timeout: float) -> int:
    """Start the server on a free port (retrying if another process takes it first)."""
    for _ in range(_PORT_ATTEMPTS):
        port, offset = _free_port(), _log_size(tools.log)
        code, out = tools.run(
            "pg_ctl",
            *("start", "-w", "-t", str(max(1, round(timeout))), "-D", str(tools.data)),
            *("-l", str(tools.log), "-o", f"-p {port}"),
            timeout=timeout + 10,
        )
        if code == 0:
            return port
        tail = _log_tail(tools.log, offset)
        if "already in use" not in tail:
            break
    raise RuntimeError(
        f"PostgreSQL did not start (pg_ctl exit {code}): {out.strip()}\n--- tail of {tools.log} ---\n{tail}"
    )


def _connect_when_ready(tools: _Tools, port: int, timeout: float) -> psycopg.Connection[TupleRow]:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return psycopg.connect(
                host=HOST,
                port=port,
                user=SUPERUSER,
                dbname="postgres",
                connect_timeout=2,
                autocommit=True,
            )
        except psycopg.OperationalError as exc:
            if time.monotonic() >= deadline:
                raise RuntimeError(
                    f"PostgreSQL on {HOST}:{port} not accepting connections after "
                    f"{timeout:.0f} s: {exc}\n--- tail of {tools.log} ---\n{_log_tail(tools.log)}"
                ) from exc
            time.sleep(0.1)


def _create_database(tools: _Tools, port: int, dbname: str, timeout: float) -> None:
    with _connect_when_ready(tools, port, timeout) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))


def _stop(tools: _Tools) -> None:
    """Stop the server if it runs; kill the postmaster if pg_ctl cannot."""
    pid_file = tools.data / "postmaster.pid"
    if not pid_file.exists():
        return
    tools.run(
        "pg_ctl",
        *("stop", "-m", "immediate", "-w", "-t", str(_STOP_TIMEOUT), "-D", str(tools.data)),
        timeout=_STOP_TIMEOUT + 10,
    )
    if pid_file.exists():
        _kill_postmaster(pid_file)


def _kill_postmaster(pid_file: Path) -> None:
    with suppress(OSError, ValueError, IndexError):
        pid = int(pid_file.read_text(encoding="utf-8").splitlines()[0])
        os.kill(pid, signal.SIGKILL)


@contextmanager
def postgres_server(
    *, bin_dir: Path | None = None, dbname: str = DB_NAME, timeout: float = 30.0
) -> Iterator[str]:
    """Run a fresh PostgreSQL server; yield ``postgresql+psycopg://postgres@127.0.0.1:PORT/DB``.

    Raises RuntimeError (with the tail of the server log where there is one) if the binaries
    are missing or the server cannot start within ``timeout`` seconds.
    """
    bin_dir = bin_dir or find_pg_bin()
    if bin_dir is None:
        raise RuntimeError("PostgreSQL not installed (no initdb/pg_ctl): run `make sysdeps`")
    run_as = _service_user()
    tools = _Tools(bin_dir=bin_dir, workdir=_make_workdir(run_as), run_as=run_as)
    try:
        _initdb(tools)
        _configure(tools)
        port = _start(tools, timeout)
        _create_database(tools, port, dbname, timeout)
        yield f"postgresql+psycopg://{SUPERUSER}@{HOST}:{port}/{dbname}"
    finally:
        _stop(tools)
        shutil.rmtree(tools.workdir, ignore_errors=True)
