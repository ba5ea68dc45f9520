"""Make the demo's painted annotation overlay for the bundled CMU-1-Small-Region slide.

The overlay is a copy of the slide at 1/4 resolution with the epidermis (dense,
haematoxylin-rich epithelium) painted green, the way a pathologist marks a region in an
image editor. It is a demonstration annotation made from stain density and smoothed into
brush-like shapes by this script, not a pathologist's diagnosis. Run from the repo root:

    .venv/bin/python scripts/make_demo_overlay.py
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from histotile.wsi import open_slide

DATA = Path(__file__).resolve().parents[1] / "histotile" / "data"
DOWNSAMPLE = 4
GREEN = (0, 255, 0)


def main() -> None:
    with open_slide(DATA / "CMU-1-Small-Region.svs") as slide:
        width, height = slide.dimensions
        size = (round(width / DOWNSAMPLE), round(height / DOWNSAMPLE))
        rgb = cv2.resize(slide.read_region((0, 0), 0, slide.dimensions), size,
                         interpolation=cv2.INTER_AREA)
    optical_density = -np.log(np.maximum(rgb.astype(np.float32), 1.0) / 255.0)
    # Haematoxylin-rich epithelium: dark overall and blue-purple rather than pink.
    darkness = optical_density.mean(axis=2)
    blueness = optical_density[:, :, 0] - optical_density[:, :, 2]  # red absorbed > blue
    score = cv2.GaussianBlur(darkness * (blueness > 0.05), (0, 0), 6)
    mask = (score > 0.36).astype(np.uint8)
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, np.ones((15, 15), np.uint8))
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((9, 9), np.uint8))
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask)
    painted = rgb.copy()
    for index in range(1, count):
        if stats[index, cv2.CC_STAT_AREA] < 800:  # a brush does not mark specks
            continue
        contours, _ = cv2.findContours((labels == index).astype(np.uint8),
                                       cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        smooth = [cv2.approxPolyDP(c, 3.0, True) for c in contours]
        cv2.fillPoly(painted, smooth, GREEN)
    out = DATA / "CMU-1-Small-Region.overlay.png"
    cv2.imwrite(str(out), painted[:, :, ::-1])
    print(f"wrote {out} ({size[0]}x{size[1]}), painted {np.mean(painted[:, :, 1] == 255):.1%}")


if __name__ == "__main__":
    main()
