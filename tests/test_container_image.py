"""The OCI image (Containerfile, ``make image``) with podman: it builds; ``histotile
info`` reads the bundled slide inside it; the service container answers ``/readyz`` and a
Deep Zoom tile through a port published on 127.0.0.1; a pod of a Dask scheduler and two
worker containers runs ``histotile run --scheduler`` to the same predictions as a local
run; deploy/compose.yaml (``make compose-up``, ``make compose-batch``) brings up the viewer
and runs a batch on its workers.

Building takes about 20 minutes and 6 GB of disk on 2 cores (mostly torch's CUDA wheels),
so these run only when asked: ``HISTOTILE_CONTAINER_TESTS=1`` (``make test-container``)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

import histotile

ROOT = Path(__file__).parents[1]
IMAGE = f"histotile:{histotile.__version__}"
WAIT = 300  # seconds: the most a wait may take; only a failing test waits that long

pytestmark = [
    pytest.mark.slow, pytest.mark.container,
    pytest.mark.skipif(shutil.which("podman") is None,
                       reason="podman is not installed (apt-get install podman runc)"),
    pytest.mark.skipif(not os.environ.get("HISTOTILE_CONTAINER_TESTS"),
                       reason="builds a 6 GB image (about 20 min on 2 cores): set "
                              "HISTOTILE_CONTAINER_TESTS=1 or run make test-container"),
]


def podman(*args: str, **options) -> subprocess.CompletedProcess:
    runtime = ["--runtime", "runc"] if shutil.which("runc") else []
    env = {**os.environ, "CONTAINERS_CONF": os.environ.get(
        "CONTAINERS_CONF", str(ROOT / "deploy" / "containers.conf"))}
    return subprocess.run(["podman", *runtime, *args], env=env, text=True,
                          capture_output=True, **options)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def image() -> str:
    built = subprocess.run(["make", "-C", str(ROOT), "image"], capture_output=True, text=True)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    return IMAGE


def test_the_image_runs_as_non_root_with_its_labels(image):
    labels = podman("image", "inspect", "--format",
                    "{{json .Config.Labels}} {{.Config.User}}", image, check=True).stdout
    assert f'"org.opencontainers.image.version":"{histotile.__version__}"' in labels
    assert '"org.opencontainers.image.licenses":"MIT"' in labels
    assert labels.strip().endswith("10001:10001")


# A digest of histotile's Python files (their paths and bytes), where histotile is imported.
CODE_DIGEST = """
import hashlib, pathlib, histotile
root, digest = pathlib.Path(histotile.__file__).parent, hashlib.sha256()
for path in sorted(root.rglob("*.py")):
    digest.update(str(path.relative_to(root)).encode() + b"\\0" + path.read_bytes())
