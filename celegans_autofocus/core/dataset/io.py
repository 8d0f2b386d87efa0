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

"""Reading and writing one z image (PNG/TIFF, 8/16-bit or float, grey or colour -> grayscale)."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ..images import ImageError, array_to_gray, check_image

IMAGE_SUFFIXES = (".png", ".tif", ".tiff")


def read_image(path: Path) -> np.ndarray:
    """Read one z image as a 2-D grayscale array (uint8/uint16 kept; float TIFF allowed if finite).

    OpenCV decodes first (PNG/TIFF, 8/16 bit, grey/RGB/RGBA); tifffile is the fallback for TIFFs
    OpenCV cannot read. Raises :class:`ImageError` whose message starts with the path.
    """
    path = Path(path)
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise ImageError(f"{path}: cannot read file ({exc.strerror or exc})") from None
    if data.size == 0:
        raise ImageError(f"{path}: empty file (0 bytes)")
    image = _imdecode_quiet(data)
    if image is None and path.suffix.lower() in (".tif", ".tiff"):
        image = _read_tiff(path)
    if image is None:
        raise ImageError(f"{path}: corrupt or unsupported image file")
    if image.dtype.kind not in "uif" or image.dtype == np.bool_:
        raise ImageError(f"{path}: unsupported pixel type {image.dtype}")
    try:
        check_image(image)
        gray = array_to_gray(image)
        check_image(gray)
    except ImageError as exc:
        raise ImageError(f"{path}: {exc}") from None
    if image.dtype.kind in "ui" and gray.dtype != image.dtype:
        info = np.iinfo(image.dtype)
        gray = np.clip(np.rint(gray), info.min, info.max).astype(image.dtype)
    return gray


def _imdecode_quiet(data: np.ndarray) -> np.ndarray | None:
    """cv2.imdecode without OpenCV's own log lines for corrupt files (we report them by name)."""
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    try:
        return cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    finally:
        cv2.utils.logging.setLogLevel(level)


def _read_tiff(path: Path) -> np.ndarray:
    import tifffile

    try:
        image = np.asarray(tifffile.imread(path))
    except Exception as exc:  # tifffile raises many types for corrupt files
        raise ImageError(f"{path}: corrupt or unsupported TIFF ({exc})") from None
    if image.ndim < 2:
        raise ImageError(f"{path}: corrupt or unsupported TIFF (no 2-D image in it)")
    if image.ndim == 3 and image.shape[2] in (3, 4):  # tifffile gives RGB(A); array_to_gray wants BGR(A)
        image = image[:, :, [2, 1, 0, 3][: image.shape[2]]]
    return image


def write_image(path: Path, gray: np.ndarray) -> None:
    """Write a grayscale z image: PNG for 8/16-bit integers, TIFF (tifffile) otherwise."""
    path = Path(path)
    if path.suffix.lower() == ".png":
        if gray.dtype not in (np.uint8, np.uint16):
            raise ImageError(f"{path}: PNG holds uint8/uint16, not {gray.dtype}")
        if not cv2.imwrite(str(path), gray):
            raise ImageError(f"{path}: cannot write image")
    else:
        import tifffile

        tifffile.imwrite(path, gray)


def image_suffix(gray: np.ndarray) -> str:
    """Return the file suffix :func:`write_image` uses for an array of this type."""
    return ".png" if gray.dtype in (np.uint8, np.uint16) else ".tif"
