# Copyright 2026 celegans_autofocus maintainers
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.

"""Worm detection in full frames, target tracking between frames, and crop windows.

Detection works at 1/``downsample`` resolution: INTER_AREA reduction (which also averages the
noise away); a median background over ``background_px`` (several worm widths); the SIGNED
difference from it smoothed by ``smooth_sigma`` (fine texture such as a bacterial lawn averages
out, a worm does not), then its absolute value, so worms that look dark in focus and bright or
haloed out of focus are found alike; a threshold at ``threshold_sigma`` robust noise levels; an
opening over ``open_px`` that removes thin lines (scratches, fibres) and specks, which also cuts
them off worms they cross; a closing over ``close_px`` that rejoins a worm's pieces; connected
components. A component is a worm when its area is in range, its mean width (2 x area /
perimeter) is at least ``min_width_px`` and its mean contrast |I - background| / background is
at least ``min_contrast_ratio``. Worms that touch or cross come out as one detection.
All coordinates returned are full-frame pixels, (x, y) = (column, row), origin top-left.
Pure numpy/OpenCV.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Sequence

import cv2
import numpy as np

from .images import ImageError, check_image
from .sensor import FULL_FRAME_WH_PX


@dataclass(frozen=True)
class Detection:
    """One worm: centroid (x, y), bounding box (x0, y0, w, h) and area, all in full-frame px."""

    centroid_px: tuple[float, float]
    bbox_px: tuple[int, int, int, int]
    area_px: int


@dataclass(frozen=True)
class DetectorConfig:
    """Detector settings.

    Lengths and areas in full-frame px at :data:`core.sensor.UM_PER_PX` (adult worms ~650 x 45 px).
    :meth:`scaled` adapts them to images of another pixel size.
    """

    downsample: int = 8
    background_px: int = 248
    threshold_sigma: float = 5.0
    smooth_sigma: float = 1.0
    min_contrast: float = 2.0
    open_px: int = 40
    close_px: int = 24
    min_area_px: int = 6000
    max_area_fraction: float = 0.25
    min_width_px: float = 24.0
    min_contrast_ratio: float = 0.15
    max_detections: int = 20

    def scaled(self, scale: float) -> "DetectorConfig":
        """Return the same detector for images with ``scale`` px per px of the reference frame (0.25 = 4x smaller)."""
        if not (math.isfinite(scale) and scale > 0):
            raise ValueError(f"scale must be a positive number, got {scale!r}")
        ds = max(1, round(self.downsample * scale))
        return replace(self, downsample=ds, background_px=max(3 * ds, round(self.background_px * scale)),
                       open_px=round(self.open_px * scale), close_px=round(self.close_px * scale),
                       min_area_px=round(self.min_area_px * scale**2), min_width_px=self.min_width_px * scale)

    def __post_init__(self) -> None:
        if self.downsample < 1 or self.background_px < 3 * self.downsample:
            raise ValueError(f"need downsample >= 1 and background_px >= 3*downsample, got {self}")
        if self.threshold_sigma <= 0 or self.min_contrast < 0 or self.min_area_px < 0:
            raise ValueError(f"threshold_sigma must be > 0, min_contrast and min_area_px >= 0, got {self}")
        if not 0 < self.max_area_fraction <= 1:
            raise ValueError(f"max_area_fraction must be in (0, 1], got {self.max_area_fraction}")


def _odd(n: float) -> int:
    return max(3, int(n) // 2 * 2 + 1)


class WormDetector:
    """``detect(gray) -> [Detection]``, largest first. Reuse one instance: kernels are built once."""

    def __init__(self, config: DetectorConfig = DetectorConfig()):
        self.config = config
        ds = config.downsample
        self._median_k = _odd(config.background_px / ds)
        close = _odd(config.close_px / ds)
        self._close = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (close, close))
        size = max(2, round(config.open_px / ds))
        self._open = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))

    def foreground(self, gray: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Low-resolution (mask uint8 0/255, |I - background|, background) that :meth:`detect` segments."""
        check_image(gray)
        if gray.ndim != 2:
            raise ImageError(f"worm detection expects a 2-D grayscale image, got shape {gray.shape}")
        ds = self.config.downsample
        h, w = gray.shape
        size = (max(1, round(w / ds)), max(1, round(h / ds)))
        small = cv2.resize(gray, size, interpolation=cv2.INTER_AREA) if ds > 1 else gray
        if small.dtype != np.uint8:
            small = cv2.normalize(small.astype(np.float32), None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
        k = min(self._median_k, _odd(min(size) - 2) if min(size) >= 5 else 3)
        background = cv2.medianBlur(small, k)
        signed = cv2.subtract(small, background, dtype=cv2.CV_16S)
        # smoothing the SIGNED difference averages fine texture (lawn, noise) away but keeps a worm
        diff = cv2.convertScaleAbs(cv2.GaussianBlur(signed, (5, 5), self.config.smooth_sigma))
        hist = np.bincount(diff.ravel(), minlength=256)
        median = int(np.searchsorted(np.cumsum(hist), diff.size / 2))
        level = max(self.config.threshold_sigma * 1.4826 * median, self.config.min_contrast)
        mask = (diff > level).astype(np.uint8) * 255
        mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, self._open)
        return cv2.morphologyEx(mask, cv2.MORPH_CLOSE, self._close), diff, background

    def detect(self, gray: np.ndarray) -> list[Detection]:
        """Worms in a grayscale frame of any size and integer/float type, largest first."""
        mask, diff, background = self.foreground(gray)
        cfg = self.config
        ds = cfg.downsample
        h, w = gray.shape
        n, labels, stats, centroids = cv2.connectedComponentsWithStats(mask, connectivity=8)
        areas = stats[:, cv2.CC_STAT_AREA]
        keep = (areas >= cfg.min_area_px / ds**2) & (areas <= cfg.max_area_fraction * mask.size)
        keep[0] = False
        if not keep.any():
            return []
        flat = labels.ravel()
        contrast = (np.bincount(flat, weights=diff.ravel(), minlength=n)
                    / np.maximum(np.bincount(flat, weights=background.ravel(), minlength=n), 1.0))
        perimeter = np.zeros(n)
        for contour in cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)[0]:
            x, y = contour[0, 0]
            perimeter[labels[y, x]] += cv2.arcLength(contour, True)
        width_px = 2 * areas * ds / np.maximum(perimeter, 1.0)
        keep &= (contrast >= cfg.min_contrast_ratio) & (width_px >= cfg.min_width_px)
        found = []
        for i in np.nonzero(keep)[0]:
            x0, y0, bw, bh, area = (int(v) for v in stats[i])
            cx, cy = centroids[i]
            fx0, fy0 = x0 * ds, y0 * ds
            found.append(Detection(
                centroid_px=(float((cx + 0.5) * ds - 0.5), float((cy + 0.5) * ds - 0.5)),
                bbox_px=(fx0, fy0, min(bw * ds, w - fx0), min(bh * ds, h - fy0)),
                area_px=area * ds * ds,
            ))
        found.sort(key=lambda d: d.area_px, reverse=True)
        return found[: self.config.max_detections]


