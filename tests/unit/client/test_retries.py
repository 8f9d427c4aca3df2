"""The HTTP client's retry policy, against a scripted transport (no server needed for policy)."""

from __future__ import annotations

import httpx
import pytest

from loopml.client import http as client_http
from loopml.client.http import HttpTrackingService, backoff_delay
from loopml.errors import Conflict, NotFound, Unavailable
from loopml.tracking.records import Metric


class Script:
    """Answers requests from a list of (status, json) or exceptions, recording what it saw."""

    def __init__(self, answers: list[object]) -> None:
        self.answers = answers
        self.seen: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(f"{request.method} {request.url.path}")
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        status, body = answer  # type: ignore[misc]
        return httpx.Response(status, json=body)


@pytest.fixture(autouse=True)
def no_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client_http.time, "sleep", lambda _s: None)


def _client(script: Script, retries: int = 3) -> HttpTrackingService:
    return HttpTrackingService("http://test", retries=retries, transport=httpx.MockTransport(script))


def test_log_batch_is_retried_through_transient_failures() -> None:
    script = Script([(503, {}), httpx.ReadTimeout("slow"), (200, {})])
    _client(script).log_batch("r1", metrics=[Metric("m", 1.0, 1, 0)])
    assert script.seen == ["POST /api/v1/runs/r1/batch"] * 3


def test_connection_refused_is_retried_for_any_call() -> None:
    run = {"info": {"run_id": "r", "experiment_id": "0", "run_name": "n", "user_id": "u", "status": "RUNNING",
                    "start_time": 1, "end_time": None, "artifact_uri": "a", "lifecycle_stage": "active"}}  # fmt: skip
    script = Script([httpx.ConnectError("refused"), (200, run)])
    assert _client(script).create_run("0").run_id == "r"


def test_a_create_that_may_have_happened_is_not_repeated() -> None:
    script = Script([(503, {"error_code": "UNAVAILABLE", "message": "busy"})])
    with pytest.raises(Exception, match="busy"):
        _client(script).create_run("0")
    assert len(script.seen) == 1
    script = Script([httpx.ReadTimeout("slow")])
    with pytest.raises(Unavailable, match="may have been applied"):
        _client(script).create_experiment("x")


def test_retries_are_bounded() -> None:
    script = Script([(503, {})] * 3)
    with pytest.raises(Unavailable, match="after 3 tries"):
        _client(script, retries=2).get_run("r")


def test_server_errors_map_back_to_the_same_exception() -> None:
    script = Script([(404, {"error_code": "NOT_FOUND", "message": "run 'x' does not exist"})])
    with pytest.raises(NotFound, match="run 'x'"):
        _client(script).get_run("x")
    script = Script([(409, {"error_code": "CONFLICT", "message": "param", "details": {"key": "a"}})])
    with pytest.raises(Conflict) as err:
        _client(script).log_param("x", "a", 1)
    assert err.value.details == {"key": "a"}


def test_backoff_has_full_jitter_and_a_cap() -> None:
    import random

    rng = random.Random(1)
    delays = [backoff_delay(a, rng) for a in range(12)]
    assert all(0 <= d <= client_http.BACKOFF_CAP_S for d in delays)
    assert len(set(delays)) == len(delays)
