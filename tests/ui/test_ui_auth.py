"""The UI on ``loopml server --auth``: the browser signs in with HTTP Basic (user name and API
token), pages need the viewer role, approving needs the approver role, and the approval is
recorded under the signed-in user, not a name the browser claims."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.support.live_server import free_port, loopml_process
from tests.ui.conftest import Watch, new_context
from tests.ui.seed import Seeded, seed

pytestmark = [pytest.mark.ui, pytest.mark.server, pytest.mark.timeout(120)]


@dataclass
class AuthSite:
    url: str
    data: Seeded
    tokens: dict[str, str]


@pytest.fixture(scope="module")
def auth_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthSite]:
    home = tmp_path_factory.mktemp("ui-auth") / "home"
    home.mkdir()
    data = seed(home)
    port = free_port()
    args = ["server", "--host", "127.0.0.1", "--port", str(port), "--auth"]
    env = {"LOOPML_MONITOR_SCHEDULER": "0", "LOOPML_PIPELINE_SCHEDULER": "0"}
    with loopml_process(home, args, port=port, ready_path="/health", what="ui auth server", env=env) as url:
        log = (home.parent / f"ui-auth-server-{port}.log").read_text()
        boot = re.search(r"lm_[0-9a-f]{16}_[A-Za-z0-9_-]+", log)
        assert boot is not None, log
        root = httpx.post(f"{url}/api/v1/auth/bootstrap", json={"token": boot[0], "admin": "root"})
        assert root.status_code == 200, root.text
        tokens = {"root": root.json()["token"]}
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {tokens['root']}"}) as admin:
            for name, role in (("carol", "approver"), ("vic", "viewer")):
                assert admin.post("/api/v1/auth/users", json={"name": name, "role": role}).status_code == 200
                tokens[name] = admin.post(f"/api/v1/auth/users/{name}/tokens", json={}).json()["token"]
        yield AuthSite(url, data, tokens)


@pytest.fixture
def signed_in(
    browser: Any, auth_site: AuthSite, request: pytest.FixtureRequest
) -> Iterator[tuple[Any, Watch]]:
    user = request.param
    context = new_context(browser, http_credentials={"username": user, "password": auth_site.tokens[user]})
    page = context.new_page()
    watch = Watch()
    watch.attach(page)
    try:
        yield page, watch
    finally:
        context.close()
    assert not watch.problems, "\n".join(watch.problems)


def test_without_credentials_the_browser_is_asked_to_sign_in(auth_site: AuthSite) -> None:
    r = httpx.get(f"{auth_site.url}/ui/models")
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Basic")
    assert httpx.get(f"{auth_site.url}/ui/static/app.css").status_code == 200


@pytest.mark.parametrize("signed_in", ["vic"], indirect=True)
def test_a_viewer_sees_pages_but_cannot_approve(auth_site: AuthSite, signed_in: tuple[Any, Watch]) -> None:
    page, _ = signed_in
    page.goto(f"{auth_site.url}/ui/models")
    assert page.locator(f"#req-{auth_site.data.request_id}").count() == 1
    with httpx.Client(base_url=auth_site.url, auth=("vic", auth_site.tokens["vic"])) as client:
        client.get("/ui/models")
        token = client.cookies["loopml_csrf"]
        r = client.post(f"/ui/requests/{auth_site.data.request_id}/approve", data={"csrf_token": token})
        assert r.status_code == 403
        r = client.get("/ui/audit")
        assert r.status_code == 403  # the audit log is for admins


@pytest.mark.parametrize("signed_in", ["carol"], indirect=True)
def test_an_approver_approves_under_their_own_name(auth_site: AuthSite, signed_in: tuple[Any, Watch]) -> None:
    page, _ = signed_in
    page.set_extra_http_headers({"X-Loopml-User": "mallory"})  # ignored when auth is on
    page.on("dialog", lambda dialog: dialog.accept())
    page.goto(f"{auth_site.url}/ui/models")
    page.locator(f"#req-{auth_site.data.request_id} button.approve").click()
    page.wait_for_url(re.compile(r"\?decided="))
    row = page.locator(f"#req-{auth_site.data.request_id}").inner_text()
    assert "approved" in row and "carol" in row and "mallory" not in row