def detect_worms(gray: np.ndarray, config: DetectorConfig = DetectorConfig()) -> list[Detection]:
    """One-off detection; prefer a :class:`WormDetector` instance in loops."""
    return WormDetector(config).detect(gray)


# ----------------------------------------------------------------------------- tracking

@dataclass(frozen=True)
class TrackState:
    """The tracker's answer for one frame.

    ``target``: the target worm's detection in this frame, or None when it was not seen.
    ``center_px``: where to centre the crop: the target's centroid, or its last known one while
    lost, or None before any worm was seen. ``switched``: a different worm became the target in
    this frame. ``lost_frames``: consecutive frames without the target. ``switches``: total so far.
    """

    target: Detection | None
    center_px: tuple[float, float] | None
    switched: bool
    lost_frames: int
    switches: int


class TargetTracker:
    """Keep one target worm from frame to frame.

    Choice: ``select="nearest_center"`` (default; a tracking stage keeps the worm centred) or
    ``"largest"``. Each frame the target is the detection nearest its last centroid within
    ``max_jump_px``. After ``reacquire_after_frames`` consecutive frames without it, the tracker
    picks a new target by the selection rule and reports a switch.
    """

    def __init__(self, frame_size_px: tuple[int, int] = FULL_FRAME_WH_PX, max_jump_px: float = 200.0,
                 reacquire_after_frames: int = 5, select: str = "nearest_center"):
        if select not in ("nearest_center", "largest"):
            raise ValueError(f"select must be 'nearest_center' or 'largest', got {select!r}")
        if max_jump_px <= 0 or reacquire_after_frames < 1:
            raise ValueError(f"need max_jump_px > 0 and reacquire_after_frames >= 1, "
                             f"got {max_jump_px}, {reacquire_after_frames}")
        self.frame_size_px = frame_size_px
        self.max_jump_px = float(max_jump_px)
        self.reacquire_after_frames = int(reacquire_after_frames)
        self.select = select
        self.reset()

    def reset(self) -> None:
        self._center: tuple[float, float] | None = None
        self._lost_frames = 0
        self._switches = 0

    def _choose(self, detections: Sequence[Detection]) -> Detection:
        if self.select == "largest":
            return max(detections, key=lambda d: d.area_px)
        cx, cy = self.frame_size_px[0] / 2, self.frame_size_px[1] / 2
        return min(detections, key=lambda d: math.hypot(d.centroid_px[0] - cx, d.centroid_px[1] - cy))

    def update(self, detections: Sequence[Detection]) -> TrackState:
        """Advance one frame with that frame's detections."""
        switched = False
        target = None
        if self._center is None:
            if detections:
                target = self._choose(detections)
        else:
            near = [(math.dist(d.centroid_px, self._center), d) for d in detections]
            near = [(dist, d) for dist, d in near if dist <= self.max_jump_px]
            if near:
                target = min(near, key=lambda p: p[0])[1]
            elif detections and self._lost_frames + 1 >= self.reacquire_after_frames:
                target, switched = self._choose(detections), True
                self._switches += 1
        if target is not None:
            self._center, self._lost_frames = target.centroid_px, 0
        elif self._center is not None:
            self._lost_frames += 1
        return TrackState(target, self._center, switched, self._lost_frames, self._switches)


