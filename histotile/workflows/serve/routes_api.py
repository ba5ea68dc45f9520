"""The JSON API: slides, predictions for the overlay, annotation layers, classification
(``/api/classify`` and the TensorFlow-Serving style ``/v1/models/{name}:predict``) and
run jobs."""

from __future__ import annotations

from typing import Annotated, Any

import anyio
from fastapi import APIRouter, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import Response
from pydantic import BaseModel, Field
from starlette.convertors import StringConvertor, register_url_convertor

from histotile.workflows.serve.http_rules import BODY_RESPONSES, UPLOAD_RESPONSES, ErrorBody
from histotile.workflows.serve.results import overlay_payload, predictions_path, slide_summary
from histotile.workflows.serve.routes_tiles import slide_path

router = APIRouter(prefix="", tags=["api"])


class _ModelName(StringConvertor):
    """A model name: no ':' either, so ``/v1/models/{name}:predict`` is never also the
    status route of a model named ``NAME:predict`` (one path, one set of methods)."""

    regex = "[^/:]+"


register_url_convertor("model_name", _ModelName())
MAX_INSTANCES = 64


# A base64 PNG, JPEG or TIFF (a format of this document's own, named so clients and
# schemathesis can tell these strings from any base64).
IMAGE_FORMAT = "histotile-image-base64"
IMAGE_TYPES = "image/png, image/jpeg, image/tiff"


class RunRequest(BaseModel):
    slide: str = Field(description="A slide name from GET /api/slides.")
    level: int | None = Field(None, ge=0, description="Pyramid level to predict at "
                              "(at most one of level and magnification; neither: the "
                              "model card's resolution).")
    magnification: float | None = Field(None, gt=0, le=400, description="Objective power "
                                        "to predict at (20 for 20x).")


class B64Image(BaseModel):
    b64: str = Field(json_schema_extra={"format": IMAGE_FORMAT})


class PredictRequest(BaseModel):
    instances: list[Annotated[str, Field(json_schema_extra={"format": IMAGE_FORMAT})]
                    | B64Image] = Field(
        min_length=1, max_length=MAX_INSTANCES,
        description='Base64 PNG, JPEG or TIFF images, each a string or {"b64": "..."} '
                    "(TensorFlow Serving).")


def _state(request: Request):
    return request.app.state.histotile


@router.get("/api/slides")
def list_slides(request: Request) -> list[dict[str, Any]]:
    """Every slide the server shows, with its results (decision, positive fraction,
    tiles, sensitivity and specificity) when the results folder has them."""
    state = _state(request)
    return [slide_summary(state.settings.results, name)
            for name in state.catalog.names()]


@router.get("/api/slides/{slide}")
async def slide_detail(request: Request, slide: str) -> dict[str, Any]:
    """A slide's metadata (dimensions, levels, mpp, vendor), its results and layers."""
    from histotile.workflows.tasks.inputs import slide_info

    state = _state(request)
    path = slide_path(request, slide)
    info = await state.in_tile_thread(slide_info, path)
    info.pop("path", None)  # never reveal where files live
    annotation = state.catalog.annotation(slide)
    return {**info, "name": slide,
            "results": slide_summary(state.settings.results, slide),
            "annotation": None if annotation is None else _annotation_kind(annotation)}


@router.get("/api/slides/{slide}/predictions")
async def slide_predictions(request: Request, slide: str) -> dict[str, Any]:
    """Tile boxes (x, y, extent in level-0 px) and per-class probabilities."""
    state = _state(request)
    slide_path(request, slide)
    path = predictions_path(state.settings.results, slide)
    if path is None:
        raise HTTPException(404, f"{slide}: no predictions in the results folder (run "
                                 "'histotile run' on it, or start a job from the page)")
    return await anyio.to_thread.run_sync(overlay_payload, path)


def _annotation_kind(path) -> str:
    return "geojson" if path.suffix.lower() in (".geojson", ".json") else "image"


@router.get("/api/slides/{slide}/annotation", response_class=Response,
            responses={200: {"content": {"image/png": {}, "application/geo+json": {}}}})
async def slide_annotation(request: Request, slide: str) -> Response:
    """The slide's annotation: a PNG of the painted overlay or mask (whole slide, at most
    2048 px), or the GeoJSON (level-0 px coordinates) as it is."""
    from histotile.workflows.serve.tiles import thumbnail_png

    state = _state(request)
    slide_path(request, slide)
    path = state.catalog.annotation(slide)
    if path is None:
        raise HTTPException(404, f"{slide}: no annotation beside the slide")
    if _annotation_kind(path) == "geojson":
        return Response(path.read_bytes(), media_type="application/geo+json")
    data = await state.in_tile_thread(thumbnail_png, path, 2048)
    return Response(data, media_type="image/png")


def _classifier(request: Request, name: str | None = None):
    classifier = _state(request).classifier
    if classifier is None:
        raise HTTPException(404, "no model is served (start 'histotile serve' with --model)")
    if name is not None and name != classifier.name:
        raise HTTPException(404, f"no model named {name!r} (this server has "
                                 f"{classifier.name!r})")
    return classifier


