#!/bin/sh
# The base image for `make image`: print the image to build FROM.
# Uses $BASE (python:3.11-slim-bookworm by default) when podman has it or can pull it;
# otherwise (a host that reaches no container registry) builds a minimal Debian bookworm
# with Python 3.11 by debootstrap from the host's Debian mirror, once, as
# localhost/histotile-base:bookworm. debootstrap needs root.
set -eu
BASE=${BASE:-python:3.11-slim-bookworm}
LOCAL=localhost/histotile-base:bookworm
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
if podman image exists "$BASE" || podman pull -q "$BASE" >/dev/null 2>&1; then
    echo "$BASE"; exit 0
fi
if podman image exists "$LOCAL"; then
    echo "$LOCAL"; exit 0
fi
command -v debootstrap >/dev/null 2>&1 || {
    echo "container_base: $BASE cannot be pulled and debootstrap is missing (apt-get install -y debootstrap, or make image BASE=an image you have)" >&2
    exit 1; }
echo "container_base: $BASE cannot be pulled; building $LOCAL with debootstrap" >&2
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    bookworm "$root" "$MIRROR" >&2
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
tar -C "$root" -c . | podman import -q --change 'CMD ["/bin/bash"]' - "$LOCAL" >/dev/null
echo "$LOCAL"