# ----------------------------------------------------------------------------- crop windows

def frame_fov_px(fov_px: int, full_width_px: int, width_px: int) -> int | None:
    """Return a crop side given in full-frame px (a sensor ``full_width_px`` wide) in px of a frame ``width_px`` wide.

    None for ``fov_px`` 0, the whole frame; a frame wider than the sensor's is not scaled up.
    """
    return max(1, round(fov_px * min(1.0, width_px / full_width_px))) if fov_px else None


def crop_window(center_px: tuple[float, float], fov_px: int | str | None,
                image_shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    """Square window ``(x0, y0, w, h)`` of side ``fov_px`` centred on ``center_px``, moved inside the image.

    ``image_shape`` is the array shape (H, W[, C]). ``fov_px`` of ``"full"`` or None gives the whole
    frame; a side larger than the image is cut to the image (so the window may be non-square).
    """
    h, w = int(image_shape[0]), int(image_shape[1])
    if fov_px is None or fov_px == "full":
        return (0, 0, w, h)
    if isinstance(fov_px, bool) or not isinstance(fov_px, (int, np.integer)) or fov_px <= 0:
        raise ValueError(f"fov_px must be a positive integer or 'full', got {fov_px!r}")
    cx, cy = (float(v) for v in center_px)
    if not (math.isfinite(cx) and math.isfinite(cy)):
        raise ValueError(f"crop centre must be finite, got {center_px!r}")
    cw, ch = min(int(fov_px), w), min(int(fov_px), h)
    x0 = min(max(int(round(cx - cw / 2)), 0), w - cw)
    y0 = min(max(int(round(cy - ch / 2)), 0), h - ch)
    return (x0, y0, cw, ch)


def crop_image(image: np.ndarray, window_px: tuple[int, int, int, int]) -> np.ndarray:
    """Return the pixels of ``window_px`` = (x0, y0, w, h) (a view, no copy)."""
    x0, y0, w, h = window_px
    return image[y0:y0 + h, x0:x0 + w]


# ----------------------------------------------------------------------------- the per-frame pipeline

@dataclass(frozen=True)
class CropResult:
    """One frame through :class:`WormCropper`.

    Its detections, the tracker's state, the crop centre (the target, its last position, or the frame
    centre) and the window (x0, y0, w, h) moved inside the frame, both in the frame's own px.
    """

    detections: list[Detection]
    state: TrackState
    center_px: tuple[float, float]
    window_px: tuple[int, int, int, int]


class WormCropper:
    """Detect, track the target and cut its ``fov_px`` window, frame after frame.

    What worm_detector_node does live and ``bag-eval`` does offline.

    Lengths (``fov_px``, ``max_jump_px``, the config's) are full-frame px of a sensor ``full_width_px``
    wide; frames narrower than that (binned, simulated, downscaled recordings) are scaled by
    width / full_width_px. The detector and tracker are rebuilt (target re-chosen) when the frame size
    changes. Before any worm was seen the window is the frame centre; ``fov_px`` 0 = the whole frame.
    """

    def __init__(self, config: DetectorConfig = DetectorConfig(), fov_px: int = 500,
                 full_width_px: int = FULL_FRAME_WH_PX[0], max_jump_px: float = 200.0,
                 reacquire_after_frames: int = 5, select: str = "nearest_center"):
        if fov_px < 0 or full_width_px < 1:
            raise ValueError(f"need fov_px >= 0 and full_width_px >= 1, got {fov_px}, {full_width_px}")
        self.config, self.fov_px, self.full_width_px = config, int(fov_px), int(full_width_px)
        self.max_jump_px, self.reacquire_after_frames, self.select = max_jump_px, reacquire_after_frames, select
        self.configure(full_width_px, full_width_px * 3 // 4)  # bad settings fail here, not on a frame

    def configure(self, width_px: int, height_px: int) -> None:
        """(Re)build detector and tracker for frames of this size (ValueError on bad settings)."""
        self.scale = min(1.0, width_px / self.full_width_px)
        self.detector = WormDetector(self.config.scaled(self.scale))
        self.tracker = TargetTracker((width_px, height_px), max_jump_px=self.max_jump_px * self.scale,
                                     reacquire_after_frames=self.reacquire_after_frames, select=self.select)

    def __call__(self, gray: np.ndarray) -> CropResult:
        """Advance one 2-D grayscale frame; the window to crop (any encoding) with :func:`crop_image`."""
        height_px, width_px = gray.shape[:2]
        if self.tracker.frame_size_px != (width_px, height_px):
            self.configure(width_px, height_px)
        detections = self.detector.detect(gray)
        state = self.tracker.update(detections)
        center = state.center_px or (width_px / 2.0, height_px / 2.0)
        fov = frame_fov_px(self.fov_px, self.full_width_px, width_px)
        return CropResult(detections, state, center, crop_window(center, fov, gray.shape))
