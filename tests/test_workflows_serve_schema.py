"""``histotile serve`` against its own OpenAPI document with schemathesis, every check
(``--checks all``) over every operation, slide and model names fixed to the real ones so
the Deep Zoom and model routes are reached: the service and its description agree (0
failures) and it never answers 5xx. A bounded run: a few generated requests per operation
and generation mode, 143 in all (Hypothesis ends early where the space is small)."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from PIL import Image

schemathesis = pytest.importorskip("schemathesis")

EXAMPLES = 15  # per operation and mode: at most 16 x 2 x 15 = 480; small spaces end sooner


def _image(kind: str):
    """Encoded images the served model can classify (patches of 64 px fit in them)."""

    def encode(seed: int, width: int, height: int) -> bytes:
        pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, kind)
        return buffer.getvalue()

    return st.builds(encode, st.integers(0, 2**16), st.integers(64, 96),
                     st.integers(64, 96))


@pytest.fixture(scope="module")
def schema(serve_world):
    from schemathesis.specs.openapi.formats import (
        register_string_format,
        unregister_string_format,
    )
    from schemathesis.specs.openapi.media_types import register_media_type

    from histotile.workflows.serve import ServeSettings, create_app
    from histotile.workflows.serve.routes_api import IMAGE_FORMAT

    for kind, media in (("PNG", "image/png"), ("JPEG", "image/jpeg"), ("TIFF", "image/tiff")):
        register_media_type(media, _image(kind))
    register_string_format(IMAGE_FORMAT,
                           _image("PNG").map(lambda data: base64.b64encode(data).decode()))
    app = create_app(ServeSettings(roots=[serve_world.slides], results=serve_world.results,
                                   model=serve_world.model))
    yield schemathesis.openapi.from_asgi("/openapi.json", app)
    unregister_string_format(IMAGE_FORMAT)


def test_the_service_and_its_document_agree(schema, serve_world):
    from schemathesis.checks import CHECKS, load_all_checks
    from schemathesis.core.failures import Failure, FailureGroup
    from schemathesis.generation import GenerationMode

    load_all_checks()
    checks = CHECKS.get_all()
    fixed = {"slide": "case", "name": serve_world.model.name}
    failures: list[str] = []
    cases = 0
    seen: set[int] = set()
    by_operation: dict[str, set[int]] = {}
    operations = [result.ok() for result in schema.get_all_operations()]
    for operation in operations:
        names = {p.name for p in operation.iter_parameters() if p.location == "path"}
        pinned = {k: v for k, v in fixed.items() if k in names}
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                      suppress_health_check=list(HealthCheck))
            @given(case=operation.as_strategy(generation_mode=mode, path_parameters=pinned))
            def check(case) -> None:
                nonlocal cases
                cases += 1
                try:
                    response = case.call_and_validate(checks=checks)
                    seen.add(response.status_code)
                    by_operation.setdefault(case.operation.label, set()).add(response.status_code)
                except (Failure, FailureGroup) as failure:  # collect them all
                    mode_name = case.meta.generation.mode.value
                    failures.append(f"{case.method} {case.formatted_path} ({mode_name}): "
                                    f"{str(failure)[:300]}")

            try:
                check()
            except Unsatisfiable:  # no parameter to make invalid (GET /api/slides)
                assert mode is GenerationMode.NEGATIVE
    print(f"\nschemathesis: {cases} cases over {len(operations)} operations, "
          f"statuses {sorted(seen)}")
    assert failures == [], "\n".join(failures)
    assert len(operations) == 16  # every operation of the API (and the ops probes) exercised
    assert failures == [], "\n".join(failures)
    assert 200 in seen and 404 in seen and 422 in seen and not any(s >= 500 for s in seen)
    # Generated images reached the model (not only refusals) through both upload routes.
    assert 200 in by_operation["POST /api/classify"]
    assert 200 in by_operation["POST /v1/models/{name}:predict"]
    assert cases <= 2 * EXAMPLES * len(operations)
