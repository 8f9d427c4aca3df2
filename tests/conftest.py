"""Session fixtures: a real PostgreSQL, a live loopml server, and services over each backend."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from loopml.client.http import HttpTrackingService
from loopml.config import Settings
from loopml.tracking.local import LocalTrackingService
from loopml.tracking.service import TrackingService
from tests.support.live_server import live_server
from tests.support.postgres import find_pg_bin, postgres_server
from tests.support.redis import find_redis_server, redis_server

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "ray: runs on the session's one local Ray instance (fixture ray_local)"
    )


@pytest.fixture(scope="session")
def ray_local() -> Iterator[object]:
    """One local Ray instance for the whole session: 2 CPUs, no dashboard, BLAS pinned in workers."""
    ray = pytest.importorskip("ray")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    pinned = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": pinned})
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    if find_pg_bin() is None:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL is not installed in CI: `make sysdeps` should have installed it")
        pytest.skip("PostgreSQL not installed: run `make sysdeps` as root")
    with postgres_server() as url:
        yield url


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A real redis-server on 127.0.0.1 for the session: ``redis://127.0.0.1:PORT``."""
    if find_redis_server() is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is not installed in CI: `make sysdeps` should have installed it")
        pytest.skip("redis-server not installed: run `make sysdeps` as root")
    with redis_server() as url:
        yield url


@pytest.fixture(scope="session")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One live server on SQLite for the session (tests use their own experiments)."""
    home = tmp_path_factory.mktemp("server") / "home"
    home.mkdir()
    with live_server(home) as url:
        yield url


def _local(home: Path, database_url: str | None = None) -> LocalTrackingService:
    env = {"LOOPML_HOME": str(home)}
    if database_url:
        env["LOOPML_DATABASE_URL"] = database_url
    return LocalTrackingService.from_settings(Settings.load(env=env))


@pytest.fixture(params=["sqlite", "postgres", "http"])
def service(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TrackingService]:
    """The tracking contract's implementations: SQLite, PostgreSQL, and HTTP to a live server."""
    if request.param == "sqlite":
        svc: TrackingService = _local(tmp_path)
    elif request.param == "postgres":
        svc = _local(tmp_path, request.getfixturevalue("postgres_url"))
    else:
        svc = HttpTrackingService(request.getfixturevalue("server_url"), retries=2)
    yield svc
    svc.close()
