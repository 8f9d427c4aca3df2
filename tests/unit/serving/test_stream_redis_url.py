"""Redis stream URLs: where the server is, which stream, group and consumer (no server needed)."""

from __future__ import annotations

import socket

import pytest

from loopml.errors import InvalidInput
from loopml.serving.stream import open_source
from loopml.serving.stream.redis_streams import parse_stream_url


def test_defaults() -> None:
    u = parse_stream_url("redis://127.0.0.1:6379/in")
    assert (u.connection_url, u.stream, u.group, u.start, u.claim_idle_ms, u.maxlen) == (
        "redis://127.0.0.1:6379/0",
        "in",
        "loopml",
        "0",
        60_000,
        None,
    )
    # Stable across restarts on one host, so a restarted job finds its own pending entries.
    assert u.consumer == f"loopml-{socket.gethostname()}"


def test_every_option() -> None:
    u = parse_stream_url("rediss://user:pw@cache:6380/3/scores?group=g&consumer=c&start=$&claim_idle_ms=5000")
    assert (u.connection_url, u.stream, u.group, u.consumer, u.start, u.claim_idle_ms) == (
        "rediss://user:pw@cache:6380/3",
        "scores",
        "g",
        "c",
        "$",
        5000,
    )
    assert u.describe() == "rediss://cache:6380/scores"  # no password in logs
    assert parse_stream_url("redis://h/out?maxlen=1000", role="sink").maxlen == 1000


@pytest.mark.parametrize(
    ("url", "role", "match"),
    [
        ("redis://h:6379", "source", "not a Redis stream URL"),
        ("redis://h:6379/", "source", "not a Redis stream URL"),
        ("http://h/in", "source", "not a Redis stream URL"),
        ("redis://h/a/b/c", "source", "names no single stream"),
        ("redis://h/in?gruop=x", "source", r"unknown option\(s\) \['gruop'\]"),
        ("redis://h/out?group=x", "sink", r"unknown option\(s\) \['group'\]"),
        ("redis://h/in?claim_idle_ms=soon", "source", "must be a whole number"),
    ],
)
def test_bad_urls_say_what_to_write(url: str, role: str, match: str) -> None:
    with pytest.raises(InvalidInput, match=match) as info:
        parse_stream_url(url, role=role)
    assert info.value.details["field"] == role


def test_passwords_are_not_echoed() -> None:
    with pytest.raises(InvalidInput) as info:
        parse_stream_url("redis://:hunter2@h/in?nope=1")
    assert "hunter2" not in info.value.message


def test_unknown_schemes_list_the_known_ones() -> None:
    with pytest.raises(InvalidInput, match="use one of kafka, redis, rediss"):
        open_source("amqp://h/q")
