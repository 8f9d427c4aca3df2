"""Schemathesis against the live server's OpenAPI document (``/openapi.json``).

Every operation gets generated requests, valid (positive) and invalid (negative): no answer
may be a 5xx, and documented responses must match their schema. ``make test`` runs a few
examples per operation and mode; ``make fuzz`` sets ``LOOPML_FUZZ_EXAMPLES`` (100 there).

The operations are driven through ``as_strategy`` inside one test: schemathesis' lazy
pytest loader does not run on this pytest, and the schema needs the live server first.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.errors import SerializationNotPossible
from schemathesis.specs.openapi.checks import response_schema_conformance

from tests.support.live_server import live_server

pytestmark = pytest.mark.server

EXAMPLES = int(os.environ.get("LOOPML_FUZZ_EXAMPLES", "3"))
CHECKS = [not_a_server_error, response_schema_conformance]


@pytest.fixture(scope="module")
def live_schema(tmp_path_factory: pytest.TempPathFactory) -> Iterator[schemathesis.BaseSchema]:
    home = tmp_path_factory.mktemp("fuzz") / "home"
    home.mkdir()
    with live_server(home, env={"LOOPML_MONITOR_SCHEDULER": "0"}) as url:
        yield schemathesis.openapi.from_url(f"{url}/openapi.json")


def _fuzz(
    operation: schemathesis.APIOperation,
    mode: GenerationMode,
    sent: list[int],
    session: requests.Session,
    seen: list[str],
) -> None:
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
        report_multiple_bugs=False,
        phases=[Phase.explicit, Phase.generate],  # no shrinking: report the first failing case
    )
    def run(case: schemathesis.Case) -> None:
        sent.append(1)
        try:
            case.call_and_validate(checks=CHECKS, timeout=60, session=session)
        except BaseException as exc:  # kept: hypothesis may hide it if a replay behaves differently
            seen.append(
                f"{case.method} {case.formatted_path} query={case.query} body={case.body!r:.300}: {exc}"
            )
            raise

    run()


def _modes(operation: schemathesis.APIOperation) -> list[GenerationMode]:
    """Negative cases only where there is something to break: a body or a query parameter
    (any string is a valid path parameter, so those have no negative examples)."""
    location = {p.location for p in operation.iter_parameters()}
    negative = operation.get_request_payload_content_types() or "query" in location
    return [GenerationMode.POSITIVE, *([GenerationMode.NEGATIVE] if negative else [])]


def _describe(exc: BaseException) -> str:
    """The message, with those of the exceptions inside a group (hypothesis' flaky reports)."""
    if isinstance(exc, BaseExceptionGroup):
        return f"{exc}: " + " | ".join(_describe(e) for e in exc.exceptions)
    return str(exc)


def test_no_server_errors_and_documented_responses(
    live_schema: schemathesis.BaseSchema, request: pytest.FixtureRequest
) -> None:
    failures: list[str] = []
    sent: list[int] = []
    skipped: list[str] = []
    session = requests.Session()
    request.addfinalizer(session.close)
    operations = [result.ok() for result in live_schema.get_all_operations()]
    assert len(operations) > 80, "the OpenAPI document lost its operations"
    for operation in operations:
        for mode in _modes(operation):
            label = f"{operation.method.upper()} {operation.path} ({mode.value})"
            try:
                _fuzz(operation, mode, sent, session, seen := [])
            except (Unsatisfiable, SerializationNotPossible):
                skipped.append(label)  # no cases of this kind (e.g. a Parquet upload body)
            except (Exception, BaseExceptionGroup) as exc:  # all operations tried, failures reported together
                failures.append(
                    f"{label}: {_describe(exc)}"[:3000] + "\n  first failure: " + "; ".join(seen[:1])
                )
    print(f"fuzz: {len(sent)} requests over {len(operations)} operations; not generated: {skipped}")
    assert not failures, f"{len(failures)} operations failed:\n" + "\n\n".join(failures)
