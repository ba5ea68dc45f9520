"""``histotile serve`` in a real browser (Debian's chromium through Playwright): the slide
list, the viewer drawing the slide and the heatmap where the predictions are positive
(checked on screenshots), the live threshold, the probe, and the classify page."""

from __future__ import annotations

import io
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from serve_fixtures import CASE_SIZE

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run"]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(),
                       reason="Debian's chromium is not installed at /usr/bin/chromium "
                              "(make test installs it: apt-get install -y chromium)"),
]


@pytest.fixture(scope="module")
def server(serve_world):
    """The app on a free loopback port in a thread; stopped after the module."""
    import uvicorn

    from histotile.workflows.serve import ServeSettings, create_app
    from histotile.workflows.serve.static_files import VENDOR

    assert VENDOR.is_file(), f"{VENDOR} is missing: run 'make vendor' (npm pack openseadragon)"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = ServeSettings(roots=[serve_world.slides], results=serve_world.results,
                             model=serve_world.model, port=port)
    config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=port,
                            log_level="warning")
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 300  # a hang bound only: a loaded machine starts slowly
    while not uv.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert uv.started, "the server did not start"
    yield f"http://127.0.0.1:{port}"
    uv.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser():
    playwright_api = pytest.importorskip("playwright.sync_api")
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    """Screenshots kept as test artefacts (pytest's temporary folder, printed at the end
    of the module)."""
    folder = tmp_path_factory.mktemp("screenshots")
    yield folder
    print(f"\nserve screenshots: {folder}")


def yellow_share(png: bytes, box: tuple[float, float, float, float]) -> float:
    """Share of pixels in ``box`` (x0, y0, x1, y1 screen px) of the overlay's colour:
    viridis' top (253, 231, 37) blended over the slide leaves green far above blue,
    which neither H&E stain (pink, purple) nor the white background does."""
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    region = pixels[max(y0, 0):y1, max(x0, 0):x1]
    return float(((region[..., 1] - region[..., 2]) > 60).mean())


def blue_share(png: bytes, box: tuple[float, float, float, float]) -> float:
    """Share of pixels in ``box`` of the outline's blue (0, 114, 178): far bluer than red,
    which no H&E colour is (purple nuclei have blue - red < 60)."""
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    region = pixels[max(y0, 0):y1, max(x0, 0):x1]
    return float(((region[..., 2] - region[..., 0]) > 120).mean())


def screen_box(page, x0: float, y0: float, x1: float, y1: float) -> tuple[float, ...]:
    """A level-0 image box in the stage's screenshot pixels."""
    return tuple(page.evaluate(
        """([x0, y0, x1, y1]) => {
            const v = window.histotileViewer.viewer.viewport;
            const a = v.imageToViewerElementCoordinates(new OpenSeadragon.Point(x0, y0));
            const b = v.imageToViewerElementCoordinates(new OpenSeadragon.Point(x1, y1));
            return [a.x, a.y, b.x, b.y];
        }""", [x0, y0, x1, y1]))


def test_slide_list_viewer_and_heatmap(server, browser, shots):
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(server + "/")
    page.wait_for_selector("#slides tbody tr[data-slide='case']")
    row = page.inner_text("#slides tbody tr[data-slide='case']")
    assert "negative" in row and "50.0 %" in row and "192" in row and "0.800" in row
    page.click("th[data-key='tiles']")  # sortable: ascending tiles, missing ones last
    assert page.get_attribute("th[data-key='tiles']", "aria-sort") == "ascending"
    page.screenshot(path=shots / "slide-list.png")

    page.click("a[href='/view/case']")
    page.wait_for_function("""() => { const h = window.histotileViewer;
        return h && h.ready && h.viewer.world.getItemCount() &&
               h.viewer.world.getItemAt(0).getFullyLoaded() && h.overlayDrawn > 0 &&
               !document.getElementById('heatmap-controls').disabled; }""", timeout=300_000)
    page.wait_for_function(SETTLED, timeout=300_000)
    width, height = CASE_SIZE
    stage = page.locator("#stage")
    left = screen_box(page, 64, 64, width / 2 - 64, height - 64)
    right = screen_box(page, width / 2 + 64, 64, width - 64, height - 64)
    shown = stage.screenshot(path=shots / "viewer-heatmap.png")
    assert yellow_share(shown, left) > 0.8, "the heatmap is missing where tiles are positive"
    assert yellow_share(shown, right) < 0.02, "the heatmap shows where tiles are negative"
    assert "µm" in page.inner_text("#scalebar")  # the slide has mpp

    page.mouse.move(*(stage.bounding_box()[k] for k in ("x", "y")))
    centre = screen_box(page, 300, 300, 300, 300)
    box = stage.bounding_box()
    page.mouse.move(box["x"] + centre[0], box["y"] + centre[1])
    page.wait_for_function("() => document.getElementById('probe').textContent"
                           ".includes('haematoxylin: 0.900')")

    page.fill("#threshold", "0.95")  # above every tile's 0.9: nothing left to show
    page.dispatch_event("#threshold", "input")
    raised = stage.screenshot(path=shots / "viewer-threshold-095.png")
    assert yellow_share(raised, left) < 0.02
    page.fill("#threshold", "0.5")
    page.dispatch_event("#threshold", "input")

    page.uncheck("#heatmap-toggle")
    hidden = stage.screenshot(path=shots / "viewer-heatmap-off.png")
    assert yellow_share(hidden, left) < 0.02, "the heatmap stayed after toggling it off"
    slide_pixels = np.asarray(Image.open(io.BytesIO(hidden)).convert("RGB"))
    assert slide_pixels.std() > 10  # the slide itself is still drawn
    page.check("#heatmap-toggle")
    again = stage.screenshot()
    assert yellow_share(again, left) > 0.8

    # The annotation (a GeoJSON outline of x 100-900) as a second layer: blue lines.
    page.uncheck("#heatmap-toggle")
    page.check("#annotation-toggle")
    outline = stage.screenshot(path=shots / "viewer-annotation.png")
    edge = screen_box(page, 860, 300, 940, 1200)
    inside = screen_box(page, 300, 300, 700, 1200)
    assert blue_share(outline, edge) > 0.05 and blue_share(outline, inside) < 0.01
    page.uncheck("#annotation-toggle")
    assert blue_share(stage.screenshot(), edge) < 0.01
    assert errors == []
    page.close()


