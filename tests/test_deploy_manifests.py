"""The deployment files agree with the image and the service: the compose file and the
Kubernetes manifests name the image ``make image`` builds, the port the Containerfile
exposes and the service listens on, probe paths that are real routes of the app, the
folders the image creates as mount points, and its non-root user."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

import histotile
from histotile.workflows.serve.routes_ops import HEALTH_PATH, READY_PATH

ROOT = Path(__file__).parents[1]
DEPLOY = ROOT / "deploy"
KUBE = DEPLOY / "kubernetes"
CONTAINERFILE = (ROOT / "Containerfile").read_text()
IMAGE = "histotile:" + histotile.__version__
MOUNTS = {"/data/slides", "/data/results", "/models"}


def containerfile_facts() -> dict:
    user = re.search(r"^USER (\d+)", CONTAINERFILE, re.M)
    exposed = re.search(r"^EXPOSE ([\d ]+)$", CONTAINERFILE, re.M)
    created = re.search(r"mkdir -p ([/\w ]+)", CONTAINERFILE)
    return {"uid": int(user[1]), "ports": {int(p) for p in exposed[1].split()},
            "dirs": set(created[1].split())}


def kube_documents() -> list[dict]:
    docs = []
    for path in sorted((KUBE / "base").glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def by_kind(kind: str) -> dict:
    [doc] = [d for d in kube_documents() if d.get("kind") == kind]
    return doc


def pod_specs() -> dict[str, dict]:
    cluster = by_kind("DaskCluster")["spec"]
    return {"web": by_kind("Deployment")["spec"]["template"]["spec"],
            "worker": cluster["worker"]["spec"], "scheduler": cluster["scheduler"]["spec"]}


def app_paths() -> set[str]:
    from histotile.workflows.serve import ServeSettings, create_app

    pytest.importorskip("fastapi")
    app = create_app(ServeSettings(roots=[histotile.sample_slide()]))
    return set(app.openapi()["paths"])


def option(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def test_the_image_is_the_one_make_image_builds():
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^IMAGE \?= histotile$", makefile, re.M)
    assert "--tag $(IMAGE):$(VERSION)" in makefile
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    assert {s["image"] for s in compose["services"].values()} == {IMAGE}
    kustomization = yaml.safe_load((KUBE / "base" / "kustomization.yaml").read_text())
    [entry] = kustomization["images"]
    assert f"{entry['name']}:{entry['newTag']}" == IMAGE
    for name, spec in pod_specs().items():
        assert {c["image"] for c in spec["containers"]} == {entry["name"]}, name


def test_the_service_port_and_probes_are_the_apps():
    facts = containerfile_facts()
    routes = app_paths()
    [web] = pod_specs()["web"]["containers"]
    port = int(option(web["args"], "--port"))
    assert port in facts["ports"]
    assert web["ports"][0]["containerPort"] == port
    assert {web["livenessProbe"]["httpGet"]["path"],
            web["readinessProbe"]["httpGet"]["path"]} == {HEALTH_PATH, READY_PATH}
    assert {HEALTH_PATH, READY_PATH} <= routes
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert web[probe]["httpGet"]["port"] == web["ports"][0]["name"]
    service = by_kind("Service")["spec"]
    assert service["ports"][0]["targetPort"] == web["ports"][0]["name"]
    assert option(web["args"], "--host") == "0.0.0.0"
    assert web["env"][0]["name"] == "HISTOTILE_TOKEN"  # click's envvar of --token
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]["web"]
    assert compose["command"] == web["args"]
    # Published on the host's loopback only, at HISTOTILE_PORT (default: the same port).
    assert compose["ports"] == [f"127.0.0.1:${{HISTOTILE_PORT:-{port}}}:{port}"]
    health = " ".join(compose["healthcheck"]["test"])
    assert f"127.0.0.1:{port}{READY_PATH}" in health


def test_mounts_are_the_images_folders_and_the_commands_paths():
    facts = containerfile_facts()
    assert facts["dirs"] == MOUNTS
    specs = pod_specs()
    for name in ("web", "worker"):
        [container] = specs[name]["containers"]
        mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
        assert set(mounts) == MOUNTS | {"/tmp"}, name
        assert mounts["/data/slides"].get("readOnly") and mounts["/models"].get("readOnly")
    args = specs["web"]["containers"][0]["args"]
    assert args[1] == "/data/slides" and option(args, "--results") == "/data/results"
    assert option(args, "--model").startswith("/models/")
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    for service in compose["services"].values():
        paths = {re.search(r":(/[^:]+)(:ro)?$", v)[1] for v in service["volumes"]}
        assert paths == MOUNTS
    batch = compose["services"]["batch"]["command"]
    assert option(batch, "--scheduler") == "tcp://scheduler:8786"
    assert option(batch, "--model") == option(args, "--model")


def test_pods_run_as_the_images_user_on_a_read_only_root():
    uid = containerfile_facts()["uid"]
    for name, spec in pod_specs().items():
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["runAsUser"] == uid, name
        for container in spec["containers"]:
            assert container["securityContext"]["readOnlyRootFilesystem"] is True, name
            assert container["resources"]["requests"], name
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    assert {s["user"] for s in compose["services"].values()} == {f"{uid}:{uid}"}


def test_the_gpu_overlay_adds_a_gpu_to_each_worker():
    patch = yaml.safe_load((KUBE / "overlays" / "gpu" / "gpu-workers.yaml").read_text())
    limits = [p for p in patch if p["path"].endswith("nvidia.com~1gpu")]
    assert limits and limits[0]["path"].startswith("/spec/worker/spec/containers/0/")
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        return  # the patch's target is checked above; rendering needs kubectl
    rendered = subprocess.run([kubectl, "kustomize", str(KUBE / "overlays" / "gpu")],
                              check=True, capture_output=True, text=True).stdout
    [cluster] = [d for d in yaml.safe_load_all(rendered) if d["kind"] == "DaskCluster"]
    worker = cluster["spec"]["worker"]["spec"]["containers"][0]
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert worker["image"] == IMAGE
