"""``histotile serve`` under load: Deep Zoom tiles per second and latency on loopback
against the same tiles made in-process, and ``/api/classify`` against the bare Predictor.

* ``tiles``: a synthetic pyramidal slide (``--size``, default 16384 x 16384 px, cached
  under benchmarks/_work/) served by ``histotile serve`` in its own process; 1, 4 and 16
  concurrent clients request distinct full-resolution tiles (every request a cache miss:
  the tile cache is turned off for the cold figures), and then the same tiles again with
  the cache on (warm). The clients are keep-alive HTTP/1.1 connections of a load
  generator in a third process (asyncio, a few lines of hand-written HTTP: its CPU time
  per request is reported and small), opened before the clock starts; a latency is from
  sending a request to reading the last byte of its answer. The server's CPU time per
  tile is reported too: on shared cores it says more than a rate. Baseline: OpenSlide's
  ``DeepZoomGenerator.get_tile`` plus the same JPEG encoding, called in this process on
  one thread, at the start and again at the end (the load of a shared machine drifts).
* ``classify``: a 512 x 512 px image (225 patches of 64 px, step 32) posted to
  ``/api/classify`` one at a time, against ``patchify_image`` + ``Predictor.predict`` on
  the same image in-process. The model is a LeNet trained for a few seconds on the
  synthetic stain task (its speed is a trained one's).

Targets (issue 14, 2 cores): served tiles >= 0.7x the in-process rate at 16 clients with
p99 under 150 ms; classify within 1.3x of the bare predictor.
Run: ``.venv/bin/python benchmarks/bench_serve.py [--requests 300] [--quick] [--tiles-only]
[--out FILE]``; the load average before and after is recorded with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import random
import re
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
        cpu, started = time.process_time(), time.perf_counter()
        for address in tiles:
            t0 = time.perf_counter()
            buffer = io.BytesIO()
            generator.get_tile(level, address).save(buffer, "JPEG", quality=QUALITY)
            times.append(time.perf_counter() - t0)
        wall = time.perf_counter() - started
    return {**summary(times, wall), "cpu_ms": (time.process_time() - cpu) * 1000 / len(tiles)}


def summary(times: list[float], wall: float) -> dict:
    ms = np.array(times) * 1000
    return {"requests": len(times), "per_s": len(times) / wall,
            "p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99))}


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of process ``pid`` so far (Linux; else None)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def served(server: subprocess.Popen, port: int, slide: str, level: int,
           tiles: list[tuple[int, int]], clients: int, timeout: float = 300) -> dict:
    """``tiles`` requested by ``clients`` concurrent keep-alive connections from a load
    generator in its own process (:func:`load_main`), so its work is not charged to the
    server's process; the connections are opened before the clock starts. Besides the
    latencies: the server's and the load generator's CPU milliseconds per request."""
    job = {"port": port, "clients": clients, "timeout": timeout,
           "paths": [f"/slides/{slide}_files/{level}/{c}_{r}.jpeg" for c, r in tiles]}
    server_cpu = process_cpu_seconds(server.pid)
    done = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--load"],
                          input=json.dumps(job), capture_output=True, text=True,
                          timeout=timeout + 60, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the load generator failed: {done.stderr[-2000:]}")
    answer = json.loads(done.stdout)
    out = {**summary(answer["times"], answer["wall"]),
           "client_cpu_ms": answer["cpu"] * 1000 / len(tiles)}
    if server_cpu is not None:
        out["server_cpu_ms"] = (process_cpu_seconds(server.pid) - server_cpu) * 1000 / len(tiles)
    return out


async def _fetch(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 path: str) -> bytes:
    """One GET on a keep-alive HTTP/1.1 connection; the body (raises unless 200)."""
    writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = int(re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head).group(1))
    body = await reader.readexactly(length)
    if status != 200:
        raise RuntimeError(f"{path}: HTTP {status} {body[:200]!r}")
    return body


async def _load(port: int, paths: list[str], clients: int) -> dict:
    # A hand-written HTTP/1.1 client (not httpx): a few microseconds of Python a request,
    # so the load generator's own CPU time hardly competes with the server's on 2 cores
    # (an httpx.AsyncClient also spends ~40 ms building an SSL context when created).
    queue: asyncio.Queue = asyncio.Queue()
    for path in paths:
        queue.put_nowait(path)
    connections = [await asyncio.open_connection("127.0.0.1", port) for _ in range(clients)]
    times: list[float] = []

    async def client_loop(reader, writer) -> None:
        while not queue.empty():
            path = queue.get_nowait()
            t0 = time.perf_counter()
            body = await _fetch(reader, writer, path)
            times.append(time.perf_counter() - t0)
            if body[:2] != b"\xff\xd8":
                raise RuntimeError(f"{path}: not a JPEG")

    cpu, started = time.process_time(), time.perf_counter()
    await asyncio.gather(*(client_loop(*c) for c in connections))
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    for _, writer in connections:
        writer.close()
    return {"times": times, "wall": wall, "cpu": cpu}


def load_main() -> None:
    """The load generator's process: a job (JSON) on stdin, the times (JSON) on stdout."""
    job = json.loads(sys.stdin.read())
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    result = asyncio.run(asyncio.wait_for(_load(job["port"], job["paths"], job["clients"]),
                                          job["timeout"]))
    print(json.dumps(result))


