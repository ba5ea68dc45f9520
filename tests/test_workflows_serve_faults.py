"""``histotile serve``: the faults of issue 23 each kept as a test (names with spaces,
brackets and non-ASCII letters, HEAD, 405's ``Allow``, float TIFF uploads, class fractions
at the threshold, the token out of the address bar, the ``Secure`` cookie, run jobs at a
level and what a failed one leaves), and uploads fuzzed with Hypothesis: each is decoded
or refused with histotile's own error and a 4xx status, never anything else."""

from __future__ import annotations

import io
import struct
import zlib
from urllib.parse import quote

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from histotile.errors import HistotileError
from histotile.workflows.serve import ServeSettings, create_app
from histotile.workflows.serve.classify import ImageRefused, decode_image

fastapi_testclient = pytest.importorskip("fastapi.testclient")

ODD_NAMES = ["a b", "Prüfung", "x[1]", "(y)", "[z]", "tumour #3", "50%", "a+b", "日本"]


def png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def odd_client(tmp_path_factory):
    root = tmp_path_factory.mktemp("odd-names")
    pixels = np.random.default_rng(0).integers(0, 256, (300, 400, 3), np.uint8)
    for name in ODD_NAMES:
        (root / f"{name}.png").write_bytes(png(pixels))
    (root / ".hidden.png").write_bytes(png(pixels))
    with fastapi_testclient.TestClient(create_app(ServeSettings(roots=[root]))) as client:
        yield client


@pytest.mark.parametrize("name", ODD_NAMES)
def test_names_with_spaces_brackets_and_letters_are_served(odd_client, name):
    assert name in {s["name"] for s in odd_client.get("/api/slides").json()}
    quoted = quote(name, safe="")
    for path in (f"/api/slides/{quoted}", f"/slides/{quoted}.dzi", f"/view/{quoted}",
                 f"/slides/{quoted}_files/0/0_0.jpeg"):
        assert odd_client.get(path).status_code in (200, 503), path  # 503: no viewer files
    assert odd_client.get(f"/api/slides/{quoted}").json()["name"] == name


@pytest.mark.parametrize("path", ["/api/slides/..", "/api/slides/%2e%2e",
                                  "/api/slides/.hidden", "/slides/..%2F..%2Fetc.dzi",
                                  "/api/slides/a%20b%2F..", "/view/%00"])
def test_traversal_and_hidden_names_stay_404(odd_client, path):
    assert odd_client.get(path).status_code == 404


@pytest.mark.parametrize("path", ["/api/slides", "/api/slides/a%20b", "/slides/a%20b.dzi",
                                  "/slides/a%20b_files/0/0_0.jpeg", "/", "/favicon.ico",
                                  "/static/style.css", "/openapi.json"])
def test_head_is_answered_like_get(odd_client, path):
    get, head = odd_client.get(path), odd_client.head(path)
    assert get.status_code == head.status_code == 200
    assert head.content == b""
    assert head.headers == get.headers  # content-length and type included


def test_405_lists_every_method_of_the_path(serve_world):
    with fastapi_testclient.TestClient(create_app(ServeSettings(
            roots=[serve_world.slides], results=serve_world.results,
            model=serve_world.model))) as client:
        put = client.put("/api/runs")
        assert put.status_code == 405 and put.headers["allow"] == "GET, HEAD, POST"
        options = client.options(f"/v1/models/{serve_world.model.name}:predict")
        assert options.status_code == 405 and options.headers["allow"] == "POST"
        assert client.get("/api/classify").headers["allow"] == "POST"
        assert "detail" in put.json()


def test_favicon_is_an_icon(odd_client):
    icon = odd_client.get("/favicon.ico")
    assert icon.headers["content-type"] == "image/x-icon"
    assert Image.open(io.BytesIO(icon.content)).size == (32, 32)


@pytest.fixture(scope="module")
def client(serve_world):
    settings = ServeSettings(roots=[serve_world.slides], results=serve_world.results,
                             model=serve_world.model)
    with fastapi_testclient.TestClient(create_app(settings)) as test_client:
        yield test_client


def stain_image(label: str) -> np.ndarray:
    from histotile.models.synthetic import stain_tiles

    tiles = stain_tiles([label] * 6, 64, np.random.default_rng(0))
    return tiles.reshape(2, 3, 64, 64, 3).transpose(0, 2, 1, 3, 4).reshape(128, 192, 3)


@pytest.mark.parametrize("dtype", ["float32", "uint16"])
def test_float_and_16_bit_tiff_uploads_are_classified(client, dtype):
    import tifffile

    pixels = stain_image("haematoxylin").astype(dtype)
    if dtype == "uint16":
        pixels = pixels * 257
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, pixels, photometric="rgb")
    answer = client.post("/api/classify", files={"file": ("s.tif", buffer.getvalue())})
    assert answer.status_code == 200, answer.text
    assert answer.json()["image"] == {"width": 192, "height": 128}


