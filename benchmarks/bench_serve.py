"""``histotile serve`` under load: Deep Zoom tiles per second and latency on loopback
against the same tiles made in-process, and ``/api/classify`` against the bare Predictor.

* ``tiles``: a synthetic pyramidal slide (``--size``, default 16384 x 16384 px, cached
  under benchmarks/_work/) served by ``histotile serve`` in its own process; 1, 4 and 16
  concurrent clients (asyncio + httpx) request distinct full-resolution tiles (every
  request a cache miss: the tile cache is turned off for the cold figures), and then the
  same tiles again with the cache on (warm). Baseline: OpenSlide's
  ``DeepZoomGenerator.get_tile`` plus the same JPEG encoding, called in this process on
  one thread.
* ``classify``: a 512 x 512 px image (225 patches of 64 px, step 32) posted to
  ``/api/classify`` one at a time, against ``patchify_image`` + ``Predictor.predict`` on
  the same image in-process. The model is a LeNet trained for a few seconds on the
  synthetic stain task (its speed is a trained one's).

Targets (issue 14, 2 cores): served tiles >= 0.7x the in-process rate at 16 clients with
p99 under 150 ms; classify within 1.3x of the bare predictor.
Run: ``.venv/bin/python benchmarks/bench_serve.py [--requests 300] [--quick]``.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import random
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _common import WORK  # noqa: E402

QUALITY = 80


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def make_slide(size: int) -> Path:
    from histotile.wsi.synthetic import write_synthetic_slide

    path = WORK / f"bench_serve_{size}.tif"
    if not path.exists():
        WORK.mkdir(parents=True, exist_ok=True)
        write_synthetic_slide(path, size, size, seed=11, mpp=0.5, tile_size=512,
                              tissue_fraction=0.5)
    return path


def make_model() -> Path:
    from histotile.models import TrainSettings, train
    from histotile.models.synthetic import write_stain_slides

    model = WORK / "bench_serve_model"
    if not (model / "model_card.json").exists():
        manifest = write_stain_slides(WORK / "bench_serve_stain", patients=4, grid=(6, 5),
                                      tile_size=64, seed=5)
        (manifest.parent / "tiles.json").unlink()
        train(manifest, model, TrainSettings(model="lenet", epochs=2, folds=0,
                                             test_fraction=0, batch_size=16, workers=1))
    return model


def start_server(slide: Path, model: Path, port: int, cache_mb: float) -> subprocess.Popen:
    code = ("from histotile.workflows.serve import ServeSettings, serve; "
            f"serve(ServeSettings(roots=[{str(slide)!r}], model={str(model)!r}, "
            f"port={port}, tile_cache_mb={cache_mb}, jpeg_quality={QUALITY}))")
    server = subprocess.Popen([sys.executable, "-c", code], env={**os.environ})
    import httpx

    for _ in range(300):
        try:
            httpx.get(f"http://127.0.0.1:{port}/api/slides", timeout=1)
            return server
        except httpx.HTTPError:
            time.sleep(0.1)
    server.kill()
    raise RuntimeError("the server did not start")


def tile_addresses(slide: Path, count: int, seed: int) -> tuple[int, list[tuple[int, int]]]:
    import openslide
    from openslide.deepzoom import DeepZoomGenerator

    with openslide.OpenSlide(str(slide)) as handle:
        generator = DeepZoomGenerator(handle, 254, 1)
        level = generator.level_count - 1
        cols, rows = generator.level_tiles[level]
    every = [(c, r) for r in range(rows) for c in range(cols)]
    random.Random(seed).shuffle(every)
    return level, every[:count]


def in_process(slide: Path, level: int, tiles: list[tuple[int, int]]) -> dict:
    import openslide
    from openslide.deepzoom import DeepZoomGenerator

    with openslide.OpenSlide(str(slide)) as handle:
        generator = DeepZoomGenerator(handle, 254, 1)
        times = []
        started = time.perf_counter()
        for address in tiles:
            t0 = time.perf_counter()
            buffer = io.BytesIO()
            generator.get_tile(level, address).save(buffer, "JPEG", quality=QUALITY)
            times.append(time.perf_counter() - t0)
        wall = time.perf_counter() - started
    return summary(times, wall)


def summary(times: list[float], wall: float) -> dict:
    ms = np.array(times) * 1000
    return {"requests": len(times), "per_s": len(times) / wall,
            "p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99))}


async def served(base: str, slide: str, level: int, tiles: list[tuple[int, int]],
                 clients: int) -> dict:
    import httpx

    queue: asyncio.Queue = asyncio.Queue()
    for address in tiles:
        queue.put_nowait(address)
    times: list[float] = []

    async def client_loop() -> None:
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            while not queue.empty():
                col, row = queue.get_nowait()
                t0 = time.perf_counter()
                response = await client.get(f"/slides/{slide}_files/{level}/{col}_{row}.jpeg")
                response.raise_for_status()
                times.append(time.perf_counter() - t0)

    started = time.perf_counter()
    await asyncio.gather(*(client_loop() for _ in range(clients)))
    return summary(times, time.perf_counter() - started)


def bench_tiles(slide: Path, model: Path, requests: int) -> dict:
    level, tiles = tile_addresses(slide, requests * 4, seed=0)
    out: dict = {"level": level, "baseline": in_process(slide, level, tiles[:requests])}
    name = slide.name.split(".")[0]
    for cache_mb, label in ((0.001, "cold"), (256, "warm")):
        port = free_port()
        server = start_server(slide, model, port, cache_mb)
        try:
            base = f"http://127.0.0.1:{port}"
            for index, clients in enumerate((1, 4, 16)):
                batch = tiles[index * requests:(index + 1) * requests]
                if label == "warm":  # fill the cache, then measure the same tiles
                    asyncio.run(served(base, name, level, batch, 16))
                out[f"{label}_{clients}"] = asyncio.run(served(base, name, level, batch,
                                                               clients))
        finally:
            server.terminate()
            server.wait(timeout=30)
    return out


def bench_classify(slide: Path, model: Path, repeats: int) -> dict:
    import httpx
    from PIL import Image

    from histotile.models import Predictor
    from histotile.tiling import patchify_image
    from histotile.wsi import open_slide

    with open_slide(slide) as handle:
        image = handle.read_region((4096, 4096), 0, (512, 512))
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "PNG")
    data = buffer.getvalue()
    predictor = Predictor(model)
    predictor.predict(patchify_image(image, 64, 32))  # warm up
    started = time.perf_counter()
    for _ in range(repeats):
        predictor.predict(patchify_image(image, 64, 32))
    bare = repeats / (time.perf_counter() - started)
    port = free_port()
    server = start_server(slide, model, port, 64)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            def post():
                response = client.post("/api/classify", files={"file": ("x.png", data)})
                response.raise_for_status()
                return response.json()
            assert len(post()["probabilities"]) == 225  # warm up (loads the model)
            started = time.perf_counter()
            for _ in range(repeats):
                post()
            served_rate = repeats / (time.perf_counter() - started)
    finally:
        server.terminate()
        server.wait(timeout=30)
    return {"bare_per_s": bare, "served_per_s": served_rate, "ratio": bare / served_rate}


def table(result: dict) -> str:
    base = result["tiles"]["baseline"]
    lines = ["| tiles | clients | tiles/s | x in-process | p50 ms | p99 ms |",
             "|---|---:|---:|---:|---:|---:|",
             f"| in-process get_tile + JPEG | 1 | {base['per_s']:.0f} | 1.00 | "
             f"{base['p50_ms']:.1f} | {base['p99_ms']:.1f} |"]
    for label in ("cold", "warm"):
        for clients in (1, 4, 16):
            row = result["tiles"][f"{label}_{clients}"]
            lines.append(f"| served, {label} cache | {clients} | {row['per_s']:.0f} | "
                         f"{row['per_s'] / base['per_s']:.2f} | {row['p50_ms']:.1f} | "
                         f"{row['p99_ms']:.1f} |")
    c = result["classify"]
    lines += ["", "| classify 512 x 512 px (225 patches) | images/s |", "|---|---:|",
              f"| bare Predictor (patchify + predict) | {c['bare_per_s']:.2f} |",
              f"| POST /api/classify | {c['served_per_s']:.2f} |",
              f"| ratio (bare / served) | {c['ratio']:.2f} |"]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=16384, help="slide side, level-0 px")
    parser.add_argument("--requests", type=int, default=300, help="tiles per measurement")
    parser.add_argument("--classify", type=int, default=20, help="images per measurement")
    parser.add_argument("--quick", action="store_true", help="8192 px, 100 tiles, 8 images")
    args = parser.parse_args()
    if args.quick:
        args.size, args.requests, args.classify = 8192, 100, 8
    slide, model = make_slide(args.size), make_model()
    result = {"cores": os.cpu_count(), "size": args.size,
              "tiles": bench_tiles(slide, model, args.requests),
              "classify": bench_classify(slide, model, args.classify)}
    print(table(result))
    (WORK / "bench_serve.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
