"""``histotile serve``'s operations endpoints: ``/healthz``, ``/readyz`` (model loaded,
slides readable) and ``/metrics`` (Prometheus), and which of them need the token."""

from __future__ import annotations

import shutil
import time
from types import SimpleNamespace

import pytest

from histotile.workflows.serve import ServeSettings, create_app
from histotile.workflows.serve.routes_ops import (
    CLASSIFY_ROUTES,
    HEALTH_PATH,
    METRICS_PATH,
    READY_PATH,
    TILE_ROUTE,
    Metrics,
)

fastapi_testclient = pytest.importorskip("fastapi.testclient")
pytest.importorskip("prometheus_client")

AUTH = {"Authorization": "Bearer s3cret"}


def make_client(roots, **options):
    return fastapi_testclient.TestClient(create_app(ServeSettings(roots=roots, **options)))


def wait_ready(client, headers=None) -> dict:
    """Polls /readyz until it answers 200 (bounded: only a failure waits that long)."""
    deadline = time.monotonic() + 600  # a hang bound: loading torch under load is slow
    while True:
        response = client.get(READY_PATH, headers=headers)
        if response.status_code == 200 or time.monotonic() > deadline:
            return response.json() | {"code": response.status_code}
        time.sleep(0.05)


def sample(text: str, name: str, **labels: str) -> float:
    """One sample's value from Prometheus text (0 when absent)."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    return 0.0


def test_probes_need_no_token_and_metrics_do(serve_world):
    with make_client([serve_world.slides], token="s3cret") as client:
        assert client.get("/api/slides").status_code == 401
        health = client.get(HEALTH_PATH)
        assert health.status_code == 200 and health.json() == {"status": "ok"}
        assert health.headers["x-content-type-options"] == "nosniff"
        assert client.get(READY_PATH).status_code == 200  # no model: slides only
        assert client.get(METRICS_PATH).status_code == 401
        assert client.get(METRICS_PATH, headers=AUTH).status_code == 200
        assert client.post(HEALTH_PATH).status_code == 401  # only GET/HEAD are open
    with make_client([serve_world.slides], token="s3cret", public_metrics=True) as client:
        assert client.get(METRICS_PATH).status_code == 200
        assert client.get("/api/slides").status_code == 401


def test_ready_waits_for_the_model_and_for_readable_slides(serve_world, tmp_path):
    extra = tmp_path / "more-slides"
    extra.mkdir()
    with make_client([serve_world.slides, extra], model=serve_world.model) as client:
        first = client.get(READY_PATH)
        # The first probe starts loading the model; a loaded model answers 200.
        if first.status_code == 503:
            assert first.json()["checks"]["model"] == "loading"
        ready = wait_ready(client)
        assert ready["code"] == 200, ready
        assert ready["checks"] == {"model": "loaded", "slides": "readable"}
        shutil.rmtree(extra)  # a mount gone away
        gone = client.get(READY_PATH)
        assert gone.status_code == 503
        assert str(extra) in gone.json()["checks"]["slides"][0]
        assert client.get(HEALTH_PATH).status_code == 200  # alive, just not ready


def test_a_model_that_cannot_load_is_reported(serve_world, tmp_path):
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "model_card.json").write_text("{not json")
    with make_client([serve_world.slides], model=broken) as client:
        deadline = time.monotonic() + 600  # a hang bound only
        while (answer := client.get(READY_PATH).json())["checks"]["model"] == "loading":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert answer["status"] == "not ready" and answer["checks"]["model"] == "failed"
        assert answer["checks"]["model_error"]


def test_metrics_count_requests_tiles_and_classifications(serve_world):
    from test_workflows_serve_api import png_bytes, stain_image

    with make_client([serve_world.slides], model=serve_world.model) as client:
        for col in range(2):  # answered ahead of routing (fast_tiles) ...
            assert client.get(f"/slides/case_files/8/{col}_0.jpeg").status_code == 200
        assert client.get("/slides/case_files/8/99_0.jpeg").status_code == 404  # ... the route
        assert client.get("/no/such/page").status_code == 404
        image = png_bytes(stain_image("eosin"))
        assert client.post("/api/classify", files={"file": ("e.png", image, "image/png")}
                           ).status_code == 200
        text = client.get(METRICS_PATH).text
    assert sample(text, "histotile_tiles_served_total") == 2
    assert sample(text, "histotile_http_requests_total", route=TILE_ROUTE, method="GET",
                  status="200") == 2
    assert sample(text, "histotile_http_requests_total", route=TILE_ROUTE,
                  status="404") == 1
    assert sample(text, "histotile_http_requests_total", route="other", status="404") == 1
    assert sample(text, "histotile_http_request_duration_seconds_count", route=TILE_ROUTE,
                  method="GET") == 3
    assert sample(text, "histotile_classifications_total", route="/api/classify") == 1
    assert sample(text, "histotile_runs", state="queued") == 0


def test_runs_are_counted_by_state():
    jobs = SimpleNamespace(all=lambda: [SimpleNamespace(state=s) for s in
                                        ("queued", "running", "failed", "failed", "done")])
    from prometheus_client import generate_latest

    text = generate_latest(Metrics(jobs).registry).decode()
    assert [sample(text, "histotile_runs", state=s)
            for s in ("queued", "running", "done", "failed")] == [1, 1, 1, 2]


def test_counted_routes_are_the_apps_real_routes(serve_world):
    """The templates the metrics count by are routes the app has (a renamed route would
    silently stop being counted)."""
    app = create_app(ServeSettings(roots=[serve_world.slides]))
    paths = set(app.openapi()["paths"])
    assert {TILE_ROUTE, *CLASSIFY_ROUTES, HEALTH_PATH, READY_PATH, METRICS_PATH} <= paths
