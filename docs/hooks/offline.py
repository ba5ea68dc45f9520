"""MkDocs hook: the built site loads nothing from the network.

Material's offline plugin adds the iframe-worker shim (search from ``file://`` pages) as a
URL on a CDN. This hook drops every polyfill that is not a local file, so no page loads a
script from elsewhere: every page opens from the ``site/`` folder itself, and search works
wherever the site is served over HTTP (``make docs-serve``, or any local web server such as
``python -m http.server -d site``).
"""

from __future__ import annotations

from mkdocs.plugins import event_priority


@event_priority(-100)  # after the offline plugin has added its shim
def on_config(config):
    config.extra["polyfills"] = [url for url in config.extra.get("polyfills", [])
                                 if "://" not in url]
    return config