@router.get("/api/model")
async def model(request: Request) -> dict[str, Any]:
    """The served model: name, classes, positive class, patch size and step (px)."""
    return await anyio.to_thread.run_sync(_classifier(request).describe)


@router.post("/api/classify", responses=UPLOAD_RESPONSES, openapi_extra={
    "requestBody": {"content": {"multipart/form-data": {
        "encoding": {"file": {"contentType": IMAGE_TYPES}}}}}})
async def classify(request: Request, file: Annotated[UploadFile, File()],
                   # A number or nothing: typed float, not float | None, so the document
                   # offers no null, which a multipart form cannot carry (schemathesis
                   # sent one and the parse refused it). Omitted: None.
                   threshold: Annotated[float, Form(ge=0.0, le=1.0)] = None,  # type: ignore[assignment]
                   ) -> dict[str, Any]:
    """Classify an uploaded PNG, JPEG or TIFF: patches cut like training, per-patch
    probabilities with their boxes (image px), class fractions and the patch-majority
    decision at ``threshold`` (default: the server's ``--threshold``, else the model
    card's operating point, else 0.5; the answer says which in ``threshold_source``)."""
    from histotile.workflows.serve.classify import ImageRefused, decode_image

    state = _state(request)
    classifier = _classifier(request)
    limit = state.settings.max_upload_bytes
    data = await file.read(limit + 1)
    name = file.filename or "upload"
    if len(data) > limit:
        raise HTTPException(413, f"{name}: over the upload limit of {limit:,} bytes")
    if not data:
        raise HTTPException(422, f"{name}: the file is empty (send a PNG, JPEG or TIFF)")

    def work() -> dict[str, Any]:
        image = decode_image(data, name, state.settings.max_pixels)
        return classifier.classify(image, name, state.settings.threshold
                                   if threshold is None else threshold)

    try:
        return await anyio.to_thread.run_sync(work)
    except ImageRefused as refused:
        raise HTTPException(refused.status, refused.message) from None


@router.get("/v1/models/{name:model_name}")
def model_status(request: Request, name: str) -> dict[str, Any]:
    """TensorFlow-Serving style model status."""
    _classifier(request, name)
    return {"model_version_status": [{"version": "1", "state": "AVAILABLE",
                                      "status": {"error_code": "OK", "error_message": ""}}]}


@router.post("/v1/models/{name:model_name}:predict", responses=UPLOAD_RESPONSES)
async def predict(request: Request, name: str, body: PredictRequest) -> dict[str, Any]:
    """TensorFlow-Serving REST ``predict``: ``{"instances": [base64 images]}`` ->
    ``{"predictions": [[p_class0, p_class1, ...], ...]}`` (mean over each image's
    patches, classes in the order of GET /api/model)."""
    from histotile.workflows.serve.classify import ImageRefused

    state = _state(request)
    classifier = _classifier(request, name)
    instances = [i.model_dump() if isinstance(i, B64Image) else i for i in body.instances]
    try:
        predictions = await anyio.to_thread.run_sync(
            classifier.predict_instances, instances, state.settings.max_upload_bytes)
    except ImageRefused as refused:
        raise HTTPException(refused.status, refused.message) from None
    return {"predictions": predictions}


def _jobs(request: Request):
    jobs = _state(request).jobs
    if jobs is None:
        raise HTTPException(404, "jobs need --model and --results (start 'histotile serve' "
                                 "with both)")
    return jobs


@router.post("/api/runs", status_code=202, responses={
    **BODY_RESPONSES, 429: {"model": ErrorBody, "description": "Too many jobs are waiting."}})
def start_run(request: Request, body: RunRequest) -> dict[str, Any]:
    """Start ``histotile run`` on a slide this server shows, at the model card's
    resolution or the ``level`` / ``magnification`` given; poll GET /api/runs/{id}."""
    from histotile.workflows.options import Geometry
    from histotile.workflows.serve.jobs import JobsFull

    jobs = _jobs(request)
    path = slide_path(request, body.slide)
    if body.level is not None and body.magnification is not None:
        raise HTTPException(422, "give at most one of level and magnification")
    resolution = Geometry(level=body.level, magnification=body.magnification)
    try:
        job = jobs.start(body.slide, path, _state(request).catalog.annotation(body.slide),
                         resolution)
    except JobsFull as error:
        raise HTTPException(429, str(error)) from None
    return job.to_dict()


@router.get("/api/runs")
def list_runs(request: Request) -> list[dict[str, Any]]:
    """Every job of this server, oldest first."""
    return [job.to_dict() for job in _jobs(request).all()]


@router.get("/api/runs/{job_id}")
def run_status(request: Request, job_id: str) -> dict[str, Any]:
    """One job: state (queued, running, done, failed), stage, seconds, decision, error."""
    job = _jobs(request).get(job_id)
    if job is None:
        raise HTTPException(404, f"no job {job_id!r}")
    return job.to_dict()
