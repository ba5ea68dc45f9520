"""What the OCI image (``make image``) weighs and what makes it up: the image's size as
podman reports it, the venv's, and the largest installed distributions, measured inside the
image with ``du`` (MB = 10^6 bytes, as podman counts).

    python benchmarks/image_size.py [--image histotile:VERSION] [--json results/x.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import histotile

ROOT = Path(__file__).resolve().parents[1]
# du -k inside the image: the venv, its site-packages entries (each du counts a file once,
# hence two), then everything else on /.
SCRIPT = ("cd /opt/histotile && du -sk .; du -sk lib/python3*/site-packages/* | sort -rn; "
          "echo base; du -skx --exclude=/opt/histotile --exclude=/proc --exclude=/sys / ")


def podman(*args: str) -> str:
    runtime = ["--runtime", "runc"] if shutil.which("runc") else []
    env = {**os.environ, "CONTAINERS_CONF": os.environ.get(
        "CONTAINERS_CONF", str(ROOT / "deploy" / "containers.conf"))}
    return subprocess.run(["podman", *runtime, *args], env=env, text=True,
                          capture_output=True, check=True).stdout


def measure(image: str, top: int = 12) -> dict:
    size = int(podman("image", "inspect", "--format", "{{.Size}}", image))
    # As root: the image's user may not read every folder of the base.
    lines = podman("run", "--rm", "--network", "none", "--user", "0", "--entrypoint", "sh",
                   image, "-c", SCRIPT).splitlines()
    split = lines.index("base")
    sizes = [(int(k) * 1024 / 1e6, path) for k, path in (line.split("\t") for line in
                                                       lines[:split])]
    (venv, _), *packages = sizes
    base = int(lines[split + 1].split("\t")[0]) * 1024 / 1e6
    return {"date": datetime.now(timezone.utc).isoformat(timespec="minutes"),
            "image": image, "image_mb": round(size / 1e6), "venv_mb": round(venv),
            "outside_venv_mb": round(base),
            "largest_mb": {Path(path).name: round(mb) for mb, path in packages[:top]}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", default=f"histotile:{histotile.__version__}")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    result = measure(args.image)
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
