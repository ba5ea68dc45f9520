"""The OCI image (Containerfile, ``make image``) with podman: it builds; ``histotile
info`` reads the bundled slide inside it; the service container answers ``/readyz`` and a
Deep Zoom tile through a port published on 127.0.0.1.

Building takes about 20 minutes and 6 GB of disk on 2 cores (mostly torch's CUDA wheels),
so these run only when asked: ``HISTOTILE_CONTAINER_TESTS=1`` (``make test-container``)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

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