print(digest.hexdigest())
"""


def test_the_image_holds_this_checkouts_code(image):
    """A rebuild after a change to the code must not reuse the install layer of an older
    build (podman's cache does not see what a bind mount from another stage holds)."""
    here = subprocess.run([sys.executable, "-c", CODE_DIGEST], cwd=ROOT, text=True,
                          capture_output=True, check=True).stdout
    inside = podman("run", "--rm", "--network", "none", "--entrypoint", "python3", image,
                    "-c", CODE_DIGEST, timeout=WAIT)
    assert inside.returncode == 0, inside.stderr
    assert inside.stdout == here


def test_info_reads_the_bundled_slide_inside_the_image(image):
    slide = histotile.sample_slide()
    result = podman("run", "--rm", "--network", "none", "-v",
                    f"{slide}:/data/slides/sample.svs:ro", image, "info",
                    "/data/slides/sample.svs", timeout=WAIT)
    assert result.returncode == 0, result.stderr
    assert "2220 x 2967" in result.stdout and "aperio" in result.stdout


def _get(url: str, token: str | None = None) -> tuple[int, bytes, str]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"}
                                     if token else {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read(), response.headers["content-type"]
    except urllib.error.HTTPError as error:
        return error.code, error.read(), error.headers.get("content-type", "")
    except OSError:
        return 0, b"", ""


def test_the_service_answers_readyz_and_a_tile_on_a_published_port(image):
    port, name = free_port(), f"histotile-test-{os.getpid()}"
    slide = histotile.sample_slide()
    started = podman("run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:8000",
                     "-e", "HISTOTILE_TOKEN=s3cret", "-v",
                     f"{slide}:/data/slides/sample.svs:ro", image, "serve", "/data/slides",
                     "--host", "0.0.0.0", "--port", "8000", timeout=WAIT)
    assert started.returncode == 0, started.stderr
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + WAIT
        while (ready := _get(base + "/readyz"))[0] != 200:
            assert time.monotonic() < deadline, (ready, podman("logs", name).stderr)
            time.sleep(0.5)
        assert _get(base + "/api/slides")[0] == 401
        assert _get(base + "/metrics")[0] == 401
        status, body, kind = _get(base + "/slides/sample_files/9/0_0.jpeg", "s3cret")
        assert status == 200 and kind == "image/jpeg" and body[:2] == b"\xff\xd8"
    finally:
        podman("rm", "--force", name)


# --- Dask batches in containers -------------------------------------------------------

SLIDES = ("case-a", "case-b")  # two copies of the bundled slide: one for each worker


@dataclass
class World:
    slides: Path  # the slides, as /data/slides in the containers
    models: Path  # /models: a model folder "model" trained here on the bundled slide
    local: Path  # the results of a local `histotile run` (no containers)


def _histotile(*args: str) -> None:
    """The CLI of this checkout, on this host."""
    done = subprocess.run([sys.executable, "-m", "histotile", *args], cwd=ROOT, text=True,
                          capture_output=True, timeout=WAIT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    """A LeNet trained for one epoch on the bundled slide's painted overlay (the demo's
    tiles, without overlap), then a local run over two copies of the slide."""
    from histotile.models import TrainSettings, train
    from histotile.tiling import TilingSettings, extract_tiles, load_annotation
    from histotile.workflows.demo import CLASSES, OVERLAY, POSITIVE, SLIDE, spatial_groups

    root = tmp_path_factory.mktemp("containers")
    slides, models = root / "slides", root / "models"
    slides.mkdir()
    for name in SLIDES:
        shutil.copyfile(SLIDE, slides / f"{name}.svs")
    settings = TilingSettings(tile_size=128, mpp=0.5, classes=CLASSES,
                              positive_class=POSITIVE, palette={POSITIVE: (0, 255, 0)})
    annotation = load_annotation(OVERLAY, palette=settings.palette, classes=settings.classes)
    manifest = extract_tiles(SLIDE, settings, annotation=annotation, workers=1)
    manifest["group"] = spatial_groups(manifest)
    manifest.attrs["tiling"] = settings.to_dict()
    train(manifest, models / "model", TrainSettings(
        model="lenet", epochs=1, folds=0, test_fraction=0, workers=1, seed=0,
        positive_class=POSITIVE))
    # The local run on a copy: the containers export their own ONNX engine (into the
    # model folder is not possible, as /models is read-only there).
    shutil.copytree(models / "model", root / "local-model")
    # The engine the containers choose on a CPU (a GPU host would choose torch here).
    _histotile("run", str(slides), "--model", str(root / "local-model"), "--out",
               str(root / "local"), "--engine", "onnxruntime")
    return World(slides, models, root / "local")


def _results_folder(path: Path) -> Path:
    """A host folder the image's user (uid 10001, not this one) can write."""
    path.mkdir()
    path.chmod(0o777)
    return path


def _engine(folder: Path) -> str:
    return json.loads((folder / "predictions.json").read_text())["settings"]["engine"]


def _same_predictions(local: Path, results: Path) -> None:
    """Every slide's predictions.csv equal to the local run's, value for value: the image
    and this host run the same engine (ONNX Runtime, the containers' default on a CPU) on
    the same model."""
    for name in SLIDES:
        expected = pd.read_csv(local / name / "predictions.csv")
        got = pd.read_csv(results / name / "predictions.csv")
        assert len(expected) > 100, name
        assert _engine(results / name) == _engine(local / name) == "onnxruntime"
        pd.testing.assert_frame_equal(got, expected, check_exact=True)


def test_a_pod_of_a_scheduler_and_two_workers_predicts_as_a_local_run(image, world,
                                                                      tmp_path):
    results = _results_folder(tmp_path / "results")
    pod = f"histotile-pod-{os.getpid()}"
    mounts = ["-v", f"{world.slides}:/data/slides:ro", "-v", f"{world.models}:/models:ro",
              "-v", f"{results}:/data/results"]
    dask = ["--entrypoint", "dask", *mounts, image]
    created = podman("pod", "create", "--name", pod, timeout=WAIT)
    assert created.returncode == 0, created.stderr
    try:
        started = [podman("run", "-d", "--pod", pod, "--name", f"{pod}-scheduler", *dask,
                          "scheduler", "--port", "8786", "--dashboard-address", ":8787",
                          timeout=WAIT)]
        started += [podman("run", "-d", "--pod", pod, "--name", f"{pod}-worker-{i}",
                           "-e", "HISTOTILE_THREADS=1", *dask, "worker",
                           "tcp://127.0.0.1:8786", "--nthreads", "1", "--name",
                           f"worker-{i}", timeout=WAIT) for i in (1, 2)]
        assert all(s.returncode == 0 for s in started), [s.stderr for s in started]
        ran = podman("run", "--rm", "--pod", pod, *mounts, image, "run", "/data/slides",
                     "--model", "/models/model", "--out", "/data/results", "--scheduler",
                     "tcp://127.0.0.1:8786", timeout=2 * WAIT)
        assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
        logs = podman("logs", f"{pod}-scheduler").stderr
    finally:
        podman("pod", "rm", "--force", pod, timeout=WAIT)
    assert "worker-1" in logs and "worker-2" in logs, logs[-3000:]
    _same_predictions(world.local, results)


def _make(target: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "-C", str(ROOT), target], env={**os.environ, **env},
                          text=True, capture_output=True, timeout=2 * WAIT)


def test_compose_serves_the_viewer_and_runs_a_batch_on_its_workers(image, world, tmp_path):
    results = _results_folder(tmp_path / "results")
    port = free_port()
    env = {"COMPOSE_PROJECT_NAME": f"histotile-test-{os.getpid()}",
           "HISTOTILE_SLIDES": str(world.slides), "HISTOTILE_MODELS": str(world.models),
           "HISTOTILE_RESULTS": str(results), "HISTOTILE_TOKEN": "s3cret",
           "HISTOTILE_PORT": str(port), "HISTOTILE_DASHBOARD_PORT": str(free_port())}
    try:
        up = _make("compose-up", env)
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + WAIT
        while (ready := _get(base + "/readyz"))[0] != 200:
            assert time.monotonic() < deadline, ready
            time.sleep(0.5)
        status, body, kind = _get(base + f"/slides/{SLIDES[0]}_files/9/0_0.jpeg", "s3cret")
        assert status == 200 and kind == "image/jpeg" and body[:2] == b"\xff\xd8"
        batch = _make("compose-batch", env)
        assert batch.returncode == 0, batch.stdout[-3000:] + batch.stderr[-3000:]
    finally:
        down = _make("compose-down", env)
    assert down.returncode == 0, down.stdout[-3000:] + down.stderr[-3000:]
    _same_predictions(world.local, results)
