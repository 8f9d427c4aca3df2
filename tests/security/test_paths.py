"""Path traversal on every path and URI parameter of every route, and model sources or
artifact locations outside loopml's artifact root.

Inputs are sent raw (http.client, no client-side normalisation). Each aims at the sentinel
directory next to the server's home, so a write or read that escaped would show up; the
tripwire asserts nothing outside the stores changed, and no answer may carry the secret.
"""

from __future__ import annotations

import http.client
import json
from pathlib import Path
from urllib.parse import quote, urlsplit

import httpx
import pytest

from tests.security.conftest import SECRET, Target
from tests.security.routes import fill, params, route_table

pytestmark = pytest.mark.server

# Traversal aimed at <base>/sentinel from anywhere under <base>/srv/home (depths 1-6).
ESCAPES = [("../" * d) + "sentinel/secret.txt" for d in range(1, 7)]
ENCODED = [
    "..%2f..%2f..%2f..%2fsentinel%2fsecret.txt",
    "%2e%2e/%2e%2e/%2e%2e/%2e%2e/sentinel/secret.txt",
    "%252e%252e/%252e%252e/%252e%252e/%252e%252e/sentinel/secret.txt",
    "%25252e%25252e/%25252e%25252e/x",
    "..%252f..%252f..%252fsentinel",
    "a/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/sentinel/secret.txt",
    "..%5c..%5c..%5c..%5csentinel%5csecret.txt",
    "a\\..\\..\\..\\..\\sentinel",
    "a%23/../../../../sentinel/secret.txt",  # '#' sent encoded: a raw one ends the URL
    "a;/../../../../sentinel/secret.txt",
    "a%3b/../../x",
    "secret.txt%00.png",
    "a%00/../../../sentinel",
    "C:/Windows/win.ini",
    "C%3a%5cWindows%5cwin.ini",
    "//etc/passwd",
    "%2fetc%2fpasswd",
    "....//....//....//sentinel",
    "./.././.././../sentinel",
]
PLAIN = ["../../etc/passwd", "..%2f..%2fetc%2fpasswd", "%252e%252e%252f", "a;b", "a%00b", "%2fetc"]
# Not a dot to Python's decoder: no escape, but no 5xx and no leak either.
# A store key, not a file: URI, to the content-addressed store.
ODD = [
    "%c0%ae%c0%ae/%c0%ae%c0%ae/sentinel",
    "%ef%bc%8e%ef%bc%8e/sentinel",
    "%e2%80%ae.txt",
    "file:/etc/passwd",
]


def absolute(target: Target) -> list[str]:
    secret = target.sentinel / "secret.txt"
    return [quote(str(secret), safe="/"), "/" + quote(str(secret), safe="/"), "%2f" + quote(str(secret))]


