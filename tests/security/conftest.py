"""The attack suite's live server, its tripwire, and the count of attack inputs tried.

One ``loopml server`` on 127.0.0.1 with small body limits (so oversize bodies are cheap to
send), no monitor scheduler, and its working directory inside the test's temp tree. Next to
its home sits a *sentinel* directory with a secret file: traversal inputs aim at it, and the
tripwire asserts that nothing outside the server's stores (home) changed.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.support.live_server import live_server

SECRET = "G2-SENTINEL-SECRET-7f3a"
MAX_REQUEST_BYTES = 1 << 20
MAX_UPLOAD_BYTES = 2 << 20
EXTRA_HOST = "loopml.internal.example"
COUNTS: Counter[str] = Counter()
COUNTS_FILE_ENV = "LOOPML_ATTACK_COUNTS_FILE"


@dataclass
class Target:
    """The server under attack and the places it must not write to."""

    url: str
    base: Path  # the temp tree: home, sentinel, cwd
    home: Path
    sentinel: Path
    run_id: str = ""
    experiment_id: str = ""
    counts: Counter[str] = field(default_factory=Counter)

    def outside(self) -> dict[str, str]:
        """Every file outside the server's home (and its log), with a digest of its bytes."""
        found = {}
        for path in sorted(self.base.rglob("*")):
            if self.home in path.parents or path == self.home or path.suffix == ".log" or not path.is_file():
                continue
            found[str(path.relative_to(self.base))] = hashlib.sha256(path.read_bytes()).hexdigest()
        return found

    def blobs(self) -> set[str]:
        """The content-addressed blobs in the artifact store."""
        root = self.home / "artifacts"
        return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()} if root.exists() else set()

    def tried(self, kind: str, n: int = 1) -> None:
        COUNTS[kind] += n


@pytest.fixture(scope="session")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    base = tmp_path_factory.mktemp("attack")
    home, sentinel, cwd = base / "srv" / "home", base / "sentinel", base / "srv" / "cwd"
    for d in (home, sentinel, cwd):
        d.mkdir(parents=True)
    (sentinel / "secret.txt").write_text(SECRET)
    env = {
        "LOOPML_MAX_REQUEST_BYTES": str(MAX_REQUEST_BYTES),
        "LOOPML_MAX_UPLOAD_BYTES": str(MAX_UPLOAD_BYTES),
        "LOOPML_MONITOR_SCHEDULER": "0",
        "LOOPML_ALLOWED_HOSTS": EXTRA_HOST,
    }
    with live_server(home, env=env, cwd=cwd) as url:
        t = Target(url, base, home, sentinel)
        exp = httpx.post(f"{url}/api/v1/experiments", json={"name": "attacked"}).json()
        t.experiment_id = exp["experiment_id"]
        t.run_id = httpx.post(f"{url}/api/v1/runs", json=exp).json()["info"]["run_id"]
        yield t


@pytest.fixture
def tripwire(target: Target) -> Iterator[Target]:
    """Asserts, after the test, that no file outside the server's home appeared or changed."""
    before = target.outside()
    yield target
    after = target.outside()
    assert after == before, f"written outside the stores: {sorted(set(after.items()) ^ set(before.items()))}"
    assert (target.sentinel / "secret.txt").read_text() == SECRET


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not COUNTS:
        return
    total = sum(COUNTS.values())
    detail = ", ".join(f"{k} {v}" for k, v in sorted(COUNTS.items()))
    terminalreporter.write_line(f"attack suite: {total} attack inputs tried ({detail})")
    out = os.environ.get(COUNTS_FILE_ENV)
    if out:
        Path(out).write_text(json.dumps({"total": total, **COUNTS}, indent=1))
