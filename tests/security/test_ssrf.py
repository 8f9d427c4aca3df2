"""SSRF: every URL the server would fetch — monitor webhooks, and the model URIs of serving
endpoints — refuses internal addresses in all their spellings, non-http schemes, and
redirects; a listener on 127.0.0.1 proves no connection was made."""

from __future__ import annotations

import socket
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer

import httpx
import pytest

from loopml.monitoring.webhooks import deliver
from tests.security.conftest import Target

pytestmark = pytest.mark.server

PUBLIC = "http://93.184.216.34/hook"  # an IP literal: validated without DNS, never contacted here


class Listener:
    """A TCP listener on 127.0.0.1 counting the connections it accepts."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = int(self.sock.getsockname()[1])
        self.connections = 0
        self.running = True
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while self.running:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self.running = False
        self.thread.join(timeout=5)
        self.sock.close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    lst = Listener()
    yield lst
    lst.close()


def internal_urls(port: int) -> list[str]:
    return [
        f"http://127.0.0.1:{port}/hook",
        f"http://localhost:{port}/hook",
        f"http://LOCALHOST.:{port}/hook",
        f"http://127.1:{port}/hook",
        f"http://0x7f000001:{port}/hook",
        f"http://2130706433:{port}/hook",
        f"http://0177.0.0.1:{port}/hook",
        f"http://[::1]:{port}/hook",
        f"http://[::ffff:127.0.0.1]:{port}/hook",
        f"http://[0:0:0:0:0:ffff:7f00:1]:{port}/hook",
        f"http://[2002:7f00:1::1]:{port}/hook",
        f"http://0.0.0.0:{port}/hook",
        f"http://[::]:{port}/hook",
        f"http://0:{port}/hook",
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
        "http://[fd00:ec2::254]/latest/meta-data/",
        "http://100.100.100.200/latest/meta-data/",
        "http://[fe80::1]/hook",
        "http://10.0.0.1/hook",
        "http://172.16.0.1/hook",
        "http://192.168.1.1/hook",
        "http://100.64.0.1/hook",
        "http://198.18.0.1/hook",
        "http://224.0.0.1/hook",
        "http://255.255.255.255/hook",
        f"https://127.0.0.1:{port}/hook",
        f"http://user:pass@93.184.216.34@127.0.0.1:{port}/hook",
        f"http://93.184.216.34:80@127.0.0.1:{port}/hook",
        f"http://127.0.0.1:{port}#@93.184.216.34/hook",
        f"http://127.0.0.1:{port}\\@93.184.216.34/hook",
        "file:///etc/passwd",
        f"gopher://127.0.0.1:{port}/_INFO",
        f"dict://127.0.0.1:{port}/info",
        f"ftp://127.0.0.1:{port}/x",
        "ldap://127.0.0.1/x",
        "javascript:alert(1)",
        f"//127.0.0.1:{port}/hook",
        f"http:///127.0.0.1:{port}/hook",
        "http://no-such-host.invalid/hook",
        "http://" + "a" * 3000 + ".example/hook",
    ]


def test_webhook_urls_are_refused_on_create_and_update(
    target: Target, tripwire: Target, listener: Listener
) -> None:
    url = target.url
    name = f"ssrf-{uuid.uuid4().hex[:6]}"
    assert (
        httpx.post(
            f"{url}/api/v1/monitors", json={"name": name, "endpoint": "e", "webhooks": [PUBLIC]}
        ).status_code
        == 200
    )
    attacks = internal_urls(listener.port)
    for hook in attacks:
        other = f"ssrf-{uuid.uuid4().hex[:6]}"
        created = httpx.post(
            f"{url}/api/v1/monitors", json={"name": other, "endpoint": "e", "webhooks": [PUBLIC, hook]}
        )
        assert created.status_code == 400, f"{hook}: {created.status_code} {created.text[:200]}"
        assert created.json()["details"]["field"] == "webhooks"
        updated = httpx.put(
            f"{url}/api/v1/monitors/{name}", json={"name": name, "endpoint": "e", "webhooks": [hook]}
        )
        assert updated.status_code == 400, f"{hook}: {updated.status_code} {updated.text[:200]}"
    target.tried("SSRF URLs", 2 * len(attacks))
    monitors = httpx.get(f"{url}/api/v1/monitors").json()["monitors"]
    saved = {m["name"]: m["webhooks"] for m in monitors if m["name"].startswith("ssrf-")}
    assert saved == {name: [PUBLIC]}
    assert listener.connections == 0


class _Redirect(BaseHTTPRequestHandler):
    location = ""

    def do_POST(self) -> None:
        self.send_response(302)
        self.send_header("Location", self.location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_a_redirect_to_an_internal_address_is_not_followed(listener: Listener) -> None:
    """Delivery never follows a redirect: a permitted receiver cannot bounce the POST inward."""
    handler = type("Redirect", (_Redirect,), {"location": f"http://127.0.0.1:{listener.port}/internal"})
    server = HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        # allow_private only so the first hop (this test's loopback server) is reachable at all.
        record = deliver(
            f"http://127.0.0.1:{server.server_port}/hook", {"x": 1}, allow_private=True, attempts=1
        )
    finally:
        server.shutdown()
        server.server_close()
    assert record["ok"] is False and record["status"] == 302
    assert listener.connections == 0
    # And without allow_private the internal receiver is not even tried.
    record = deliver(f"http://127.0.0.1:{listener.port}/hook", {"x": 1}, attempts=1)
    assert record["ok"] is False and record["attempts"] == 0 and listener.connections == 0


def test_endpoint_model_uris_never_fetch_urls(target: Target, tripwire: Target, listener: Listener) -> None:
    """A serving endpoint's model URI is a loopml URI; a URL there is never fetched."""
    url = target.url
    attacks = [
        *[u for u in internal_urls(listener.port) if "://" in u][:20],
        f"file://{target.sentinel}/secret.txt",
    ]
    for i, uri in enumerate(attacks):
        name = f"ssrf-ep-{i}"
        policy = {"variants": [{"name": "primary", "model_uri": uri, "weight": 100, "role": "primary"}]}
        created = httpx.post(f"{url}/api/v1/endpoints", json={"name": name, "policy": policy})
        assert created.status_code < 500, created.text
        if created.status_code == 200:
            answer = httpx.post(f"{url}/endpoints/{name}/invocations", json={"instances": [[1.0]]})
            assert 400 <= answer.status_code < 500, f"{uri}: {answer.status_code} {answer.text[:200]}"
            assert "G2-SENTINEL" not in answer.text
            httpx.delete(f"{url}/api/v1/endpoints/{name}")
    target.tried("SSRF URLs", len(attacks))
    assert listener.connections == 0
