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

"""Folders of real, sharp worm frames as the model sees them: the sanity check that a model answers near 0.

A folder (searched recursively: each folder holding images is one source) holds frames of worms IN FOCUS. Each
frame is brought to the model's pixel size (``core.sensor.UM_PER_PX``) from the folder's own
(:func:`folder_um_per_px`), the detector (``core.detection``, default settings) finds the worms, and the window
of ``fov_px`` around the largest one is what the model reads, as ``worm_detector_node`` crops it. Used by
``train --real-frames`` (logged every epoch) and ``benchmarks/real_image_check.py``.
"""
from __future__ import annotations

import math
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np
import yaml

from . import appearance
from .detection import DetectorConfig, WormDetector, crop_image, crop_window
from .sensor import UM_PER_PX

IMAGE_EXT = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
FRAMES_YAML = "frames.yaml"  # benchmarks/extract_real_frames.py writes it: um_per_px (null: unknown), source


class FramesError(ValueError):
    """A folder of frames cannot be used (an unreadable frames.yaml, a bad pixel size); the message names the file."""


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXT)


def check_um_per_px(value, source: str) -> float:
    """Return ``value`` as a float if it is a positive finite pixel size; else :class:`FramesError` naming ``source``.

    ``source`` names the value for the message: ``--um-per-px``, or ``<file>: um_per_px``.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise FramesError(f"{source} must be a positive finite number, got {value!r}")
    return float(value)


def _frames_yaml_um_per_px(meta: Path) -> float | None:
    """Return frames.yaml's ``um_per_px`` (None: unknown); :class:`FramesError` names the file when it is bad."""
    try:
        data = yaml.safe_load(meta.read_text()) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        reason = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        mark = getattr(exc, "problem_mark", None)
        raise FramesError(f"{meta}: not readable YAML ({reason}"
                          + (f", line {mark.line + 1})" if mark is not None else ")")) from None
    if not isinstance(data, dict):
        raise FramesError(f"{meta}: must be a mapping of key: value, such as um_per_px: 1.55")
    um = data.get("um_per_px")
    return None if um is None else check_um_per_px(um, f"{meta}: um_per_px")


def folder_um_per_px(folder: Path, um_per_px: float | None = None) -> float:
    """Return the folder's pixel size: ``um_per_px`` if given, else frames.yaml's, else an estimate, else 1.55.

    frames.yaml's ``um_per_px: null`` means unknown: the median of ``core.appearance.estimate_um_per_px`` over the
    frames (an adult's width; unreadable frames left out); no frames.yaml: the sensor's pixel size. A frames.yaml
    that cannot be read, or whose ``um_per_px`` is not a positive number, is a :class:`FramesError`.
    """
    if um_per_px is not None:
        return um_per_px
    meta = folder / FRAMES_YAML
    um = _frames_yaml_um_per_px(meta) if meta.exists() else UM_PER_PX
    if um is None:
        estimates = []
        for path in _images(folder):
            gray = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
            if gray is None:  # read_frames names the unreadable ones
                continue
            try:
                estimates.append(appearance.estimate_um_per_px(gray))
            except (ValueError, cv2.error):
                pass
        um = float(np.median(estimates)) if estimates else UM_PER_PX
    return float(um)


def to_u8(frame: np.ndarray) -> np.ndarray:
    """Return ``frame`` clipped to 0..255 as uint8."""
    return np.clip(frame, 0, 255).astype(np.uint8)


def reference_u8(frame: np.ndarray, um_per_px: float) -> np.ndarray:
    """Return ``frame`` at the model's pixel size (``appearance.to_reference_scale``), as uint8."""
    return to_u8(appearance.to_reference_scale(frame, um_per_px))


def image_folders(root: Path) -> list[Path]:
    """Return the folders under ``root`` (itself included) that hold image files, sorted."""
    return sorted({p.parent for p in Path(root).rglob("*") if p.suffix.lower() in IMAGE_EXT})


def read_frames(folder: Path, um_per_px: float | None = None, max_frames: int | None = None):
    """Yield each readable image of ``folder`` (the first ``max_frames``) at the model's pixel size.

    The pixel size is :func:`folder_um_per_px`'s, found once for the folder; unreadable files are named on stderr.
    """
    um = folder_um_per_px(folder, um_per_px)
    for path in _images(folder)[:max_frames]:
        gray = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        if gray is None:
            print(f"skipped {path}: unreadable", file=sys.stderr)
            continue
        yield reference_u8(gray, um)


def worm_crop(img: np.ndarray, centre_px: tuple[float, float], fov_px: int) -> np.ndarray:
    """Return the ``fov_px`` window around ``centre_px`` (the detector's worm), as worm_detector_node crops it."""
    return crop_image(img, crop_window(centre_px, fov_px, img.shape))


def worm_crops(root: Path, fovs_px: Sequence[int],
               um_per_px: float | None = None) -> dict[str, tuple[int, dict[int, list[np.ndarray]]]]:
    """Per source (a folder under ``root``, by its relative name): (frames read, {fov: crops around the largest worm}).

    The worm is detected once per frame and cropped at every window of ``fovs_px``; frames where the detector finds
    no worm give no crop. An empty dict when ``root`` holds no images.
    """
    out = {}
    for name, frames in frame_crops(root, fovs_px, um_per_px):
        crops, n = {int(fov): [] for fov in fovs_px}, 0
        for found in frames:
            n += 1
            for fov, crop in (found or {}).items():
                crops[fov].append(crop.copy())  # a view would keep its whole frame in memory
        out[name] = (n, crops)
    return out


def frame_crops(root: Path, fovs_px: Sequence[int],
                um_per_px: float | None = None) -> Iterator[tuple[str, Iterator[dict[int, np.ndarray] | None]]]:
    """Yield (source name, an iterator over its frames of {fov: crop around the largest worm}, or None: no worm).

    One frame at a time (a large folder is never held in memory); the worm is detected once per frame.
    """
    root = Path(root)
    detector = WormDetector(DetectorConfig())

    def crops(folder: Path):
        for img in read_frames(folder, um_per_px):
            found = detector.detect(img)
            yield {int(fov): worm_crop(img, found[0].centroid_px, fov) for fov in fovs_px} if found else None

    for folder in image_folders(root):
        yield (str(folder.relative_to(root)) if folder != root else "."), crops(folder)
