"""Deep Zoom tiles of ``histotile serve`` on their fast path (plain ASGI ahead of FastAPI):
the same bytes as the route, the token and security headers still apply, errors still in
the route's format, cached tiles without a file-system call, tile threads per core."""

from __future__ import annotations

from pathlib import Path

import pytest

from histotile._threads import thread_budget
from histotile.workflows.serve import ServeSettings, create_app

fastapi_testclient = pytest.importorskip("fastapi.testclient")
TILE = "/slides/case_files/11/2_1.jpeg"


def make_client(world, **options):
    settings = ServeSettings(roots=[world.slides], results=world.results, **options)
    return fastapi_testclient.TestClient(create_app(settings))


def test_fast_path_answers_with_the_routes_bytes_and_headers(serve_world, monkeypatch):
    with make_client(serve_world) as client:
        fast = client.get(TILE)
        assert fast.status_code == 200 and fast.content[:2] == b"\xff\xd8"
        assert fast.headers["content-type"] == "image/jpeg"
        assert fast.headers["cache-control"] == "private, max-age=3600"
        assert fast.headers["x-content-type-options"] == "nosniff"  # Guard is outside
        assert int(fast.headers["content-length"]) == len(fast.content)
    # The FastAPI route alone (fast path switched off) gives the same tile.
    import histotile.workflows.serve.fast_tiles as fast_tiles

    monkeypatch.setattr(fast_tiles, "_TILE", fast_tiles.re.compile("(?!)"))
    with make_client(serve_world) as client:
        routed = client.get(TILE)
        assert routed.status_code == 200 and routed.content == fast.content


def test_fast_path_is_behind_the_token(serve_world):
    with make_client(serve_world, token="s3cret") as guarded:
        assert guarded.get(TILE).status_code == 401
        granted = guarded.get(TILE, headers={"Authorization": "Bearer s3cret"})
        assert granted.status_code == 200 and granted.content[:2] == b"\xff\xd8"


def test_errors_come_from_the_route(serve_world):
    with make_client(serve_world) as client:
        for url, status in (("/slides/case_files/11/99_0.jpeg", 404),  # outside the level
                            ("/slides/case_files/12/0_0.jpeg", 404),  # no such level
                            ("/slides/nosuch_files/0/0_0.jpeg", 404),
                            ("/slides/case_files/11/x_0.jpeg", 422)):  # not a number
            response = client.get(url)
            assert response.status_code == status, url
            assert "detail" in response.json(), url
        assert "outside level 11" in client.get("/slides/case_files/11/99_0.jpeg").text
        # Only GET takes the fast path; the route refuses other methods as before.
        assert client.post(TILE).status_code == 405


def test_a_cached_tile_makes_no_file_system_call(serve_world, monkeypatch):
    real_resolve, resolved = Path.resolve, []

    def counted(self, *args, **kwargs):
        resolved.append(self)
        return real_resolve(self, *args, **kwargs)

    with make_client(serve_world) as client:
        monkeypatch.setattr(Path, "resolve", counted)
        first = client.get(TILE)
        assert first.status_code == 200
        assert resolved  # a tile not yet cached: its slide checked against the roots
        resolved.clear()
        again = client.get(TILE)
        assert again.status_code == 200 and again.content == first.content
        assert resolved == []


def test_tile_threads_default_to_the_cores(serve_world):
    app = create_app(ServeSettings(roots=[serve_world.slides]))
    assert app.state.histotile.tile_pool._max_workers == thread_budget()
    app = create_app(ServeSettings(roots=[serve_world.slides], tile_threads=3))
    assert app.state.histotile.tile_pool._max_workers == 3
    assert "/slides/{slide}_files/{level}/{col}_{row}.jpeg" in app.openapi()["paths"]
