"""The documentation's pictures and the demo's figures, made from the bundled slide.

``make docs-images`` runs this. It runs ``histotile demo`` (the model and its figures),
then ``histotile run``, ``qc`` and ``explain`` on the bundled slide with that model, opens
``histotile serve`` in a headless Chromium, and writes into ``docs/``:

- ``images/viewer.png``: the web viewer with the demo model's heatmap;
- ``images/heatmap-preview.png``: the heatmap preview ``run`` writes;
- ``images/qc.png``: the quality-control picture ``qc`` writes;
- ``images/explanations.png``: the Grad-CAM gallery ``explain`` writes;
- ``generated/demo-summary.json``: the demo's ``summary.json`` (its figures, shown on the
  benchmark pages).

Each picture is scaled to at most ``--width`` px (the tall slide pictures to 70 % of it)
and stored with a 256-colour palette, so the committed PNGs stay small. The browser is
Debian's Chromium (``/usr/bin/chromium``, ``make chromium``) through Playwright; the server
listens on 127.0.0.1 on a free port in a thread of this process and stops with it. Needs
the test install (``make test`` or ``pip install -e '.[all,dev]'``).

    python scripts/docs_images.py [--work DIR] [--reuse] [--width 1000]
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "histotile" / "data"
SLIDE = "CMU-1-Small-Region"
IMAGES = ROOT / "docs" / "images"
SUMMARY = ROOT / "docs" / "generated" / "demo-summary.json"
PICTURES = ("viewer", "heatmap-preview", "qc", "explanations")
"""The pictures this script makes, as ``docs/images/<name>.png``: the only pictures in docs/."""
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking", "--disable-component-update",
                 "--no-first-run"]


def histotile(*args: str) -> None:
    """One ``histotile`` command of this checkout, stopping the script when it fails."""
    command = [sys.executable, "-m", "histotile", *args]
    print("$ histotile " + " ".join(args), flush=True)
    done = subprocess.run(command, cwd=ROOT)
    if done.returncode != 0:
        raise SystemExit(f"histotile {args[0]} failed (exit {done.returncode})")


def outputs(work: Path, reuse: bool) -> dict[str, Path]:
    """The demo, then run, qc and explain on the bundled slide; their files by name."""
    demo, slides = work / "demo", work / "slides"
    if not (reuse and (demo / "summary.json").is_file()):
        histotile("demo", "--out", str(demo), "--overwrite")
    slides.mkdir(parents=True, exist_ok=True)
    for name in (f"{SLIDE}.svs", f"{SLIDE}.overlay.png"):  # copies: serve follows no link
        shutil.copyfile(DATA / name, slides / name)
    model, results = demo / "model", work / "results"
    histotile("run", str(slides), "--model", str(model), "--out", str(results),
              "--mode", "continuous", "--overwrite")
    histotile("qc", str(slides), "--out", str(work / "qc"), "--overwrite")
    histotile("explain", str(slides), "--model", str(model), "--predictions", str(results),
              "--out", str(work / "why"), "--top", "4", "--overwrite")
    return {"summary": demo / "summary.json", "slides": slides, "model": model,
            "results": results, "heatmap-preview": results / SLIDE / "preview.png",
            "qc": work / "qc" / SLIDE / "qc.png",
            "explanations": work / "why" / SLIDE / "explanations.png"}


def small_png(source: Path | bytes, target: Path, width: int) -> None:
    """``source`` scaled to at most ``width`` px wide, as a 256-colour PNG."""
    import io

    from PIL import Image

    image = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
    image = image.convert("RGB")
    if image.width > width:
        image = image.resize((width, round(image.height * width / image.width)),
                             Image.Resampling.LANCZOS)
    target.parent.mkdir(parents=True, exist_ok=True)
    image.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(target, optimize=True)
    print(f"wrote {target.relative_to(ROOT)} ({target.stat().st_size // 1024} KiB)")


class Server:
    """``histotile serve``'s app on a free loopback port, in a daemon thread."""

    def __init__(self, slides: Path, results: Path, model: Path) -> None:
        import uvicorn

        from histotile.workflows.serve import ServeSettings, create_app

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        settings = ServeSettings(roots=[slides], results=results, model=model, port=self.port)
        self.server = uvicorn.Server(uvicorn.Config(
            create_app(settings), host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise SystemExit("histotile serve did not start")
            time.sleep(0.05)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


VIEWER_READY = """() => { const h = window.histotileViewer;
    return h && h.ready && h.viewer.world.getItemCount() &&
           h.viewer.world.getItemAt(0).getFullyLoaded() && h.overlayDrawn > 0 &&
           !document.getElementById('heatmap-controls').disabled; }"""


def viewer_screenshot(found: dict[str, Path]) -> bytes:
    """The viewer on the bundled slide, the heatmap in continuous colours."""
    from playwright.sync_api import sync_playwright

    with Server(found["slides"], found["results"], found["model"]) as url, \
            sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 760})
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(f"{url}/view/{SLIDE}")
            page.wait_for_function(VIEWER_READY, timeout=120_000)
            page.select_option("#mode", "continuous")
            page.wait_for_timeout(1000)  # the redrawn overlay and the last animation frame
            if errors:
                raise SystemExit(f"the viewer page failed: {errors}")
            return page.screenshot()
        finally:
            browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=None,
                        help="keep the demo and the other outputs here (default: a "
                             "temporary folder, deleted)")
    parser.add_argument("--reuse", action="store_true",
                        help="reuse the demo already in --work (its model and summary)")
    parser.add_argument("--width", type=int, default=1000, help="widest picture, px")
    args = parser.parse_args()
    if not Path(CHROMIUM).exists():
        raise SystemExit(f"{CHROMIUM}: missing (make chromium, or apt-get install chromium)")
    with tempfile.TemporaryDirectory(prefix="histotile-docs-images-") as temporary:
        work = (args.work or Path(temporary)).resolve()
        found = outputs(work, args.reuse)
        small_png(viewer_screenshot(found), IMAGES / "viewer.png", args.width)
        small_png(found["explanations"], IMAGES / "explanations.png", args.width)
        for name in ("heatmap-preview", "qc"):  # the slide is taller than wide
            small_png(found[name], IMAGES / f"{name}.png", round(args.width * 0.7))
        summary = json.loads(found["summary"].read_text(encoding="utf-8"))
        SUMMARY.parent.mkdir(parents=True, exist_ok=True)
        SUMMARY.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {SUMMARY.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
