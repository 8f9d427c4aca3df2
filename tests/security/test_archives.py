"""Archives with members escaping their target.

loopml itself extracts no archive to disk (the guard below keeps it so: a new extraction
site must come with its own attack test). The archives it does open are skops model files
(zip); one whose members escape (``../``, absolute, symlink, hardlink-like duplicates) is
served through an endpoint: refused, and nothing is written outside the stores.
"""

from __future__ import annotations

import io
import re
import stat
import zipfile
from pathlib import Path

import httpx
import pytest
import yaml

import loopml
from tests.security.conftest import Target

EXTRACTION = re.compile(r"\.extractall\(|\.extract\(|unpack_archive\(|tarfile\.open\(|TarFile\(")
# Modules allowed to extract archives, each with the test that attacks it. None today.
REVIEWED: dict[str, str] = {}


def test_no_unreviewed_archive_extraction_in_loopml() -> None:
    root = Path(loopml.__file__).parent
    sites = sorted(
        str(p.relative_to(root))
        for p in root.rglob("*.py")
        if EXTRACTION.search(p.read_text(encoding="utf-8"))
    )
    assert [s for s in sites if s not in REVIEWED] == [], (
        "archive extraction added: confine every member (no '..', absolute paths, links) and "
        "add an attack test for it to tests/security/test_archives.py"
    )


def evil_zip(target: Target) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(
            "schema.json",
            '{"__class__": "LogisticRegression", "__module__": "sklearn.linear_model._logistic",'
            ' "__loader__": "ObjectNode", "content": {"__class__": "dict", "__module__": "builtins",'
            ' "__loader__": "DictNode", "content": {}}, "protocol": 2, "_skops_version": "0.10.0"}',
        )
        for name in [
            "../../../../../sentinel/escaped.txt",
            f"{target.sentinel}/absolute.txt",
            "a/../../b.txt",
        ]:
            zf.writestr(name, b"escaped")
        link = zipfile.ZipInfo("link-to-secret")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(link, str(target.sentinel / "secret.txt"))
        zf.writestr("schema.json.dup", b"x")  # a second entry, as a hardlink stand-in in zip
    return buf.getvalue()


@pytest.mark.server
def test_a_skops_archive_with_escaping_members_is_refused(target: Target, tripwire: Target) -> None:
    url = target.url
    run = httpx.post(f"{url}/api/v1/runs", json={"experiment_id": target.experiment_id}).json()["info"][
        "run_id"
    ]
    mlmodel = {
        "artifact_path": "model",
        "flavors": {"sklearn": {"pickled_model": "model.skops", "serialization_format": "skops",
                                "sklearn_version": "1.5.0", "code": None}},
    }  # fmt: skip
    files = {"MLmodel": yaml.safe_dump(mlmodel).encode(), "model.skops": evil_zip(target)}
    for name, content in files.items():
        assert (
            httpx.put(f"{url}/api/v1/runs/{run}/artifacts/model/{name}", content=content).status_code == 200
        )
    assert httpx.post(f"{url}/api/v1/registry/models", json={"name": "zip-slip"}).status_code == 200
    created = httpx.post(
        f"{url}/api/v1/registry/models/zip-slip/versions", json={"source": f"runs:/{run}/model"}
    )
    assert created.status_code == 200, created.text
    policy = {
        "variants": [{"name": "primary", "model_uri": "models:/zip-slip/1", "weight": 100, "role": "primary"}]
    }
    assert (
        httpx.post(f"{url}/api/v1/endpoints", json={"name": "zip-slip", "policy": policy}).status_code == 200
    )
    answer = httpx.post(f"{url}/endpoints/zip-slip/invocations", json={"instances": [[1.0]]}, timeout=120)
    assert 400 <= answer.status_code < 500, answer.text
    assert not (target.sentinel / "escaped.txt").exists() and not (target.sentinel / "absolute.txt").exists()
    target.tried("archive members", 5)