def _submit_dense_nuclei(server, browser, tmp_path):
    """The classify page with an image of six nuclei-dense patches submitted."""
    from histotile.models.synthetic import stain_tiles

    tiles = stain_tiles(["haematoxylin"] * 6, 64, np.random.default_rng(3))
    image = tiles.reshape(2, 3, 64, 64, 3).transpose(0, 2, 1, 3, 4).reshape(128, 192, 3)
    upload = tmp_path / "dense-nuclei.png"
    Image.fromarray(image).save(upload)
    page = browser.new_page(viewport={"width": 1100, "height": 700})
    page.goto(server + "/classify")
    page.wait_for_function("() => document.getElementById('model-note').textContent"
                           ".includes('haematoxylin')")
    page.set_input_files("#file", str(upload))
    page.click("#submit")
    return page


def test_classify_page_reads_the_verdict(server, browser, shots, tmp_path):
    page = _submit_dense_nuclei(server, browser, tmp_path)
    page.wait_for_function("() => document.getElementById('verdict').dataset.label !== ''",
                           timeout=300_000)
    assert page.get_attribute("#verdict", "data-label") == "haematoxylin"
    assert "patches" in page.inner_text("#verdict")
    page.fill("#threshold", "1")  # no patch reaches 1.0: the verdict flips live
    page.dispatch_event("#threshold", "input")
    assert page.get_attribute("#verdict", "data-label") == "eosin"
    page.fill("#threshold", "0.5")
    page.dispatch_event("#threshold", "input")
    page.screenshot(path=shots / "classify.png")

    page.set_input_files("#file", {"name": "notes.png", "mimeType": "image/png",
                                   "buffer": b"not an image at all"})
    page.click("#submit")
    page.wait_for_function("() => document.getElementById('error').textContent"
                           ".includes('415')")
    page.close()


# The viewport at rest (its springs at their targets) and the overlay drawn there: what a
# screenshot of the stage may be compared with, however slowly the machine animates.
SETTLED = """() => { const v = window.histotileViewer.viewer.viewport;
    const now = v.getCenter(true), goal = v.getCenter(false);
    return v.getZoom(true) === v.getZoom(false) && now.x === goal.x && now.y === goal.y &&
           !window.histotileViewer.viewer.world.needsDraw(); }"""


def console_errors(page) -> list[str]:
    """Console errors and uncaught exceptions of ``page`` from now on (a list it fills)."""
    found: list[str] = []
    page.on("console", lambda m: found.append(f"console: {m.text}") if m.type == "error"
            else None)
    page.on("pageerror", lambda error: found.append(f"page: {error}"))
    return found


def open_viewer(browser, server):
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    errors = console_errors(page)
    page.goto(server + "/view/case")
    page.wait_for_function("""() => { const h = window.histotileViewer;
        return h && h.ready && h.drawn && h.overlayDrawn > 0 &&
               h.viewer.world.getItemAt(0).getFullyLoaded() &&
               !document.getElementById('heatmap-controls').disabled; }""", timeout=300_000)
    page.wait_for_function(SETTLED, timeout=300_000)
    return page, errors


