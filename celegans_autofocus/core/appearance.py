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

"""Appearance statistics of one worm in a frame: what tells a real frame from a simulated one.

Every frame is first brought to the simulator's pixel size (``UM_PER_PX``), the worm is
found by ``core.detection`` and a ``fov_px`` window is cut around it, as the focus model sees it.
Inside the window the worm is segmented finely (Otsu on the smoothed |I / background - 1|, the
component nearest the detection) and the statistics are relative to the local background level:

- ``contrast``: mean (I - bg) / bg over the body (negative: darker than the agar);
- ``core`` / ``rim``: the same over the inner half of the body's half-width / its outer 20 %;
- ``ring_mean`` / ``ring_p95``: just outside the body (up to half a half-width): a bright halo shows in p95;
- ``texture``: std of the high-passed background (minus a Gaussian of sigma 4 px), far from the worm;
- ``slope``: slope of the background's radially averaged power spectrum (log-log, 0.02-0.2 cycles/px);
- ``noise``: pixel noise from neighbour differences in the background (robust, MAD);
- ``width_px``: mean body width, 2 x area / perimeter, in reference px.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np

from .detection import Detection, DetectorConfig, WormDetector, crop_image, crop_window
from .sensor import UM_PER_PX

#: Mean body width (2 x area / perimeter) of an adult, used to guess the pixel size of unscaled frames.
ADULT_MEAN_WIDTH_UM = 50.0
#: A looser detector (smaller, thinner, fainter worms), tried when the default one finds nothing.
RELAXED_DETECTOR = DetectorConfig(downsample=4, min_area_px=800, min_width_px=8.0, min_contrast_ratio=0.05,
                                  open_px=8, close_px=12, threshold_sigma=4.0)


@dataclass(frozen=True)
class WormStats:
    contrast: float
    core: float
    rim: float
    ring_mean: float
    ring_p95: float
    texture: float
    slope: float
    noise: float
    width_px: float

    def as_dict(self) -> dict:
        return asdict(self)


def to_reference_scale(gray: np.ndarray, um_per_px: float) -> np.ndarray:
    """float32 copy of ``gray`` resampled to UM_PER_PX (area-averaged when shrinking)."""
    f = float(um_per_px) / UM_PER_PX
    img = gray.astype(np.float32)
    if abs(f - 1) < 1e-3:
        return img
    size = (max(8, round(img.shape[1] * f)), max(8, round(img.shape[0] * f)))
    return cv2.resize(img, size, interpolation=cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR)


def _background(img: np.ndarray, scale_px: float) -> np.ndarray:
    """Local background level: median over ~``scale_px``, computed 4x smaller and smoothed back up."""
    small = cv2.resize(img, (max(3, img.shape[1] // 4), max(3, img.shape[0] // 4)), interpolation=cv2.INTER_AREA)
    k = max(3, min(int(scale_px / 4) // 2 * 2 + 1, (min(small.shape) - 1) // 2 * 2 + 1))
    lo, hi = float(small.min()), float(small.max())
    u8 = np.clip((small - lo) / max(hi - lo, 1e-6) * 255, 0, 255).astype(np.uint8)
    med = cv2.medianBlur(u8, k).astype(np.float32) / 255 * (hi - lo) + lo
    return np.maximum(cv2.resize(cv2.GaussianBlur(med, (0, 0), 1.0), (img.shape[1], img.shape[0]),
                                 interpolation=cv2.INTER_LINEAR), 1e-3)


def segment_worm(img: np.ndarray, near_xy: tuple[float, float] | None = None,
                 background_px: float = 150.0) -> tuple[np.ndarray, np.ndarray]:
    """(body mask uint8 0/1, relative deviation I / bg - 1) of the worm nearest ``near_xy`` (default: largest)."""
    dev = img / _background(img, background_px) - 1
    smooth = np.abs(cv2.GaussianBlur(dev, (0, 0), 1.5))
    u8 = np.clip(smooth / max(float(np.percentile(smooth, 99.9)), 1e-6) * 255, 0, 255).astype(np.uint8)
    _, mask = cv2.threshold(u8, 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5)))
    n, labels, stats, cents = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if n <= 1:
        return np.zeros_like(mask), dev
    areas = stats[1:, cv2.CC_STAT_AREA].astype(float)
    if near_xy is None:
        pick = 1 + int(np.argmax(areas))
    else:  # large components near the detection
        d = np.hypot(cents[1:, 0] - near_xy[0], cents[1:, 1] - near_xy[1])
        pick = 1 + int(np.argmax(areas / (1 + d / 50.0)))
    body = (labels == pick).astype(np.uint8)
    holes = 1 - body  # fill holes: background reachable from the border stays background
    ff = np.zeros((body.shape[0] + 2, body.shape[1] + 2), np.uint8)
    outside = holes.copy()
    for y, x in ((0, 0), (0, body.shape[1] - 1), (body.shape[0] - 1, 0), (body.shape[0] - 1, body.shape[1] - 1)):
        if outside[y, x]:
            cv2.floodFill(outside, ff, (x, y), 2)
    body[(holes == 1) & (outside != 2)] = 1
    return body, dev


def width_px(body: np.ndarray) -> float:
    contours = cv2.findContours(body, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)[0]
    perimeter = sum(cv2.arcLength(c, True) for c in contours)
    return float(2 * body.sum() / max(perimeter, 1.0))


def estimate_um_per_px(gray: np.ndarray, mean_width_um: float = ADULT_MEAN_WIDTH_UM) -> float:
    """Pixel size of a frame of unknown magnification, from its largest worm's mean width."""
    img = gray.astype(np.float32)
    shrink = max(1, int(max(img.shape) // 1200))
    if shrink > 1:
        img = cv2.resize(img, (img.shape[1] // shrink, img.shape[0] // shrink), interpolation=cv2.INTER_AREA)
    body, _ = segment_worm(img, background_px=max(img.shape) / 6)
    w = width_px(body) * shrink
    if w < 2:
        raise ValueError("no worm found to estimate the pixel size from")
    return mean_width_um / w


def _spectrum_slope(dev: np.ndarray, background: np.ndarray) -> float:
    h, w = dev.shape
    win = np.outer(np.hanning(h), np.hanning(w)).astype(np.float32)
    x = np.where(background, dev - float(dev[background].mean()), 0).astype(np.float32) * win
    p = np.abs(np.fft.fftshift(np.fft.fft2(x))) ** 2
    fy, fx = np.meshgrid(np.fft.fftshift(np.fft.fftfreq(h)), np.fft.fftshift(np.fft.fftfreq(w)), indexing="ij")
    fr = np.hypot(fy, fx)
    edges = np.geomspace(0.02, 0.2, 12)
    idx = np.digitize(fr.ravel(), edges)
    pr = np.array([p.ravel()[idx == i].mean() for i in range(1, len(edges))])
    fc = np.sqrt(edges[1:] * edges[:-1])
    return float(np.polyfit(np.log10(fc), np.log10(np.maximum(pr, 1e-20)), 1)[0])


def crop_stats(img: np.ndarray, near_xy: tuple[float, float] | None = None) -> WormStats:
    """Statistics of the worm nearest ``near_xy`` in a crop at UM_PER_PX (see the module doc)."""
    body, dev = segment_worm(img, near_xy)
    if body.sum() < 20:
        raise ValueError("no worm segmented in the crop")
    wid = width_px(body)
    half = wid / 2
    d_in = cv2.distanceTransform(body, cv2.DIST_L2, 5)
    d_out = cv2.distanceTransform(1 - body, cv2.DIST_L2, 5)
    core = d_in >= 0.5 * half
    rim = (body > 0) & (d_in <= max(1.5, 0.2 * half))
    ring = (d_out > 1) & (d_out <= max(3.0, 0.5 * half))
    background = d_out > max(20.0, 1.5 * wid)
    if background.sum() < 500:
        background = d_out > 10
    hp = dev - cv2.GaussianBlur(dev, (0, 0), 4.0)
    dx = (dev[:, 1:] - dev[:, :-1])[background[:, 1:] & background[:, :-1]]
    noise = 1.4826 * float(np.median(np.abs(dx - np.median(dx)))) / np.sqrt(2)
    return WormStats(
        contrast=float(dev[body > 0].mean()), core=float(dev[core].mean()) if core.any() else float("nan"),
        rim=float(dev[rim].mean()), ring_mean=float(dev[ring].mean()), ring_p95=float(np.percentile(dev[ring], 95)),
        texture=float(hp[background].std()), slope=_spectrum_slope(dev, background), noise=noise, width_px=wid)


def find_and_crop(img: np.ndarray, fov_px: int = 500) -> tuple[np.ndarray, Detection, bool] | None:
    """(crop, detection, found by the default detector?) of the largest worm in a reference-scale frame, or None."""
    gray = np.clip(img, 0, 255).astype(np.uint8) if img.dtype != np.uint8 else img
    for config, default in ((DetectorConfig(), True), (RELAXED_DETECTOR, False)):
        found = WormDetector(config).detect(gray)
        if found:
            det = found[0]
            window = crop_window(det.centroid_px, fov_px, img.shape)
            return crop_image(img, window), Detection(
                (det.centroid_px[0] - window[0], det.centroid_px[1] - window[1]), det.bbox_px, det.area_px), default
    return None
