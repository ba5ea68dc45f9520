"""Artefacts of the slide's mounting: air bubbles under the coverslip and coverslip edges.

Both show up, at low resolution, as thin *dark grey lines*: a bubble's refractile rim
and the edge of the coverslip bend light of every colour out of the objective, so they
add the same optical density (OD) to all three channels of whatever lies under them. A
line pixel is one whose OD exceeds that of its local median (what lies under a line
narrower than half the window) by at least :data:`LINE_OD` on average, alike in R, G and
B (:data:`LINE_GREYNESS`); the dark details of tissue add haematoxylin's or eosin's
colour instead, and broad dark regions (dense tissue, folds, ink) are their own median.

A *bubble* is an ellipse between :data:`BUBBLE_MIN_UM` and :data:`BUBBLE_MAX_UM` across
whose outline lies mostly on line pixels (:data:`BUBBLE_MIN_RIM`) and whose inside mostly
does not: fitted to the outline of each hole, component or component hull of the line
mask, then refitted to the line pixels near it, so dark details touching a rim do not
pull it off; its mask is the filled ellipse with its rim. A
*coverslip edge* is a straight run of line pixels (probabilistic Hough transform) at
least :data:`EDGE_MIN_UM` long and :data:`EDGE_MIN_SHARE` of the image's shorter side;
its mask is a band :data:`EDGE_BAND_UM` wide along it.

Everything is judged at about :data:`MOUNT_MPP` um/px (the QC view's scale; finer
images are shrunk first and the masks brought back to their pixels), so a 4096 x 4096
view at 0.5 um/px costs a 256 x 256 analysis.

Written here, with OpenCV (median, contours, Hough lines), because no maintained library
offers it as a call: HistoQC's bubble and coverslip modules are part of a GPL
application, not a library, and no code of theirs is used.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from histotile.tiling._pixels import grow, rgb_uint8, shrink

MOUNT_MPP = 8.0
"""Resolution (um/px) the mounting artefacts are judged at: the QC view's (about 8 um/px);
bubbles are 100 um or more across and edges millimetres long, so finer pixels add cost,
not information."""
LINE_MAX_UM = 64.0
"""Side (microns) of the median window that gives what lies under a line: lines up to
about half as wide (bubble rims and coverslip edges are a few to a few tens of microns)
are seen; wider dark regions are their own median and are not lines."""
LINE_OD = 0.1
"""A line pixel adds at least this OD (mean over R, G, B) to its local median. A 6-um rim
that passes 37 % of the light (grey 90 over glass), averaged into an 8-um pixel, adds
about 0.2, over glass and over tissue alike; half as much where it straddles two."""
LINE_GREYNESS = 0.6
"""... and adds it to all channels alike: its smallest channel's added OD is at least
this share of its largest (1 for grey; haematoxylin adds about 0.57 as much in blue as
in green, eosin 0.27 as much in red), so nuclei and stained strands are not lines."""
SPECK_UM = 48.0
"""Line components of fewer pixels than this many microns long are specks (dust, dark
grains of tissue), dropped before rims are closed: a rim, even broken where it crosses
dense tissue, runs in pieces of hundreds of microns."""
RIM_GAP_UM = 24.0
"""Gaps in a rim up to about this (microns) are bridged (a closing) before bubbles are
sought (where the rim crosses a dark, noisy region); wider ones are left to the convex
hull candidates, as a wider closing merges the dark details of tissue into blobs."""
BUBBLE_MIN_RIM = 0.75
"""Least share of a bubble's fitted ellipse that lies on (or next to) line pixels:
bubbles are round or oval and their rims closed, while an ellipse through the dark
details of tissue runs mostly over tissue."""
BUBBLE_MIN_UM = 100.0
"""Smallest bubble (microns across its shorter axis): smaller dark rings are dust and
cell outlines, and the dark details of tissue close small loops by chance."""
BUBBLE_MAX_UM = 6000.0
"""Largest bubble (microns across, the diameter of a disc of its area): bubbles under a
coverslip reach several millimetres."""
RIM_TOLERANCE = 0.15
"""Line pixels within this share of the radius of a candidate ellipse (or 2 px) count
as its rim when the ellipse is last refitted (the first refits take twice and 4/3 this
band, so a first guess pulled off by attached details still finds the rim)."""
BUBBLE_MAX_ASPECT = 3.0
"""Longest over shortest axis of that ellipse: flattened bubbles are oval, not slits."""
BUBBLE_MIN_HOLLOW = 0.5
"""Least share of a bubble's region that is not line: a rim is thin; a dark round
tissue fragment or nucleus cluster is solid (and stained, so not line either)."""
EDGE_MIN_UM = 2000.0
"""Shortest coverslip edge (microns): a coverslip is 18-60 mm a side, so its edge runs
across much of any view; tissue borders are steps, not lines, and rarely straight so
long."""
EDGE_MIN_SHARE = 0.3
"""... and at least this share of the image's shorter side."""
EDGE_MAX_GAP_UM = 48.0
"""Gaps (microns) allowed along an edge (where it crosses dark tissue)."""
EDGE_BAND_UM = 48.0
"""Width (microns) of the band marked along a coverslip edge."""


