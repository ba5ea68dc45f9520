"""MkDocs hook: the REST API page is rendered from the service's own OpenAPI document.

At build time the FastAPI app of ``histotile serve`` is built (on the bundled sample
slide's folder, no model) and ``app.openapi()`` is turned into Markdown: one section per
tag, one entry per operation with its parameters, body and answers, then the schemas. A
route added, removed or changed in the code changes the page; nothing is typed by hand.
"""

from __future__ import annotations

import re
from typing import Any

MARKER = "<!-- generated: rest-api -->"
TAG_TITLES = {"deep zoom": "Deep Zoom tiles", "api": "Slides, models, classification and runs",
              "operations": "Operations: health, readiness, metrics"}


def openapi() -> dict[str, Any]:
    """The OpenAPI document of a service built on the bundled slide's folder."""
    import histotile
    from histotile.workflows.serve import ServeSettings
    from histotile.workflows.serve.app import create_app

    app = create_app(ServeSettings(roots=[histotile.sample_slide().parent]))
    return app.openapi()


def _text(text: str | None) -> str:
    """A docstring's text as one Markdown paragraph (``x`` -> `x`)."""
    text = " ".join((text or "").split())
    return re.sub(r"``([^`]+)``", r"`\1`", text).replace("|", "\\|")


def _type(schema: dict[str, Any]) -> str:
    """A schema in a few words: ``integer >= 0``, ``array of B64Image``, ``string | null``."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return f"[{name}](#schema-{name.lower()})"
    if "anyOf" in schema:
        return " or ".join(_type(s) for s in schema["anyOf"])
    kind = schema.get("type", "any")
    if kind == "array":
        kind = f"array of {_type(schema.get('items', {}))}"
    limits = [f"{word} {schema[key]:g}" for key, word in (
        ("minimum", ">="), ("exclusiveMinimum", ">"), ("maximum", "<="),
        ("exclusiveMaximum", "<"), ("minItems", "items >="), ("maxItems", "items <="))
        if key in schema]
    if schema.get("format"):
        kind += f" ({schema['format']})"
    return kind + (", " + ", ".join(limits) if limits else "")


def _parameters(operation: dict[str, Any]) -> list[str]:
    rows = operation.get("parameters", [])
    if not rows:
        return []
    lines = ["| parameter | in | type | required | description |", "|---|---|---|---|---|"]
    for p in rows:
        lines.append(f"| `{p['name']}` | {p['in']} | {_type(p.get('schema', {}))} | "
                     f"{'yes' if p.get('required') else 'no'} | {_text(p.get('description'))} |")
    return lines + [""]


def _body(operation: dict[str, Any], schemas: dict[str, Any]) -> list[str]:
    body = operation.get("requestBody")
    if not body:
        return []
    lines = []
    for media, content in body.get("content", {}).items():
        schema = content.get("schema", {})
        name = schema.get("$ref", "").rsplit("/", 1)[-1]
        resolved = schemas.get(name, schema)
        lines += [f"Body (`{media}`{', required' if body.get('required') else ''}):", ""]
        lines += _fields(resolved)
    return lines


def _fields(schema: dict[str, Any]) -> list[str]:
    properties = schema.get("properties", {})
    if not properties:
        return [f"{_type(schema)}", ""]
    required = set(schema.get("required", []))
    lines = ["| field | type | required | description |", "|---|---|---|---|"]
    for name, field in properties.items():
        lines.append(f"| `{name}` | {_type(field)} | {'yes' if name in required else 'no'} | "
                     f"{_text(field.get('description'))} |")
    return lines + [""]


def _answers(operation: dict[str, Any], shared: set[str]) -> list[str]:
    lines = ["| status | meaning | body |", "|---|---|---|"]
    for status, answer in sorted(operation.get("responses", {}).items()):
        if status in shared:
            continue
        media = ", ".join(f"`{m}`" for m in answer.get("content", {})) or "none"
        lines.append(f"| {status} | {_text(answer.get('description'))} | {media} |")
    return lines + [""]


def markdown(document: dict[str, Any]) -> str:
    schemas = document.get("components", {}).get("schemas", {})
    operations = [(path, method, op) for path, ops in document["paths"].items()
                  for method, op in ops.items()]
    shared = set.intersection(*(set(op.get("responses", {})) for _, _, op in operations))
    lines = [f"Generated from the OpenAPI document of histotile serve "
             f"{document['info']['version']} (OpenAPI {document['openapi']}).", ""]
    tags = list(dict.fromkeys(op.get("tags", ["other"])[0] for _, _, op in operations))
    for tag in tags:
        lines += [f"## {TAG_TITLES.get(tag, tag.capitalize())}", ""]
        for path, method, op in operations:
            if op.get("tags", ["other"])[0] != tag:
                continue
            lines += [f"### `{method.upper()} {path}`", "", _text(op.get("description")), ""]
            lines += _parameters(op) + _body(op, schemas) + _answers(op, shared)
    example = next(op for _, _, op in operations)
    lines += ["## Errors every operation can answer", "",
              "Every error is a JSON object `{\"detail\": ...}` ([ErrorBody](#schema-errorbody)).",
              "", "| status | meaning |", "|---|---|"]
    for status in sorted(shared - {s for s in shared if s.startswith("2")}):
        lines.append(f"| {status} | {_text(example['responses'][status].get('description'))} |")
    lines += ["", "## Schemas", ""]
    for name, schema in schemas.items():
        lines += [f"### {name} {{#schema-{name.lower()}}}", "", _text(schema.get("description")),
                  ""] + _fields(schema)
    return "\n".join(lines)


def on_page_markdown(text: str, page, config, files) -> str:
    if MARKER in text:
        text = text.replace(MARKER, markdown(openapi()))
    return text
