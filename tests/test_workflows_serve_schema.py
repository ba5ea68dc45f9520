"""``histotile serve`` fuzzed from its own OpenAPI document with schemathesis (a bounded
run: a few generated requests per operation): the server always answers, never with a
5xx."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings

schemathesis = pytest.importorskip("schemathesis")


@pytest.mark.slow
def test_no_server_errors(serve_world):
    from histotile.workflows.serve import ServeSettings, create_app

    app = create_app(ServeSettings(roots=[serve_world.slides], results=serve_world.results,
                                   model=serve_world.model, max_upload_mb=1))
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1

        @settings(max_examples=8, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def check(case) -> None:
            response = case.call()
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path}: "
                                f"{response.status_code} {response.text[:200]}")

        check()
    assert operations >= 12  # every route of the API was exercised
    assert failures == []