def orange_share(png: bytes, box: tuple[float, float, float, float]) -> float:
    """Share of pixels in ``box`` of the kept tile's outline (213, 94, 0): red far above
    green and blue, which neither viridis, H&E nor white is."""
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    region = pixels[max(y0, 0):y1, max(x0, 0):x1]
    return float(((region[..., 0] - region[..., 1] > 80) & (region[..., 2] < 60)).mean())


def test_click_keeps_a_tile_and_the_opacity_label_follows(server, browser, shots):
    page, errors = open_viewer(browser, server)
    stage = page.locator("#stage")
    box = stage.bounding_box()
    zoom = page.evaluate("() => window.histotileViewer.viewer.viewport.getZoom()")
    # Tile (256, 256)-(384, 384) holds image point (300, 300); click its centre.
    x, y = screen_box(page, 320, 320, 320, 320)[:2]
    page.mouse.click(box["x"] + x, box["y"] + y)
    page.wait_for_function("() => document.getElementById('probe').textContent"
                           ".includes('tile at (256, 256)')")
    page.wait_for_timeout(300)  # any zoom animation a click would start
    assert page.evaluate("() => window.histotileViewer.viewer.viewport.getZoom()") == \
        pytest.approx(zoom), "a click zoomed instead of keeping the tile"
    kept = stage.screenshot(path=shots / "viewer-kept-tile.png")
    outline = screen_box(page, 250, 250, 390, 390)
    inside = screen_box(page, 275, 275, 365, 365)
    assert orange_share(kept, outline) > 0.03 and orange_share(kept, inside) < 0.01
    # The probe stays on the kept tile while the pointer moves to a negative tile.
    far = screen_box(page, 1700, 1200, 1700, 1200)
    page.mouse.move(box["x"] + far[0], box["y"] + far[1])
    page.wait_for_timeout(200)
    assert "tile at (256, 256)" in page.inner_text("#probe")
    assert "haematoxylin: 0.900" in page.inner_text("#probe")

    page.fill("#opacity", "0.3")
    page.dispatch_event("#opacity", "input")
    assert page.inner_text("#opacity-value") == "0.30"
    assert errors == []
    page.close()


# What each page shows once its first requests are answered (not Playwright's
# "networkidle", which its authors call flaky: it timed out here twice, at 30 s and at
# 300 s, in fresh clones under load, with no request of these pages left to answer).
PAGE_READY = {
    "/": "() => !document.getElementById('slides').hidden",
    "/classify": "() => document.getElementById('model-note').textContent.startsWith('Model ')",
    "/view/case": """() => { const h = window.histotileViewer;
        return h.drawn && h.viewer.world.getItemAt(0).getFullyLoaded() &&
               !document.getElementById('heatmap-controls').disabled; }""",
    "/view/plain": """() => { const h = window.histotileViewer;
        return h.drawn && h.viewer.world.getItemAt(0).getFullyLoaded() &&
               !document.getElementById('job-controls').hidden; }""",
}


def pending_requests(page) -> set:
    """The requests ``page`` made and has no answer to yet (a set kept up to date; two
    requests of one URL are two entries)."""
    pending: set = set()
    page.on("request", lambda request: pending.add(request))
    page.on("requestfinished", lambda request: pending.discard(request))
    page.on("requestfailed", lambda request: pending.discard(request))
    return pending


def test_no_console_error_on_any_page(server, browser):
    for path, ready in PAGE_READY.items():
        page = browser.new_page()
        errors = console_errors(page)
        pending = pending_requests(page)
        page.goto(server + path)
        # Bounds for a hang only: a loaded machine draws slowly.
        page.wait_for_function(ready, timeout=300_000)
        for _ in range(3000):
            if not pending:
                break
            page.wait_for_timeout(100)
        assert not pending, (f"{path}: requests never answered: "
                             f"{sorted(r.url for r in pending)}")
        assert errors == [], f"{path}: {errors}"
        page.close()


def test_classify_table_follows_the_threshold(server, browser, tmp_path):
    page = _submit_dense_nuclei(server, browser, tmp_path)
    page.wait_for_selector("#class-table tr[data-class='haematoxylin']", timeout=300_000)
    patches = len(page.evaluate("() => result.probabilities"))

    def won(name: str) -> str:
        return page.inner_text(f"#class-table tr[data-class='{name}'] td:nth-child(3)")

    for threshold, positive in (("1", 0), ("0", patches)):
        page.fill("#threshold", threshold)
        page.dispatch_event("#threshold", "input")
        assert won("haematoxylin").startswith(f"{positive} of {patches}")
        assert won("eosin").startswith(f"{patches - positive} of {patches}")
    page.close()
