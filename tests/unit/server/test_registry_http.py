"""The registry HTTP layer's request reading: who is calling, and MLflow's prompt clause."""

from __future__ import annotations

import base64

import pytest
from starlette.requests import Request

from loopml.server.api_v1_registry import caller
from loopml.server.mlflow_registry import PROMPT_CLAUSE, _model_filter


def _request(headers: dict[str, str]) -> Request:
    raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    return Request({"type": "http", "method": "GET", "path": "/", "headers": raw})


def _basic(user: str, password: str = "pw") -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"X-Loopml-User": "ana"}, "ana"),
        ({"X-Loopml-User": "ana", "Authorization": _basic("bob")}, "ana"),
        ({"Authorization": _basic("bob")}, "bob"),
        ({"Authorization": _basic("")}, None),
        ({"Authorization": "Basic not-base64!"}, None),
        ({"Authorization": "Bearer token"}, None),
        ({}, None),
    ],
)
def test_caller_is_the_header_then_the_basic_auth_user(headers: dict[str, str], expected: str | None) -> None:
    assert caller(_request(headers)) == expected


@pytest.mark.parametrize(
    ("sent", "searched"),
    [
        (PROMPT_CLAUSE, ""),
        (f"name LIKE 'churn%' AND {PROMPT_CLAUSE}", "name LIKE 'churn%'"),
        ("name = 'a'", "name = 'a'"),
        # a caller asking for prompts explicitly is passed on (and finds none)
        ("tag.`mlflow.prompt.is_prompt` = 'true'", "tag.`mlflow.prompt.is_prompt` = 'true'"),
        ("", ""),
    ],
)
def test_mlflow_prompt_exclusion_is_dropped(sent: str, searched: str) -> None:
    assert _model_filter(sent) == searched