def raw_request(url: str, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def valid_values(target: Target) -> dict[str, str]:
    """A harmless, well-formed value for each parameter not under attack."""
    return {
        "run_id": target.run_id,
        "experiment_id": target.experiment_id,
        "model_id": "m-" + "0" * 32,
        "version": "1",
        "dataset_version": "1",
        "path": "ok.txt",
    }


def _verdict(status: int, body: bytes, *, must_refuse: bool) -> str | None:
    """Why this answer is wrong, or None."""
    if status >= 500:
        return f"{status} {body[:200]!r}"
    if SECRET.encode() in body or b"root:x:0" in body:
        return "leaked a file"
    if must_refuse and not 400 <= status < 500:
        return f"not refused: {status} {body[:200]!r}"
    return None


def _report(failures: list[str]) -> None:
    assert not failures, f"{len(failures)} wrong answers:\n" + "\n".join(failures[:40])


@pytest.fixture(scope="module")
def routes(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[str, str]]:
    return route_table(tmp_path_factory.mktemp("routes"))


def test_the_route_table_covers_every_api(routes: list[tuple[str, str]]) -> None:
    """The enumeration is the attack's reach: it must see each family of routes."""
    paths = {p for _, p in routes}
    for prefix in (
        "/api/2.0/mlflow/",
        "/api/2.0/mlflow-artifacts/",
        "/api/v1/registry/",
        "/api/v1/runs/",
        "/api/v1/datasets/",
        "/api/v1/endpoints",
        "/api/v1/monitors",
        "/v2/models/",
        "/endpoints/",
    ):
        assert any(p.startswith(prefix) for p in paths), prefix
    assert len(routes) > 150


def test_traversal_in_every_path_parameter(
    target: Target, tripwire: Target, routes: list[tuple[str, str]]
) -> None:
    blobs = target.blobs()
    defaults = valid_values(target)
    tried, failures = 0, []
    for method, template in routes:
        for name, is_path in params(template):
            attacks = [*ESCAPES, *ENCODED, *absolute(target)] if is_path else PLAIN
            # The odd names are plain (if strange) names: a PUT would rightly store them.
            for attack in [*attacks, *(ODD if method != "PUT" else [])]:
                values = {n: defaults.get(n, "g2sec") for n, _ in params(template)}
                values[name] = attack
                path = fill(template, values)
                body = b"{}" if method in ("POST", "PUT", "PATCH") else None
                status, answer = raw_request(target.url, method, path, body)
                # A path parameter carrying an escape is always refused (or not routed at all).
                why = _verdict(status, answer, must_refuse=is_path and attack not in ODD)
                if why:
                    failures.append(f"{method} {path}: {why}")
                tried += 1
    target.tried("path parameters", tried)
    _report(failures)
    assert target.blobs() == blobs, "a refused request stored a blob"


def test_traversal_in_query_and_body_uri_fields(
    target: Target, tripwire: Target, routes: list[tuple[str, str]]
) -> None:
    """``?path=`` and the URI-valued JSON fields (source, artifact_location, model_uri, ...)."""
    defaults = valid_values(target)
    attacks = [ESCAPES[3], *ENCODED[1:3], *absolute(target)[:2], "http:///#/../../../../etc/"]
    fields = ("path", "source", "artifact_location", "artifact_uri", "model_uri", "uri", "storage_location")
    tried, failures = 0, []
    for method, template in routes:
        path = fill(template, {n: defaults.get(n, "g2sec") for n, _ in params(template)})
        if method == "GET" and "artifact" in path:
            for attack in [*ESCAPES, *ENCODED, *absolute(target)]:
                status, answer = raw_request(
                    target.url, method, f"{path}?path={attack}&artifact_path={attack}"
                )
                if why := _verdict(status, answer, must_refuse=True):
                    failures.append(f"GET {path}?path={attack}: {why}")
                tried += 1
        elif method in ("POST", "PUT", "PATCH"):
            for attack in attacks:
                body = json.dumps(dict.fromkeys(fields, attack)).encode()
                status, answer = raw_request(target.url, method, path, body)
                if why := _verdict(status, answer, must_refuse=False):
                    failures.append(f"{method} {path} with URI fields {attack!r}: {why}")
                tried += 1
    target.tried("query and body URI fields", tried)
    _report(failures)


MODEL_SOURCES = [
    "http:///#/../../../../etc/",
    "http:///%23/../../../../sentinel/",
    "file:///etc/passwd",
    "file:///{sentinel}",
    "{sentinel}",
    "../../../sentinel",
    "runs:/{run}/../../../../sentinel",
    "runs:/{run}/%2e%2e/%2e%2e/sentinel",
    "runs:/{run}/%252e%252e/x",
    "runs:/../../{run}/model",
    "mlflow-artifacts:/{exp}/{run}/artifacts/../../../../sentinel",
    "mlflow-artifacts://evil.example.com/{exp}/{run}/artifacts/model",
    "mlflow-artifacts:/../../../sentinel",
    "models:/m-../../../sentinel",
    "s3://bucket/model",
    "gs://bucket/model",
    "hdfs://namenode/model",
    "http://169.254.169.254/latest/meta-data/",
    "https://127.0.0.1:1/model",
    "ftp://127.0.0.1/model",
    "C:\\models\\m",
    "\\\\server\\share\\model",
    "runs:/{run}/model;/../../x",
    "runs:/{run}/model%00",
]


def test_model_sources_outside_the_artifact_root(target: Target, tripwire: Target) -> None:
    url = target.url
    name = "g2-sources"
    assert httpx.post(f"{url}/api/v1/registry/models", json={"name": name}).status_code == 200
    tried = 0
    for template in MODEL_SOURCES:
        source = template.format(sentinel=target.sentinel, run=target.run_id, exp=target.experiment_id)
        native = httpx.post(f"{url}/api/v1/registry/models/{name}/versions", json={"source": source})
        mlflow = httpx.post(
            f"{url}/api/2.0/mlflow/model-versions/create", json={"name": name, "source": source}
        )
        for r in (native, mlflow):
            assert r.status_code == 400, f"{source!r}: {r.status_code} {r.text[:300]}"
            assert SECRET not in r.text
        tried += 2
    target.tried("model sources", tried)
    versions = httpx.get(f"{url}/api/2.0/mlflow/model-versions/search", params={"filter": f"name='{name}'"})
    assert versions.json().get("model_versions", []) == []


@pytest.mark.parametrize(
    "location",
    ["file:///{sentinel}", "{sentinel}", "../../../sentinel", "s3://bucket/x", "mlflow-artifacts:/../../x"],
)
def test_artifact_locations_outside_the_root_store_nothing(
    target: Target, tripwire: Target, location: str, tmp_path: Path
) -> None:
    url = target.url
    location = location.format(sentinel=target.sentinel)
    name = f"loc-{abs(hash(location)) % 10**8}"
    created = httpx.post(f"{url}/api/v1/experiments", json={"name": name, "artifact_location": location})
    assert created.status_code < 500, created.text
    target.tried("artifact locations")
    if created.status_code != 200:
        return
    exp_id = created.json()["experiment_id"]
    run = httpx.post(f"{url}/api/v1/runs", json={"experiment_id": exp_id}).json()["info"]
    put = httpx.put(f"{url}/api/v1/runs/{run['run_id']}/artifacts/pwned.txt", content=b"pwned")
    assert put.status_code == 400, put.text
    assert put.json()["details"]["field"] == "artifact_uri"


def test_a_safe_upload_still_works(target: Target, tripwire: Target) -> None:
    """The positive control: the same routes store a plain path."""
    url = target.url
    r = httpx.put(f"{url}/api/v1/runs/{target.run_id}/artifacts/dir/ok.txt", content=b"fine")
    assert r.status_code == 200, r.text
    assert httpx.get(f"{url}/api/v1/runs/{target.run_id}/artifact-content/dir/ok.txt").content == b"fine"
