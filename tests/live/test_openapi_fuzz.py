"""Schemathesis against the live OpenAPI document (bounded, derandomised): no server error, and every
answer (status, content type, headers, body) matches what the document declares."""

from __future__ import annotations

from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, settings  # noqa: E402
from live.fakes import ANOMALY_PARAMS, FAKE_LOADERS, anomaly_reference, register  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@pytest.fixture
def live_schema(workspace, registry) -> Any:
    from bms_live.app import create_app
    from bms_live.settings import Settings

    register(registry, "anomaly_hybrid", ANOMALY_PARAMS, anomaly_reference())
    register(registry, "failure_classifier", {"horizon_days": 7})
    register(registry, "forecaster", {})
    app = create_app(Settings.from_env(poll_seconds=0, api_key=None), loaders=FAKE_LOADERS)
    app.state.service.start()
    try:
        yield schemathesis.openapi.from_asgi("/openapi.json", app)
    finally:
        app.state.service.stop()


EXAMPLES = 10  # per operation and generation mode: ~30 requests per endpoint in a few seconds


def test_live_openapi_is_true(live_schema) -> None:
    from hypothesis import given
    from hypothesis.errors import Unsatisfiable
    from schemathesis.generation.modes import GenerationMode

    operations = [result.ok() for result in live_schema.get_all_operations()]
    paths = {op.path for op in operations}
    assert {"/v1/anomaly", "/v1/failure", "/v1/forecast", "/v1/feedback", "/health"} <= paths
    failures: list[str] = []
    calls = 0
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=EXAMPLES,
                deadline=None,
                derandomize=True,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            def run(case: Any) -> None:
                nonlocal calls
                calls += 1
                case.call_and_validate(checks=CHECKS)

            try:
                run()
            except Unsatisfiable:  # nothing invalid can be sent (e.g. GET /health takes no input)
                continue
            except Exception as exc:  # collect every operation's failure, then report them together
                failures.append(f"{operation.method.upper()} {operation.path} ({mode}): {exc}")
    assert not failures, "\n\n".join(failures)
    assert calls >= 2 * len(operations)