def bench_tiles(slide: Path, model: Path, requests: int) -> dict:
    level, tiles = tile_addresses(slide, requests * 4, seed=0)
    out: dict = {"level": level, "baseline": in_process(slide, level, tiles[:requests])}
    name = slide.name.split(".")[0]
    for cache_mb, label in ((0.001, "cold"), (256, "warm")):
        port = free_port()
        server = start_server(slide, model, port, cache_mb)
        try:
            for index, clients in enumerate((1, 4, 16)):
                batch = tiles[index * requests:(index + 1) * requests]
                if label == "warm":  # fill the cache, then measure the same tiles
                    served(server, port, name, level, batch, 16)
                out[f"{label}_{clients}"] = served(server, port, name, level, batch, clients)
        finally:
            server.terminate()
            server.wait(timeout=30)
    # Again at the end: the machine's load may have changed meanwhile (shared cores).
    out["baseline_end"] = in_process(slide, level, tiles[:requests])
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
    end = result["tiles"].get("baseline_end", base)
    lines = ["| tiles | clients | tiles/s | x in-process | p50 ms | p99 ms | "
             "server CPU ms/tile | client CPU ms/tile |",
             "|---|---:|---:|---:|---:|---:|---:|---:|",
             f"| in-process get_tile + JPEG (start / end) | 1 | {base['per_s']:.0f} / "
             f"{end['per_s']:.0f} | 1.00 | {base['p50_ms']:.1f} | {base['p99_ms']:.1f} | "
             f"{base.get('cpu_ms', float('nan')):.2f} | |"]
    for label in ("cold", "warm"):
        for clients in (1, 4, 16):
            row = result["tiles"][f"{label}_{clients}"]
            lines.append(f"| served, {label} cache | {clients} | {row['per_s']:.0f} | "
                         f"{row['per_s'] / base['per_s']:.2f} | {row['p50_ms']:.1f} | "
                         f"{row['p99_ms']:.1f} | {row.get('server_cpu_ms', float('nan')):.2f} | "
                         f"{row['client_cpu_ms']:.2f} |")
    c = result.get("classify")
    if c is None:
        return "\n".join(lines)
    lines += ["", "| classify 512 x 512 px (225 patches) | images/s |", "|---|---:|",
              f"| bare Predictor (patchify + predict) | {c['bare_per_s']:.2f} |",
              f"| POST /api/classify | {c['served_per_s']:.2f} |",
              f"| ratio (bare / served) | {c['ratio']:.2f} |"]
    return "\n".join(lines)


def load_average() -> list[str]:
    try:
        return Path("/proc/loadavg").read_text().split()[:3]
    except OSError:
        return []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=16384, help="slide side, level-0 px")
    parser.add_argument("--requests", type=int, default=300, help="tiles per measurement")
    parser.add_argument("--classify", type=int, default=20, help="images per measurement")
    parser.add_argument("--quick", action="store_true", help="8192 px, 100 tiles, 8 images")
    parser.add_argument("--tiles-only", action="store_true", help="skip /api/classify")
    parser.add_argument("--out", type=Path, default=WORK / "bench_serve.json",
                        help="where the JSON result goes")
    parser.add_argument("--load", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load:
        load_main()
        return
    if args.quick:
        args.size, args.requests, args.classify = 8192, 100, 8
    slide, model = make_slide(args.size), make_model()
    result = {"cores": os.cpu_count(), "size": args.size,
              "date": time.strftime("%Y-%m-%dT%H:%M+00:00", time.gmtime()),
              "load_average_before": load_average(),
              "tiles": bench_tiles(slide, model, args.requests)}
    if not args.tiles_only:
        result["classify"] = bench_classify(slide, model, args.classify)
    result["load_average_after"] = load_average()
    print(table(result))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
