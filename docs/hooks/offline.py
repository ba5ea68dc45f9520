"""MkDocs hook: the built site loads nothing from the network.

Material's offline plugin adds the iframe-worker shim (search from ``file://``) as a URL on a
CDN. This hook replaces it with the copy that ``scripts/vendor_docs_shim.sh`` fetched into
``docs/assets/vendor/`` (``make docs`` runs it), or drops it when that copy is missing: search
then works wherever the site is served over HTTP (``make docs-serve``, any local server), and
every page still opens from the folder.
"""

from __future__ import annotations

from pathlib import Path

from mkdocs.plugins import event_priority

SHIM = "assets/vendor/iframe-worker/shim.js"


@event_priority(-100)
def on_config(config):
    polyfills = [u for u in config.extra.get("polyfills", []) if "://" not in u]
    if (Path(config.docs_dir) / SHIM).is_file() and SHIM not in polyfills:
        polyfills.append(SHIM)
    config.extra["polyfills"] = polyfills
    return config
