"""The hardening middleware's pure parts: Host names and JSON depth."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loopml.config import Settings
from loopml.server.hardening import HostPolicy, host_allowed, json_depth

POLICY = HostPolicy.build(["models.example.com"], bind_host="10.1.2.3")


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("localhost", True),
        ("localhost:5000", True),
        ("LOCALHOST.", True),
        ("app.localhost:80", True),
        ("127.0.0.1:5000", True),
        ("[::1]:5000", True),
        ("[::1]", True),
        ("10.9.9.9", True),  # any IP literal: rebinding needs a name
        ("models.example.com:443", True),
        ("evil.example.com", False),
        ("models.example.com.evil.net", False),
        ("localhost.evil.net", False),
        ("[::1].evil.net", False),
        ("[::1]x", False),
        ("127.0.0.1.nip.io", False),
        ("", False),
    ],
)
def test_host_names(host: str, allowed: bool) -> None:
    assert host_allowed(host, POLICY) is allowed


def test_allowed_hosts_come_from_settings_and_star_allows_all() -> None:
    s = Settings.load(env={"LOOPML_ALLOWED_HOSTS": "a.example, b.example", "LOOPML_HOME": "/tmp/x"})
    assert s.allowed_hosts == ("a.example", "b.example")
    assert host_allowed("b.example:8080", HostPolicy.build(s.allowed_hosts))
    assert host_allowed("anything.example", HostPolicy.build(["*"]))


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet='[]{}"\\ab,:\n'),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(alphabet='[]{}"\\k'), inner, max_size=3)
    ),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_json_depth_matches_the_parsed_structure(value: Any) -> None:
    """Brackets, quotes and backslashes inside strings never count."""
    assert json_depth(json.dumps(value).encode()) == _depth(value)
