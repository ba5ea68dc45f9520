#!/bin/sh
# Ship OpenSeadragon inside the package (the viewer never loads it from a CDN): fetch the
# pinned release from the npm registry with `npm pack`, check its checksum, and copy its
# build/openseadragon/ (scripts, button images, licence; no source maps) to
#   histotile/workflows/serve/static/vendor/openseadragon/
# Run by `make vendor` (and so by `make test`); the result is not committed.
set -eu
VERSION=6.1.1
SHA256=b4ab2942f33b90e0448e4d20fc5ed14cee049f1f3ae49d70afd4b05e9a2f92d0
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DEST="$ROOT/histotile/workflows/serve/static/vendor/openseadragon"
command -v npm >/dev/null 2>&1 || {
    echo "vendor_openseadragon: npm is needed (apt-get install -y npm)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "openseadragon@$VERSION" >/dev/null)
echo "$SHA256  $work/openseadragon-$VERSION.tgz" | sha256sum -c --quiet - || {
    echo "vendor_openseadragon: checksum mismatch for openseadragon-$VERSION.tgz" >&2; exit 1; }
tar -xzf "$work/openseadragon-$VERSION.tgz" -C "$work"
rm -rf "$DEST.partial"
mkdir -p "$DEST.partial"
cp -R "$work/package/build/openseadragon/." "$DEST.partial/"
cp "$work/package/LICENSE.txt" "$DEST.partial/LICENSE.txt"
rm -f "$DEST.partial"/*.map
echo "$VERSION" > "$DEST.partial/VERSION"
rm -rf "$DEST"
mv "$DEST.partial" "$DEST"
echo "OpenSeadragon $VERSION -> $DEST"
