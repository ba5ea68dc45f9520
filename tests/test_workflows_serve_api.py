"""``histotile serve`` through its HTTP API (FastAPI's TestClient): the slide list and
metadata, Deep Zoom tiles, predictions for the overlay, classification, TF-Serving
``:predict``, jobs, and the security rules (roots only, token, limits)."""

from __future__ import annotations

import base64
import io
import os
import re
import time

import cv2
import numpy as np
import pytest
from PIL import Image

from histotile.errors import ConfigError
from histotile.models.synthetic import stain_tiles
from histotile.workflows.serve import ServeSettings, create_app
from histotile.workflows.serve.tiles import TileCache
from histotile.wsi import open_slide

fastapi_testclient = pytest.importorskip("fastapi.testclient")


def make_client(world, **options):
    settings = ServeSettings(roots=[world.slides], results=world.results, model=world.model,
                             **options)
    return fastapi_testclient.TestClient(create_app(settings))


@pytest.fixture(scope="module")
def client(serve_world):
    with make_client(serve_world) as test_client:
        yield test_client


def png_bytes(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


def stain_image(label: str, seed: int = 0) -> np.ndarray:
    """A 192 x 128 px image made of 64-px tiles of one class."""
    tiles = stain_tiles([label] * 6, 64, np.random.default_rng(seed))
    return tiles.reshape(2, 3, 64, 64, 3).transpose(0, 2, 1, 3, 4).reshape(128, 192, 3)


def test_slide_list_reads_the_results_folder(client):
    slides = {s["name"]: s for s in client.get("/api/slides").json()}
    assert set(slides) == {"case", "plain", "stainjob"}
    case = slides["case"]
    assert case["has_results"] and case["tiles"] == 192 and case["fraction"] == 0.5
    assert case["positive"] is False and case["decision"].startswith("negative")
    assert (case["sensitivity"], case["specificity"]) == (0.8, 0.75)
    assert slides["plain"]["has_results"] is False and slides["plain"]["decision"] is None


def test_slide_detail_has_levels_and_mpp_but_no_path(client):
    detail = client.get("/api/slides/case").json()
    assert detail["dimensions"] == [2048, 1536] and detail["mpp"] == pytest.approx(0.5)
    assert len(detail["levels"]) == 3 and "path" not in detail
    assert detail["results"]["positive_class"] == "haematoxylin"
    assert detail["annotation"] == "geojson"
    outline = client.get("/api/slides/case/annotation").json()
    assert outline["features"][0]["geometry"]["coordinates"][0][1] == [900, 100]
    assert client.get("/api/slides/plain/annotation").status_code == 404


def test_mask_annotations_are_coloured_per_class(tmp_path):
    from histotile.workflows.serve.tiles import thumbnail_png

    mask = np.zeros((40, 60), np.uint8)
    mask[:, 30:] = 1
    cv2.imwrite(str(tmp_path / "s.mask.png"), mask)
    layer = np.asarray(Image.open(io.BytesIO(thumbnail_png(tmp_path / "s.mask.png"))))
    assert layer.shape == (40, 60, 4)
    assert (layer[:, :30, 3] == 0).all() and (layer[:, 31:, 3] == 255).all()
    assert tuple(layer[0, 59, :3]) == (230, 159, 0)


def test_positive_class_comes_from_the_card():
    from histotile.workflows.serve.results import default_positive

    classes = ["normal", "tumour", "other"]
    assert default_positive(classes, {"positive_class": "tumour"}) == "tumour"
    assert default_positive(classes, {"training": {"positive_class": "normal"}}) == "normal"
    assert default_positive(classes, {"positive_class": "missing"}) == "other"
    assert default_positive(classes, None) == "other"


def test_deep_zoom_tiles_match_the_slide(client, serve_world):
    dzi = client.get("/slides/case.dzi")
    assert dzi.status_code == 200 and dzi.headers["content-type"].startswith("application/xml")
    width = int(re.search(r'Width="(\d+)"', dzi.text).group(1))
    assert width == 2048 and 'TileSize="254"' in dzi.text and 'Overlap="1"' in dzi.text
    top = 11  # 2048 px wide: Deep Zoom levels 0..11, the last at full resolution
    response = client.get(f"/slides/case_files/{top}/1_1.jpeg")
    assert response.status_code == 200 and response.headers["content-type"] == "image/jpeg"
    tile = np.asarray(Image.open(io.BytesIO(response.content)).convert("RGB"))
    assert tile.shape == (256, 256, 3)  # 254 + one overlap pixel on each side
    with open_slide(serve_world.slides / "case.tif") as slide:
        expected = slide.read_region((253, 253), 0, (256, 256))
    assert np.abs(tile.astype(int) - expected.astype(int)).mean() < 6  # JPEG, not exact
    whole = client.get("/slides/case_files/0/0_0.jpeg")  # the 1 x 1 px top of the pyramid
    assert Image.open(io.BytesIO(whole.content)).size == (1, 1)


def test_plain_images_get_the_same_pyramid(client, serve_world):
    dzi = client.get("/slides/plain.dzi").text
    assert 'Width="400"' in dzi and 'Height="300"' in dzi
    tile = client.get("/slides/plain_files/9/1_0.jpeg")  # level 9: full 400 x 300 px
    assert tile.status_code == 200
    pixels = np.asarray(Image.open(io.BytesIO(tile.content)).convert("RGB")).astype(int)
    source = cv2.cvtColor(cv2.imread(str(serve_world.slides / "plain.png")), cv2.COLOR_BGR2RGB)
    assert pixels.shape == (255, 147, 3)  # first row: 254 + 1 overlap; 400 - 253 columns
    assert np.abs(pixels - source[:255, 253:400].astype(int)).mean() < 25


def test_tiles_outside_the_pyramid_are_404(client):
    for url in ("/slides/case_files/12/0_0.jpeg", "/slides/case_files/11/9_0.jpeg",
                "/slides/case_files/11/0_7.jpeg", "/slides/case_files/-1/0_0.jpeg"):
        assert client.get(url).status_code == 404, url


def test_tile_cache_is_bounded_and_hit(client):
    cache = client.app.state.histotile.tiles.cache
    client.get("/slides/case_files/10/0_0.jpeg")
    hits = cache.hits
    assert client.get("/slides/case_files/10/0_0.jpeg").status_code == 200
    assert cache.hits == hits + 1
    small = TileCache(100)
    for i in range(10):
        small.put((i,), bytes(30))
    assert small.size_bytes <= 100 and len(small) == 3 and small.get((0,)) is None


def test_names_outside_the_roots_are_404_without_touching_files(serve_world, monkeypatch):
    link = serve_world.slides / "escape.png"
    if not link.exists():
        os.symlink(serve_world.outside, link)
    opened = []
    import histotile.workflows.serve.tiles as tiles_module

    real_open = tiles_module.open_slide
    monkeypatch.setattr(tiles_module, "open_slide", lambda p: opened.append(p) or real_open(p))
    with make_client(serve_world) as fresh:
        for name in ("escape", "outside", "..", "%2e%2e", "..%2Foutside", "%2Fetc%2Fpasswd",
                     "..%2F..%2Foutside", "case.tif", "nothing"):
            for url in (f"/slides/{name}.dzi", f"/slides/{name}_files/0/0_0.jpeg",
                        f"/api/slides/{name}"):
                assert fresh.get(url).status_code == 404, url
        assert "escape" not in {s["name"] for s in fresh.get("/api/slides").json()}
        assert fresh.post("/api/runs", json={"slide": "../outside"}).status_code == 404
    assert opened == []
    link.unlink()


def test_predictions_for_the_overlay(client):
    data = client.get("/api/slides/case/predictions").json()
    assert data["classes"] == ["eosin", "haematoxylin"]
    assert data["positive_class"] == "haematoxylin" and len(data["x"]) == 192
    left = [p for x, p in zip(data["x"], data["probabilities"]["haematoxylin"]) if x < 1024]
    assert min(left) == pytest.approx(0.9)
    assert client.get("/api/slides/plain/predictions").status_code == 404


def test_classify_cuts_patches_like_training_and_decides(client):
    model = client.get("/api/model").json()
    assert model["classes"] == ["eosin", "haematoxylin"] and model["patch_size"] == 64
    step = model["step"]
    for label in ("haematoxylin", "eosin"):
        response = client.post("/api/classify", data={"threshold": "0.5"},
                               files={"file": (f"{label}.png", png_bytes(stain_image(label)),
                                               "image/png")})
        assert response.status_code == 200, response.text
        body = response.json()
        columns, rows = (192 - 64) // step + 1, (128 - 64) // step + 1
        assert len(body["probabilities"]) == columns * rows
        assert body["probabilities"][1]["box"] == [step, 0, 64, 64]
        assert body["decision"]["label"] == label, body["decision"]
        assert sum(body["fraction"].values()) == pytest.approx(1.0)


def test_classify_refuses_bad_uploads(serve_world):
    with make_client(serve_world, max_upload_mb=0.05, max_pixels=200 * 200) as limited:
        def post(name, data):
            return limited.post("/api/classify", files={"file": (name, data, "image/png")})

        assert post("notes.png", b"just some text, not an image").status_code == 415
        whole = png_bytes(stain_image("eosin"))
        damaged = post("cut.png", whole[: len(whole) // 2])
        assert damaged.status_code == 422 and "cut.png" in damaged.json()["detail"]
        big = png_bytes(np.zeros((300, 300, 3), np.uint8))
        assert post("big.png", big).status_code == 413  # 90,000 px over 40,000
        noise = np.random.default_rng(0).integers(0, 255, (150, 150, 3), dtype=np.uint8)
        assert post("heavy.png", png_bytes(noise)).status_code == 413  # 67 kB over 51 kB
        small = post("small.png", png_bytes(np.zeros((32, 32, 3), np.uint8)))
        assert small.status_code == 422 and "smaller than one" in small.json()["detail"]
        assert limited.get("/api/slides").status_code == 200  # the server lives on


def test_tensorflow_serving_predict(client):
    name = client.get("/api/model").json()["name"]
    images = [base64.b64encode(png_bytes(stain_image(label))).decode()
              for label in ("eosin", "haematoxylin")]
    response = client.post(f"/v1/models/{name}:predict",
                           json={"instances": [images[0], {"b64": images[1]}]})
    assert response.status_code == 200, response.text
    predictions = np.array(response.json()["predictions"])
    assert predictions.shape == (2, 2) and np.allclose(predictions.sum(axis=1), 1, atol=1e-4)
    assert predictions[0, 0] > 0.5 and predictions[1, 1] > 0.5
    assert client.get(f"/v1/models/{name}").json()["model_version_status"][0]["state"] == \
        "AVAILABLE"
    assert client.post("/v1/models/other:predict",
                       json={"instances": images}).status_code == 404
    assert client.post(f"/v1/models/{name}:predict",
                       json={"instances": ["not base64!"]}).status_code == 422


def test_jobs_run_a_served_slide_and_the_list_shows_it(client):
    started = client.post("/api/runs", json={"slide": "stainjob"})
    assert started.status_code == 202, started.text
    job = started.json()
    deadline = time.monotonic() + 600  # a hang bound, not a timing assertion
    while time.monotonic() < deadline:
        job = client.get(f"/api/runs/{job['id']}").json()
        if job["state"] in ("done", "failed"):
            break
        time.sleep(0.2)
    assert job["state"] == "done", job["error"]
    slides = {s["name"]: s for s in client.get("/api/slides").json()}
    overlay = client.get("/api/slides/stainjob/predictions")
    assert overlay.status_code == 200
    # Every tissue tile of the 6 x 5 grid, less those the artefact checks drop.
    assert slides["stainjob"]["has_results"]
    assert 20 <= slides["stainjob"]["tiles"] == len(overlay.json()["x"]) <= 30
    # The job followed the tiles as they were classified: every candidate tile counted.
    assert job["tiles_done"] == job["tiles_total"] >= slides["stainjob"]["tiles"]
    assert job["stage"] == "finished"
    assert client.post("/api/runs", json={"slide": "nosuch"}).status_code == 404


def test_a_job_reports_its_stage_and_tiles():
    from histotile.workflows.serve.jobs import Job

    job = Job(id="job1", slide="case")
    job.report("predicting", 0, 0)
    assert job.stage == "predicting" and job.tiles_total is None
    job.report("predicting", 1024, 4096)
    assert job.stage == "predicting: 1,024 of 4,096 tiles"
    assert (job.to_dict()["tiles_done"], job.to_dict()["tiles_total"]) == (1024, 4096)
    job.report("heatmap", 0, 0)
    assert job.stage == "heatmap" and job.tiles_done == 1024


def test_token_is_required_when_set(serve_world):
    with make_client(serve_world, token="s3cret") as guarded:
        assert guarded.get("/api/slides").status_code == 401
        assert guarded.get("/openapi.json").status_code == 401
        assert guarded.get("/api/slides", headers={"Authorization": "Bearer s3cret"}
                           ).status_code == 200
        assert guarded.get("/api/slides", headers={"Authorization": "Bearer nope"}
                           ).status_code == 401
        page = guarded.get("/?token=s3cret")
        assert page.status_code == 200 and "histotile_token" in page.headers["set-cookie"]
        assert guarded.get("/api/slides").status_code == 200  # the cookie now


def test_listening_beyond_loopback_needs_a_token_or_insecure(serve_world):
    with pytest.raises(ConfigError, match="--token"):
        ServeSettings(roots=[serve_world.slides], host="0.0.0.0").validate()
    ServeSettings(roots=[serve_world.slides], host="0.0.0.0", token="t").validate()
    ServeSettings(roots=[serve_world.slides], host="0.0.0.0", insecure=True).validate()
    with pytest.raises(ConfigError, match="unknown serve setting"):
        ServeSettings.from_dict({"roots": [], "colour": "red"})


def test_pages_are_served_with_security_headers(client):
    for url in ("/", "/view/case", "/classify", "/static/viewer.js",
                "/static/vendor/openseadragon/openseadragon.min.js"):
        response = client.get(url)
        assert response.status_code == 200, url
        assert response.headers["x-content-type-options"] == "nosniff"
    assert "script-src 'self'" in client.get("/").headers["content-security-policy"]
    assert client.get("/view/nosuch").status_code == 404


def test_cli_refuses_an_open_host_without_a_token(serve_world):
    from click.testing import CliRunner

    from histotile.workflows.cli.main import cli

    result = CliRunner().invoke(cli, ["serve", str(serve_world.slides), "--host", "0.0.0.0"])
    assert result.exit_code == 2 and "--token" in result.output
    result = CliRunner().invoke(cli, ["serve", str(serve_world.root / "nowhere")])
    assert result.exit_code == 2 and "nowhere" in result.output
