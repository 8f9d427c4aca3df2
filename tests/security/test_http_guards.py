"""Request-level guards: foreign Host (DNS rebinding), cross-site simple POSTs, oversize
bodies, deep JSON, huge max_results, and HTML/SVG artifacts served as inert attachments."""

from __future__ import annotations

import http.client
import json
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest

from tests.security.conftest import EXTRA_HOST, MAX_REQUEST_BYTES, MAX_UPLOAD_BYTES, Target

pytestmark = pytest.mark.server


def send(
    target: Target, method: str, path: str, body: bytes | Iterator[bytes] | None = None, **headers: str
) -> tuple[int, dict[str, str], bytes]:
    """One raw request; ``headers`` with '_' for '-' (``Content_Type``)."""
    parts = urlsplit(target.url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        conn.putrequest(method, path, skip_host="Host" in headers, skip_accept_encoding=True)
        for name, value in headers.items():
            conn.putheader(name.replace("_", "-"), value)
        chunked = body is not None and not isinstance(body, bytes)
        if isinstance(body, bytes) and "Content_Length" not in headers:
            conn.putheader("Content-Length", str(len(body)))
        if chunked:
            conn.putheader("Transfer-Encoding", "chunked")
        conn.endheaders()
        if isinstance(body, bytes):
            conn.send(body)
        elif body is not None:
            for chunk in body:
                conn.send(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            conn.send(b"0\r\n\r\n")
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    except (BrokenPipeError, ConnectionResetError):
        # The server answered and closed before the whole body was sent: read what it said.
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def experiment_names(target: Target) -> set[str]:
    found = httpx.get(f"{target.url}/api/v1/experiments", params={"max_results": 1000}).json()
    return {e["name"] for e in found["experiments"]}


# -- DNS rebinding -----------------------------------------------------------------------------
FOREIGN_HOSTS = [
    "evil.example.com",
    "evil.example.com:5000",
    "127.0.0.1.nip.io",
    "localhost.evil.example.com",
    "attacker",
    "EVIL.example.com.",
    "[::1].evil.example.com",
    "xn--localhost-9za.example",
    "",
]
ROUTES = [
    ("GET", "/health"),
    ("GET", "/api/2.0/mlflow/experiments/search?max_results=5"),
    ("GET", "/api/v1/experiments"),
    ("GET", "/v2/health/live"),
    ("GET", "/ui/"),
    ("GET", "/metrics"),
]


def test_a_foreign_host_is_refused_on_every_route_family(target: Target, tripwire: Target) -> None:
    port = urlsplit(target.url).port
    tried = 0
    for host in FOREIGN_HOSTS:
        for method, path in ROUTES:
            status, _, body = send(target, method, path, Host=host)
            assert status == 400, f"Host {host!r} {path}: {status} {body[:200]!r}"
            tried += 1
        name = f"rebind-{uuid.uuid4().hex[:6]}"
        payload = json.dumps({"name": name}).encode()
        status, _, _ = send(
            target,
            "POST",
            "/api/2.0/mlflow/experiments/create",
            payload,
            Host=host,
            Content_Type="application/json",
        )
        assert status == 400 and name not in experiment_names(target)
        tried += 1
    target.tried("foreign Host headers", tried)
    for host in [
        "localhost",
        f"localhost:{port}",
        f"127.0.0.1:{port}",
        f"[::1]:{port}",
        "app.localhost",
        EXTRA_HOST,
    ]:
        status, _, body = send(target, "GET", "/api/v1/experiments", Host=host)
        assert status == 200, f"Host {host!r}: {status} {body[:200]!r}"


# -- cross-site simple POSTs -------------------------------------------------------------------
SIMPLE_POSTS = [
    {"Content_Type": "text/plain"},
    {"Content_Type": "text/plain;charset=UTF-8"},
    {"Content_Type": "application/x-www-form-urlencoded"},
    {"Content_Type": "multipart/form-data; boundary=x"},
    {"Content_Type": "TEXT/PLAIN"},
    {},  # no Content-Type at all: what fetch(no-cors) sends for an untyped Blob
]


def test_cross_site_simple_posts_are_refused(target: Target, tripwire: Target) -> None:
    tried = 0
    for headers in SIMPLE_POSTS:
        name = f"csrf-{uuid.uuid4().hex[:6]}"
        body = json.dumps({"name": name, "run_id": target.run_id, "metrics": []}).encode()
        for path in [
            "/api/2.0/mlflow/experiments/create",
            "/ajax-api/2.0/mlflow/experiments/create",
            "/api/v1/experiments",
            "/api/2.0/mlflow/registered-models/create",
            "/api/v1/registry/models",
            "/api/2.0/mlflow/runs/log-batch",
            f"/api/v1/datasets/{name}/versions",
            "/v2/models/m/infer",
            "/endpoints/m/invocations",
        ]:
            if not headers and not path.startswith("/api/"):
                continue  # tritonclient posts untyped inference bodies: only typed forms are refused there
            status, _, answer = send(target, "POST", path, body, **headers)
            assert status == 415, f"{headers} {path}: {status} {answer[:200]!r}"
            tried += 1
        assert name not in experiment_names(target)
        models = httpx.get(f"{target.url}/api/v1/registry/models").json()
        assert name not in json.dumps(models)
    target.tried("cross-site POSTs", tried)
    # The same calls with a JSON type work: the mlflow client and loopml's send it.
    name = f"ok-{uuid.uuid4().hex[:6]}"
    body = json.dumps({"name": name}).encode()
    status, _, _ = send(
        target,
        "POST",
        "/api/2.0/mlflow/experiments/create",
        body,
        Content_Type="application/json; charset=utf-8",
    )
    assert status == 200 and name in experiment_names(target)


def test_ui_forms_are_exempt_but_need_the_csrf_token(target: Target, tripwire: Target) -> None:
    """The UI posts forms under /ui/ and checks its own token: a forged form gets 403, not 415."""
    status, _, _ = send(
        target, "POST", "/ui/requests/nope/approve", b"csrf_token=guess",
        Content_Type="application/x-www-form-urlencoded", Cookie="loopml_csrf=" + "a" * 43,
    )  # fmt: skip
    assert status == 403
    target.tried("cross-site POSTs")


# -- sizes and shapes --------------------------------------------------------------------------
def test_oversize_bodies_are_refused_with_413(target: Target, tripwire: Target) -> None:
    blobs = target.blobs()
    big = b'{"name": "' + b"x" * MAX_REQUEST_BYTES + b'"}'
    for path in ["/api/2.0/mlflow/runs/log-batch", "/api/v1/experiments", "/v2/models/m/infer"]:
        status, _, answer = send(target, "POST", path, big, Content_Type="application/json")
        assert status == 413, f"{path}: {status} {answer[:200]!r}"
        assert json.loads(answer)["error_code"] == "PAYLOAD_TOO_LARGE"
    # Declared too large: refused before a byte of the body is read.
    status, _, _ = send(
        target,
        "POST",
        "/api/v1/experiments",
        b"{}",
        Content_Type="application/json",
        Content_Length=str(1 << 40),
    )
    assert status == 413
    # Chunked (no Content-Length): counted as it arrives.
    chunks = iter([b"[" + b"1," * 1000] * (MAX_REQUEST_BYTES // 2000 + 2))
    status, _, _ = send(
        target, "POST", "/api/2.0/mlflow/runs/log-batch", chunks, Content_Type="application/json"
    )
    assert status == 413
    # Uploads have their own (larger) limit, streamed: nothing is stored from a refused one.
    path = f"/api/v1/runs/{target.run_id}/artifacts/too-big.bin"
    status, _, _ = send(target, "PUT", path, b"\0" * (MAX_UPLOAD_BYTES + 1))
    assert status == 413
    chunked = iter([b"\1" * 65536] * (MAX_UPLOAD_BYTES // 65536 + 2))
    proxy = f"/api/2.0/mlflow-artifacts/artifacts/{target.experiment_id}/{target.run_id}/artifacts/big2.bin"
    status, _, _ = send(target, "PUT", proxy, chunked)
    assert status == 413
    assert target.blobs() == blobs
    listed = httpx.get(f"{target.url}/api/v1/runs/{target.run_id}/artifacts").json()["files"]
    assert not {"too-big.bin", "big2.bin"} & {f["path"] for f in listed}
    target.tried("oversize bodies", 7)
    # Just under the upload limit is stored.
    status, _, _ = send(target, "PUT", path.replace("too-big", "fits"), b"\0" * (MAX_UPLOAD_BYTES - 1))
    assert status == 200


def nested(depth: int) -> bytes:
    return b'{"name": "deep", "tags": ' + b"[" * depth + b"]" * depth + b"}"


def test_deeply_nested_json_is_refused(target: Target, tripwire: Target) -> None:
    paths = ["/api/2.0/mlflow/experiments/create", "/api/v1/experiments", "/api/v1/runs/search", "/api/v1/monitors",
             "/v2/models/m/infer", "/api/2.0/mlflow/runs/log-batch"]  # fmt: skip
    for path in paths:
        for depth in (65, 1000, 100_000):
            status, _, answer = send(target, "POST", path, nested(depth), Content_Type="application/json")
            assert status == 400 and b"nested deeper" in answer, (
                f"{path} depth {depth}: {status} {answer[:200]!r}"
            )
    target.tried("deep JSON", len(paths) * 3)
    # Brackets inside strings are text, not nesting; 64 levels is not refused for depth.
    name = "brackets-" + "[" * 200 + "]" * 10
    r = httpx.post(f"{target.url}/api/v1/experiments", json={"name": name})
    assert r.status_code == 200, r.text
    status, _, answer = send(
        target, "POST", "/api/v1/runs/search", nested(63), Content_Type="application/json"
    )
    assert b"nested deeper" not in answer


HUGE = ["1000000", str(2**63), str(10**30), "-1", "1e9", "NaN", "0x7fffffff"]


def test_huge_max_results_is_refused(target: Target, tripwire: Target) -> None:
    url = target.url
    for value in HUGE:
        for r in [
            httpx.get(f"{url}/api/2.0/mlflow/experiments/search", params={"max_results": value}),
            httpx.get(f"{url}/api/2.0/mlflow/registered-models/search", params={"max_results": value}),
            httpx.get(f"{url}/api/2.0/mlflow/model-versions/search", params={"max_results": value}),
            httpx.get(f"{url}/api/v1/experiments", params={"max_results": value}),
            httpx.get(f"{url}/api/v1/registry/models", params={"max_results": value}),
            httpx.post(f"{url}/api/2.0/mlflow/runs/search", content=f'{{"experiment_ids":["0"],"max_results":{value}}}',
                       headers={"Content-Type": "application/json"}),
            httpx.post(f"{url}/api/v1/runs/search", content=f'{{"experiment_ids":["0"],"max_results":{value}}}',
                       headers={"Content-Type": "application/json"}),
            httpx.post(f"{url}/api/2.0/mlflow/logged-models/search", json={"experiment_ids": ["0"], "max_results": value}),
        ]:  # fmt: skip
            assert r.status_code == 400, (
                f"{r.request.method} {r.request.url} {value}: {r.status_code} {r.text[:200]}"
            )
    target.tried("huge max_results", len(HUGE) * 8)


# -- active content in artifacts ---------------------------------------------------------------
ACTIVE = {
    "page.html": b"<html><script>fetch('/api/2.0/mlflow/experiments/create')</script></html>",
    "page.htm": b"<script>alert(1)</script>",
    "image.svg": b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
    "doc.xhtml": b'<html xmlns="http://www.w3.org/1999/xhtml"><script>alert(1)</script></html>',
    "noext": b"<html><script>alert(1)</script></html>",
    "data.txt": b"<html><script>alert(1)</script></html>",  # sniffable as HTML
}


def test_html_and_svg_artifacts_are_inert_attachments(target: Target, tripwire: Target) -> None:
    url, run, exp = target.url, target.run_id, target.experiment_id
    for name, content in ACTIVE.items():
        assert (
            httpx.put(f"{url}/api/v1/runs/{run}/artifacts/active/{name}", content=content).status_code == 200
        )
        for path in [
            f"/api/v1/runs/{run}/artifact-content/active/{name}",
            f"/api/2.0/mlflow-artifacts/artifacts/{exp}/{run}/artifacts/active/{name}",
            f"/ajax-api/2.0/mlflow-artifacts/artifacts/{exp}/{run}/artifacts/active/{name}",
            f"/ui/runs/{run}/raw/active/{name}",
        ]:
            r = httpx.get(url + path)
            assert r.status_code == 200 and r.content == content, path
            ctype = r.headers.get("content-type", "")
            assert "html" not in ctype and "svg" not in ctype and "xml" not in ctype, f"{path}: {ctype}"
            assert r.headers.get("x-content-type-options") == "nosniff", path
            assert r.headers.get("content-disposition", "").startswith("attachment"), path
            assert "sandbox" in r.headers.get("content-security-policy", ""), path
    target.tried("active-content artifacts", len(ACTIVE) * 4)
