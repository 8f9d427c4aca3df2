"""A seeded live ``loopml server`` and a headless Debian Chromium driven by Playwright.

Every page a test opens is watched: a console error, an uncaught exception or a failed
request (network error or HTTP status >= 400 that the test did not expect) fails the test.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support.live_server import live_server
from tests.ui.seed import Seeded, seed

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")


@dataclass
class Site:
    url: str
    data: Seeded
    screenshots: Path


@dataclass
class Watch:
    """What went wrong on a page; ``allow`` lists URL fragments whose 4xx the test expects."""

    problems: list[str] = field(default_factory=list)
    allow: list[str] = field(default_factory=list)

    def attach(self, page: Any) -> None:
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.problems.append(f"page error: {exc}"))
        page.on("requestfailed", self._failed)
        page.on("response", self._response)

    def _console(self, msg: Any) -> None:
        if msg.type == "error" and not any(a in (msg.location or {}).get("url", "") for a in self.allow):
            self.problems.append(f"console error: {msg.text} at {msg.location}")

    def _failed(self, request: Any) -> None:
        failure = request.failure or ""
        if "ERR_ABORTED" in failure and request.resource_type == "document":
            return  # a navigation replaced by the next one (e.g. a download)
        self.problems.append(f"request failed: {request.method} {request.url}: {failure}")

    def _response(self, response: Any) -> None:
        if response.status >= 400 and not any(a in response.url for a in self.allow):
            self.problems.append(f"HTTP {response.status} for {response.request.method} {response.url}")


def _screenshot_dir() -> Path:
    """``test-output/ui/`` at the repository root, kept out of git by its own .gitignore."""
    out = Path(__file__).resolve().parents[2] / "test-output"
    (out / "ui").mkdir(parents=True, exist_ok=True)
    (out / ".gitignore").write_text("*\n")
    return out / "ui"


# Package scope, not session: Playwright's sync API keeps an event loop running on the main
# thread while it is open, which would break every later test that calls asyncio.run().
@pytest.fixture(scope="package")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    home = tmp_path_factory.mktemp("ui") / "home"
    home.mkdir()
    data = seed(home)
    env = {"LOOPML_USER": "bob", "LOOPML_MONITOR_SCHEDULER": "0"}
    shots = _screenshot_dir()
    with live_server(home, env=env) as url:
        yield Site(url, data, shots)


@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    """Debian's Chromium, headless, on a fresh temporary profile (Playwright's own download is
    not available, so it is launched by path)."""
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"no Chromium at {CHROMIUM}: install Debian's chromium (make sysdeps)")
    with sync_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


def new_context(browser: Any, **options: Any) -> Any:
    """A browser context (its own cookies) with the suite's viewport and timeouts."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True, **options)
    context.set_default_timeout(30_000)  # a loaded CI machine renders slowly
    return context


@pytest.fixture(scope="package")
def browser_context(browser: Any) -> Iterator[Any]:
    context = new_context(browser)
    try:
        yield context
    finally:
        context.close()


@pytest.fixture
def watched(browser_context: Any) -> Iterator[tuple[Any, Watch]]:
    """A fresh tab whose console errors and failed requests fail the test."""
    page = browser_context.new_page()
    watch = Watch()
    watch.attach(page)
    try:
        yield page, watch
    finally:
        page.close()
    assert not watch.problems, "\n".join(watch.problems)
