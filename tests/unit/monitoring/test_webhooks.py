"""Webhook URLs are checked against SSRF; deliveries are retried until the receiver answers."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest

from loopml.errors import InvalidInput
from loopml.monitoring import webhooks


class Receiver:
    """A local HTTP receiver that answers 503 to the first ``fail`` POSTs, then 200."""

    def __init__(self, fail: int) -> None:
        self.fail = fail
        self.bodies: list[dict[str, Any]] = []
        self.attempts = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.attempts += 1
                ok = receiver.attempts > receiver.fail
                if ok:
                    receiver.bodies.append(json.loads(body))
                self.send_response(200 if ok else 503)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(fail=2)
    yield r
    r.close()


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/hook",
        "http://localhost:8080/hook",
        "http://10.1.2.3/hook",
        "http://192.168.0.10/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/hook",
        "http://0.0.0.0/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://127.1/hook",
    ],
)
def test_private_and_loopback_targets_are_refused(url: str) -> None:
    with pytest.raises(InvalidInput) as err:
        webhooks.validate_url(url)
    assert err.value.details["field"] == "webhooks"
    assert "allow_private_webhooks" in err.value.message


def test_a_hostname_resolving_to_loopback_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(webhooks, "resolve", lambda host, port: ["127.0.0.1"])
    with pytest.raises(InvalidInput, match="loopback"):
        webhooks.validate_url("https://hooks.attacker.example/x")


@pytest.mark.parametrize(
    "url", ["ftp://example.com/x", "file:///etc/passwd", "http:///nohost", "http://u:p@example.com/"]
)
def test_non_http_urls_are_refused(url: str) -> None:
    with pytest.raises(InvalidInput):
        webhooks.validate_url(url)


def test_private_targets_pass_when_explicitly_allowed() -> None:
    assert webhooks.validate_url("http://127.0.0.1:9/x", allow_private=True) == "http://127.0.0.1:9/x"


def test_delivery_is_retried_until_the_receiver_accepts(receiver: Receiver) -> None:
    waits: list[float] = []
    record = webhooks.deliver(receiver.url, {"alert": "a"}, allow_private=True, sleep=waits.append)
    assert record["ok"] and record["attempts"] == 3 and record["status"] == 200
    assert waits == [webhooks.BACKOFF_S, webhooks.BACKOFF_S * 2]  # exponential backoff
    assert receiver.bodies == [{"alert": "a"}]


def test_delivery_gives_up_after_the_attempts_and_reports_it(receiver: Receiver) -> None:
    record = webhooks.deliver(receiver.url, {}, allow_private=True, attempts=2, sleep=lambda _s: None)
    assert not record["ok"] and record["attempts"] == 2 and record["error"] == "answered 503"


def test_delivery_to_a_refused_url_is_not_attempted(receiver: Receiver) -> None:
    record = webhooks.deliver(receiver.url, {}, sleep=lambda _s: None)  # private not allowed
    assert not record["ok"] and record["attempts"] == 0 and receiver.attempts == 0