# The pixel helpers below repeat artefacts.py's few lines (input check, area shrink,
# nearest-neighbour return, OD table) because artefact_masks there calls this module:
# importing them back would make an import cycle.
_OD = (-np.log10(np.maximum(np.arange(256), 1) / 255.0)).astype(np.float32)


def _analysis(image: np.ndarray, mpp: float | None) -> tuple[np.ndarray, float]:
    """The image at about :data:`MOUNT_MPP` um/px (area average) and its pixel size
    (None: 0.5 um/px)."""
    mpp = mpp or 0.5
    factor = max(1, int(MOUNT_MPP // mpp))
    return shrink(image, factor), mpp * factor


def _odd(um: float, mpp: float, least: int = 3) -> int:
    return max(least, 2 * round(um / mpp / 2) + 1)


def line_pixels(small: np.ndarray, mpp: float) -> np.ndarray:
    """Bool mask of thin dark grey line pixels (see the module docstring) of an RGB uint8
    image whose pixels are ``mpp`` microns (meant for about :data:`MOUNT_MPP`)."""
    around = cv2.medianBlur(small, min(_odd(LINE_MAX_UM, mpp), 255))
    added = _OD[small] - _OD[around]  # OD, -log10(I / 255), by a 256-entry table
    low, high = added.min(axis=-1), added.max(axis=-1)
    return ((added.mean(axis=-1) >= LINE_OD)
            & (low >= LINE_GREYNESS * np.maximum(high, 1e-6)))


def _drop_specks(lines: np.ndarray, mpp: float) -> np.ndarray:
    """The line mask (uint8 0/1) without its components of fewer pixels than
    :data:`SPECK_UM` is long: the scattered dark specks of tissue, which a closing
    would merge into blobs."""
    # Pieces of a rim one pixel apart are joined first (a 3 x 3 closing).
    lines = cv2.morphologyEx(lines.view(np.uint8), cv2.MORPH_CLOSE, np.ones((3, 3), np.uint8))
    count, labels, stats, _ = cv2.connectedComponentsWithStats(lines, 8)
    keep = stats[:, cv2.CC_STAT_AREA] >= max(3.0, SPECK_UM / mpp)
    keep[0] = False
    return keep[labels].view(np.uint8) if count > 1 else lines


def _candidates(closed: np.ndarray, side: int, low: float):
    """(box, filled region in the box) of each candidate bubble of a line mask padded by
    ``side``: the holes (a rim with dark details attached outside), the filled outer
    outlines opened to cut off thin attached lines, and the convex hulls of the
    components (a rim with dark details attached inside, or a line across it)."""
    contours, hierarchy = cv2.findContours(closed, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_NONE)
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (side, side))
    for contour, (_, _, _, parent) in zip(contours, [] if hierarchy is None else hierarchy[0]):
        x, y, w, h = cv2.boundingRect(contour)
        if w * h < low:
            continue
        # The box reaches past the candidate: the rim of a bubble split by a dark line
        # across it lies partly outside either half.
        margin = max(side, (w + h) // 4)
        x0, y0 = max(0, x - margin), max(0, y - margin)
        box = (slice(y0, min(closed.shape[0], y + h + margin)),
               slice(x0, min(closed.shape[1], x + w + margin)))
        region = np.zeros((box[0].stop - y0, box[1].stop - x0), np.uint8)
        hull = region.copy()
        cv2.drawContours(region, [contour], -1, 1, cv2.FILLED, offset=(-x0, -y0))
        if parent >= 0:
            yield box, region
            continue
        yield box, cv2.morphologyEx(region, cv2.MORPH_OPEN, disc)
        cv2.fillConvexPoly(hull, cv2.convexHull(contour) - (x0, y0), 1)
        yield box, hull


def _radius(ellipse, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Each point's radius in the ellipse's frame: 1 on it, 0 at its centre."""
    (cx, cy), (width, height), angle = ellipse
    c, s = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    dx, dy = xs - cx, ys - cy
    return np.hypot((dx * c + dy * s) / (width / 2), (dy * c - dx * s) / (height / 2))


def _fit_rim(region: np.ndarray, lines: np.ndarray):
    """The ellipse through the line pixels near a candidate region's outline (fitted to
    the outline, then refitted to the line pixels near it, the band narrowing to
    :data:`RIM_TOLERANCE`, so dark details touching the rim on either side drop out),
    or None."""
    contours, _ = cv2.findContours(region, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    outline = max(contours, key=len, default=())
    if len(outline) < 5:
        return None
    ellipse = cv2.fitEllipse(outline)
    ys, xs = np.nonzero(lines)
    for widen in (2.0, 4 / 3, 1.0, 1.0):
        if min(ellipse[1]) < 2:
            return None
        near = np.abs(_radius(ellipse, xs, ys) - 1) <= max(
            widen * RIM_TOLERANCE, 2.0 / min(ellipse[1]))
        if near.sum() < 5:
            return None
        ellipse = cv2.fitEllipse(np.column_stack([xs[near], ys[near]]).astype(np.float32))
    return ellipse


def _bubble(region: np.ndarray, lines: np.ndarray, low: float, high: float):
    """The filled ellipse (uint8 0/1, the box's shape) of a candidate that is a bubble:
    in the size range, oval, its outline mostly on line pixels and its inside mostly
    not; None for the others."""
    ellipse = _fit_rim(region, lines)
    if ellipse is None:
        return None
    (cx, cy), (width, height), angle = ellipse
    if (not low <= math.pi / 4 * min(width, height) ** 2
            or math.pi / 4 * width * height > high
            or max(width, height) > BUBBLE_MAX_ASPECT * min(width, height)):
        return None
    # The outline, sampled every pixel or so, must fall on (or next to) line pixels.
    steps = np.linspace(0, 2 * math.pi, max(32, int(1.6 * (width + height))), endpoint=False)
    c, s = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    u, v = width / 2 * np.cos(steps), height / 2 * np.sin(steps)
    xs = np.rint(cx + u * c - v * s).astype(int)
    ys = np.rint(cy + u * s + v * c).astype(int)
    inside = (xs >= 0) & (ys >= 0) & (xs < lines.shape[1]) & (ys < lines.shape[0])
    near = cv2.dilate(lines, np.ones((3, 3), np.uint8))
    if (near[ys[inside], xs[inside]] > 0).sum() < BUBBLE_MIN_RIM * len(steps):
        return None
    filled = np.zeros_like(lines)
    cv2.ellipse(filled, ((cx, cy), (width + 2, height + 2), angle), 1, cv2.FILLED)
    hollow = (filled & (1 - lines)).sum()
    return filled if hollow >= BUBBLE_MIN_HOLLOW * filled.sum() else None


def _bubbles(lines: np.ndarray, mpp: float) -> np.ndarray:
    """Filled ellipses within the bubble size range outlined by the line mask (with
    their rim); see :func:`_candidates` and :func:`_bubble`."""
    # Gaps in a rim are bridged first, up to RIM_GAP_UM; a margin keeps every box inside.
    side = _odd(RIM_GAP_UM, mpp)
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (side, side))
    closed = cv2.morphologyEx(_drop_specks(lines, mpp), cv2.MORPH_CLOSE, disc)
    closed = cv2.copyMakeBorder(closed, side, side, side, side, cv2.BORDER_CONSTANT, value=0)
    out = np.zeros_like(closed)
    low = math.pi / 4 * (BUBBLE_MIN_UM / mpp) ** 2
    high = math.pi / 4 * (BUBBLE_MAX_UM / mpp) ** 2
    for box, region in _candidates(closed, side, low):
        filled = _bubble(region, closed[box], low, high)
        if filled is not None:
            out[box] |= filled
    return out[side:-side, side:-side].astype(bool)


def _edges(lines: np.ndarray, mpp: float) -> np.ndarray:
    """A band along each long straight run of line pixels."""
    out = np.zeros(lines.shape, np.uint8)
    length = max(EDGE_MIN_UM / mpp, EDGE_MIN_SHARE * min(lines.shape))
    if length > math.hypot(*lines.shape) or not lines.any():
        return out.view(bool)
    segments = cv2.HoughLinesP(lines.view(np.uint8), 1, np.pi / 360,
                               threshold=max(10, int(0.6 * length)),
                               minLineLength=length,
                               maxLineGap=max(1.0, EDGE_MAX_GAP_UM / mpp))
    if segments is None:
        return out.view(bool)
    band = max(1, round(EDGE_BAND_UM / mpp))
    for x0, y0, x1, y1 in segments[:, 0]:
        cv2.line(out, (int(x0), int(y0)), (int(x1), int(y1)), 1, band)
    return out.view(bool)


def mount_masks(image: np.ndarray, mpp: float | None = None) -> dict[str, np.ndarray]:
    """Bool (h, w) masks ``bubble`` and ``edge`` (see :func:`bubble_mask` and
    :func:`edge_mask`) of an RGB uint8 image whose pixels are ``mpp`` microns (None: 0.5),
    from one analysis at about :data:`MOUNT_MPP` um/px."""
    image = rgb_uint8(image)
    small, small_mpp = _analysis(image, mpp)
    lines = line_pixels(small, small_mpp)
    return {"bubble": grow(_bubbles(lines, small_mpp), image.shape),
            "edge": grow(_edges(lines, small_mpp), image.shape)}


def bubble_mask(image: np.ndarray, mpp: float | None = None) -> np.ndarray:
    """Bool (h, w) mask of air bubbles under the coverslip on an RGB uint8 image whose
    pixels are ``mpp`` microns (None: 0.5): each bubble's whole region (inside and rim),
    found as a round hole :data:`BUBBLE_MIN_UM` to :data:`BUBBLE_MAX_UM` across enclosed
    by a thin dark grey rim."""
    return mount_masks(image, mpp)["bubble"]


def edge_mask(image: np.ndarray, mpp: float | None = None) -> np.ndarray:
    """Bool (h, w) mask of coverslip edges on an RGB uint8 image whose pixels are ``mpp``
    microns (None: 0.5): a band :data:`EDGE_BAND_UM` wide along each straight thin dark
    grey line at least :data:`EDGE_MIN_UM` long and :data:`EDGE_MIN_SHARE` of the
    image's shorter side."""
    return mount_masks(image, mpp)["edge"]
