"""Classifying uploaded images with the served model: decoded within limits, cut into
patches like training (``patchify``), each patch predicted by the :class:`Predictor`,
and the patch-majority verdict."""

from __future__ import annotations

import base64
import binascii
import io
import threading
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from histotile.errors import HistotileError
from histotile.workflows.serve.results import default_positive


class ImageRefused(HistotileError):
    """An upload the service will not classify; ``status`` is the HTTP status (413 over a
    limit, 415 not an image, 422 damaged or unusable)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


_TIFF_MAGIC = (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+")


def decode_image(data: bytes, name: str, max_pixels: int) -> np.ndarray:
    """RGB uint8 (h, w, 3) of a PNG, JPEG or TIFF upload.

    TIFFs are read by histotile's slide reader, as the command line reads them (16-bit,
    float and multi-sample pixels included). Raises :class:`ImageRefused`: 415 when it is
    not an image, 413 when it has more than ``max_pixels`` pixels (checked from the
    header, before decoding), 422 when damaged."""
    if data[:4] in _TIFF_MAGIC:
        return _decode_tiff(data, name, max_pixels)
    from PIL import Image, UnidentifiedImageError

    from histotile.wsi.backends import to_rgb

    try:
        with warnings.catch_warnings():  # the pixel limit below decides, not PIL's warning
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise ImageRefused(415, f"{name}: not an image (send a PNG, JPEG or TIFF)") from None
    except Image.DecompressionBombError as error:
        raise ImageRefused(413, f"{name}: {error}") from None
    except (OSError, ValueError, SyntaxError) as error:
        raise ImageRefused(422, f"{name}: damaged image header ({error})") from None
    _check_pixels(image.size, name, max_pixels)
    try:
        image.load()
        pixels = to_rgb(np.asarray(
            image if image.mode in ("RGB", "RGBA", "L", "LA", "I;16")
            else image.convert("RGBA" if "A" in image.mode else "RGB")))
    except (OSError, ValueError, SyntaxError, EOFError) as error:
        raise ImageRefused(422, f"{name}: the image is damaged or truncated "
                                f"({type(error).__name__}: {error})") from None
    return np.ascontiguousarray(pixels)


def _check_pixels(size: tuple[int, int], name: str, max_pixels: int) -> None:
    width, height = size
    if width * height > max_pixels:
        raise ImageRefused(413, f"{name}: {width} x {height} px is over the limit of "
                                f"{max_pixels:,} pixels (send a smaller image or tile)")


def _decode_tiff(data: bytes, name: str, max_pixels: int) -> np.ndarray:
    """A TIFF upload through :func:`~histotile.wsi.open_slide` (written to a private
    temporary file, removed after): level 0 as RGB uint8."""
    import tempfile

    from histotile.errors import SlideError, UnsupportedFormatError
    from histotile.wsi import open_slide

    with tempfile.TemporaryDirectory(prefix="histotile-upload-") as folder:
        path = Path(folder) / "upload.tif"
        path.write_bytes(data)
        try:
            with open_slide(path) as slide:
                _check_pixels(slide.dimensions, name, max_pixels)
                pixels = slide.read_region((0, 0), 0, slide.dimensions)
        except SlideError as error:  # said of the upload, never of the temporary file
            status = 415 if isinstance(error, UnsupportedFormatError) else 422
            hint = f" ({error.hint})" if error.hint else ""
            raise ImageRefused(status, f"{name}: {error.cause}{hint}") from None
        except (ValueError, OSError, EOFError, IndexError, KeyError) as error:
            # The slide reader lets some damage through as tifffile's own errors (a strip
            # shorter than its header says: TiffFileError, a ValueError); found by the
            # fuzzed uploads test.
            raise ImageRefused(422, f"{name}: the TIFF is damaged or truncated "
                                    f"({type(error).__name__}: {error})") from None
    return np.ascontiguousarray(pixels)


def patch_winners(probabilities: np.ndarray, column: int, threshold: float) -> np.ndarray:
    """The class each patch counts for at ``threshold``: the positive class (``column``)
    when its probability reaches the threshold, else the likeliest other class."""
    others = probabilities.astype(np.float64, copy=True)
    others[:, column] = -np.inf
    winners = others.argmax(axis=1) if probabilities.shape[1] > 1 else np.zeros(
        len(probabilities), np.int64)
    winners[probabilities[:, column] >= threshold] = column
    return winners


class Classifier:
    """The served model: loaded on first use, one prediction at a time."""

    def __init__(self, model_dir: Path, max_pixels: int) -> None:
        self.model_dir = Path(model_dir)
        self.max_pixels = max_pixels
        self._predictor = None
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return self.model_dir.name

    @property
    def predictor(self):
        with self._lock:
            if self._predictor is None:
                from histotile.workflows.tasks.process import load_predictor

                self._predictor = load_predictor(self.model_dir)
            return self._predictor

    def describe(self) -> dict[str, Any]:
        """Name, classes, positive class and patch geometry of the model."""
        predictor = self.predictor
        classes = list(predictor.classes)
        return {"name": self.name, "classes": classes,
                "positive_class": default_positive(classes, predictor.card),
                "patch_size": predictor.tile_size, "step": self.step,
                "architecture": predictor.architecture, "backend": predictor.backend,
                **self.threshold(None, default_positive(classes, predictor.card))}

    def threshold(self, flag: float | None, positive: str) -> dict[str, Any]:
        """The tile threshold (``threshold``) and where it came from
        (``threshold_source``): the request's or the server's, else the model card's
        operating point, else
        :data:`~histotile.models.operating_point.DEFAULT_TILE_THRESHOLD`."""
        from histotile.models.operating_point import tile_threshold

        used = tile_threshold(self.predictor.card, flag, positive)
        return {"threshold": used.value, "threshold_source": used.source}

    @property
    def step(self) -> int:
        """Patch step (px): the training stride in the card, else half a patch."""
        from histotile.tiling.patches import default_step

        predictor = self.predictor
        settings = (predictor.card.get("tiling") or {}).get("settings") or {}
        stride = settings.get("stride") if isinstance(settings, dict) else None
        return int(stride) if stride else default_step(predictor.tile_size)

    def patches(self, image: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
        """Patches (n, T, T, 3) cut like training and their boxes (n, 4) x, y, w, h."""
        from histotile.tiling import patchify_image
        from histotile.tiling.patches import patch_positions

        size = self.predictor.tile_size
        height, width = image.shape[:2]
        if width < size or height < size:
            raise ImageRefused(422, f"{name}: {width} x {height} px is smaller than one "
                                    f"{size} x {size} px patch of the model (send a larger "
                                    "image)")
        tiles = patchify_image(image, size, self.step)
        xs, ys = patch_positions(width, height, size, self.step)
        boxes = np.stack([xs, ys, np.full_like(xs, size), np.full_like(xs, size)], axis=1)
        return tiles, boxes

    def probabilities(self, tiles: np.ndarray) -> np.ndarray:
        predictor = self.predictor
        with self._lock:
            return predictor.predict(tiles)

    def classify(self, image: np.ndarray, name: str,
                 threshold: float | None = None) -> dict[str, Any]:
        """Per-patch probabilities, class fractions and the patch-majority decision at
        ``threshold`` (None: the model card's operating point, else
        :data:`~histotile.models.operating_point.DEFAULT_TILE_THRESHOLD`)."""
        from histotile.postprocess import slide_decision
        from histotile.postprocess.decisions import DEFAULT_FRACTION_THRESHOLD

        tiles, boxes = self.patches(image, name)
        probabilities = self.probabilities(tiles)
        classes = list(self.predictor.classes)
        positive = default_positive(classes, self.predictor.card)
        column = classes.index(positive)
        used = self.threshold(threshold, positive)
        threshold = used["threshold"]
        decision = slide_decision(probabilities[:, column].astype(np.float64),
                                  tile_threshold=threshold,
                                  fraction_threshold=DEFAULT_FRACTION_THRESHOLD)
        winners = np.bincount(patch_winners(probabilities, column, threshold),
                              minlength=len(classes))
        others = [c for c in classes if c != positive]
        negative = others[0] if len(others) == 1 else f"not {positive}"
        return {
            "classes": classes,
            "positive_class": positive,
            **used,
            "image": {"width": int(image.shape[1]), "height": int(image.shape[0])},
            "patch_size": int(self.predictor.tile_size),
            "step": self.step,
            "probabilities": [
                {"box": [int(v) for v in box],
                 "probabilities": {c: round(float(p), 6) for c, p in zip(classes, row)}}
                for box, row in zip(boxes, probabilities)],
            "fraction": {c: float(n) / len(tiles) for c, n in zip(classes, winners)},
            "decision": {"label": positive if decision.positive else negative,
                         "positive": bool(decision.positive),
                         "positive_fraction": float(decision.fraction),
                         "positive_patches": int(decision.positive_tiles),
                         "patches": int(decision.tiles)},
        }

    def predict_instances(self, instances: list[Any], max_bytes: int) -> list[list[float]]:
        """TensorFlow-Serving ``:predict``: each instance a base64 image (a string or
        ``{"b64": ...}``); its prediction the mean class probabilities of its patches."""
        out = []
        for index, instance in enumerate(instances):
            label = f"instances[{index}]"
            encoded = instance.get("b64") if isinstance(instance, dict) else instance
            if not isinstance(encoded, str):
                raise ImageRefused(422, f"{label}: expected a base64 string or "
                                        '{"b64": "..."}')
            if len(encoded) * 3 // 4 > max_bytes:
                raise ImageRefused(413, f"{label}: over the upload limit of {max_bytes:,} "
                                        "bytes")
            try:
                data = base64.b64decode(encoded, validate=True)
            except (binascii.Error, ValueError):
                raise ImageRefused(422, f"{label}: not valid base64") from None
            image = decode_image(data, label, self.max_pixels)
            tiles, _ = self.patches(image, label)
            out.append([round(float(p), 6) for p in self.probabilities(tiles).mean(axis=0)])
        return out