def test_class_fractions_follow_the_threshold(client):
    image = png(stain_image("haematoxylin"))
    for threshold in (0.0, 0.4, 0.95, 1.0):
        result = client.post("/api/classify", files={"file": ("s.png", image)},
                             data={"threshold": str(threshold)}).json()
        fraction = result["fraction"]
        assert fraction["haematoxylin"] == result["decision"]["positive_fraction"]
        assert sum(fraction.values()) == pytest.approx(1.0)
    assert fraction["eosin"] == 1.0  # at 1.0 no patch is positive: all count for eosin


def test_the_token_leaves_the_address_bar_and_the_cookie_is_secure_over_https(serve_world):
    settings = ServeSettings(roots=[serve_world.slides], token="s3cret")
    with fastapi_testclient.TestClient(create_app(settings), follow_redirects=False) as c:
        html = {"accept": "text/html,application/xhtml+xml"}
        page = c.get("/view/case?token=s3cret&x=1", headers=html)
        assert page.status_code == 303 and page.headers["location"] == "/view/case?x=1"
        assert "histotile_token=s3cret" in page.headers["set-cookie"]
        assert "secure" not in page.headers["set-cookie"].lower()
        proxied = c.get("/?token=s3cret", headers={**html, "x-forwarded-proto": "https"})
        assert proxied.headers["location"] == "/"
        assert "; Secure" in proxied.headers["set-cookie"]
        api = c.get("/api/slides?token=s3cret")  # a script: answered, no redirect
        assert api.status_code == 200


def test_the_redirect_never_leaves_the_server():
    from histotile.workflows.serve.security import _without_token

    scope = {"path": "//evil.example/x", "query_string": b"token=t&a=%C3%BC"}
    assert _without_token(scope) == b"/evil.example/x?a=%C3%BC"
    assert _without_token({"path": "/view/50% [1]", "query_string": b"token=t"}) == \
        b"/view/50%25%20[1]"


def test_a_failed_job_says_why_and_leaves_no_folder(client, serve_world):
    import time

    job = client.post("/api/runs", json={"slide": "plain", "level": 7}).json()
    # Polled until it ends; the 10-min bound only matters when the job hangs (30 s was
    # too short for a fresh clone's suite under load: the job was still running).
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        job = client.get(f"/api/runs/{job['id']}").json()
        if job["state"] in ("done", "failed"):
            break
        time.sleep(0.05)
    assert job["state"] == "failed" and "level" in job["error"].lower()
    assert not (serve_world.results / "plain").exists()
    both = client.post("/api/runs", json={"slide": "plain", "level": 0, "magnification": 20})
    assert both.status_code == 422


# -- uploads fuzzed: decoded, or refused with histotile's error and a 4xx ----------------

def _png_header(width: int, height: int) -> bytes:
    """A PNG that claims ``width`` x ``height`` px and holds almost nothing."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk
            + struct.pack(">I", zlib.crc32(chunk)) + b"\0\0\0\0IEND\xaeB`\x82")


def _tiff_header(width: int, height: int) -> bytes:
    """A little-endian TIFF whose one page claims ``width`` x ``height`` px."""
    entries = [(256, 4, 1, width), (257, 4, 1, height), (258, 3, 1, 8), (259, 3, 1, 1),
               (262, 3, 1, 2), (273, 4, 1, 8), (277, 3, 1, 3), (279, 4, 1, 16)]
    ifd = struct.pack("<H", len(entries)) + b"".join(
        struct.pack("<HHII", *entry) for entry in entries) + b"\0\0\0\0"
    return b"II*\0" + struct.pack("<I", 24) + b"\0" * 16 + ifd


@st.composite
def uploads(draw) -> bytes:
    kind = draw(st.sampled_from(["bytes", "truncated", "huge", "tiff-bytes"]))
    if kind == "bytes":
        return draw(st.binary(max_size=512))
    if kind == "tiff-bytes":
        return draw(st.sampled_from([b"II*\0", b"MM\0*"])) + draw(st.binary(max_size=256))
    if kind == "huge":
        header = draw(st.sampled_from([_png_header, _tiff_header]))
        return header(draw(st.integers(1, 2**31 - 1)), draw(st.integers(1, 2**31 - 1)))
    pixels = np.full((40, 50, 3), draw(st.integers(0, 255)), np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, draw(st.sampled_from(["PNG", "JPEG", "TIFF"])))
    data = buffer.getvalue()
    return data[:draw(st.integers(0, len(data)))]


@settings(max_examples=1000, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(data=uploads())
def test_uploads_decode_or_are_refused_with_a_4xx(data):
    try:
        pixels = decode_image(data, "upload", 1_000_000)
    except ImageRefused as refused:
        assert isinstance(refused, HistotileError) and 400 <= refused.status < 500
        assert str(refused).startswith("upload: ")
        return
    assert pixels.dtype == np.uint8 and pixels.ndim == 3 and pixels.shape[2] == 3
