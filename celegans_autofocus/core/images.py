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

"""Image encodings and the ONE preprocessing function shared by training and inference.

Encodings follow sensor_msgs/Image (REP-104 names). Colour is converted to grayscale by
ITU-R BT.601 luma, ``Y = 0.299 R + 0.587 G + 0.114 B`` (the rule OpenCV's cvtColor uses);
alpha is ignored. Everything that feeds a model goes through :func:`preprocess`, and the
exported ONNX model records the :class:`PreprocessSpec` it was trained with.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import cv2
import numpy as np

#: encoding -> (channels, dtype, channel order of colour planes or None)
ENCODINGS: dict[str, tuple[int, type, str | None]] = {
    "mono8": (1, np.uint8, None),
    "mono16": (1, np.uint16, None),
    "rgb8": (3, np.uint8, "rgb"),
    "bgr8": (3, np.uint8, "bgr"),
    "rgba8": (4, np.uint8, "rgb"),
    "bgra8": (4, np.uint8, "bgr"),
}
BT601_RGB = (0.299, 0.587, 0.114)


class ImageError(ValueError):
    """An image that cannot be used: unknown encoding, empty, wrong size or non-finite."""


def _check_encoding(encoding: str) -> tuple[int, type, str | None]:
    try:
        return ENCODINGS[encoding]
    except KeyError:
        raise ImageError(
            f"unsupported image encoding {encoding!r}; supported: {', '.join(ENCODINGS)}"
        ) from None


def decode(data: bytes | memoryview | np.ndarray, encoding: str, height: int, width: int,
           step: int, is_bigendian: bool = False) -> np.ndarray:
    """Turn the fields of a sensor_msgs/Image into an array (H, W) or (H, W, C), no copy if possible."""
    channels, dtype, _ = _check_encoding(encoding)
    if height <= 0 or width <= 0:
        raise ImageError(f"empty image: {width}x{height} ({encoding})")
    itemsize = np.dtype(dtype).itemsize
    row_bytes = width * channels * itemsize
    if step < row_bytes:
        raise ImageError(f"step {step} is smaller than width*channels*bytes = {row_bytes} ({encoding})")
    buf = np.frombuffer(data, dtype=np.uint8) if not isinstance(data, np.ndarray) else data.view(np.uint8).ravel()
    if buf.size < step * height:
        raise ImageError(f"image data has {buf.size} bytes, expected step*height = {step * height} ({encoding})")
    rows = buf[: step * height].reshape(height, step)[:, :row_bytes]
    dt = np.dtype(dtype).newbyteorder(">" if is_bigendian else "<")
    arr = np.ascontiguousarray(rows).view(dt).reshape(height, width, channels)
    if dt.byteorder == ">":
        arr = arr.astype(dtype)
    return arr[:, :, 0] if channels == 1 else arr


def encode(image: np.ndarray, encoding: str) -> tuple[bytes, int]:
    """Array -> (data, step) for a sensor_msgs/Image of ``encoding`` (little endian)."""
    channels, dtype, _ = _check_encoding(encoding)
    if image.size == 0:
        raise ImageError("empty image")
    shape_ok = image.ndim == 2 if channels == 1 else (image.ndim == 3 and image.shape[2] == channels)
    if not shape_ok or image.dtype != dtype:
        raise ImageError(f"array {image.shape} {image.dtype} does not match encoding {encoding!r}")
    arr = np.ascontiguousarray(image)
    return arr.tobytes(), arr.shape[1] * channels * arr.itemsize


def to_gray(image: np.ndarray, encoding: str) -> np.ndarray:
    """Grayscale view of ``image``: mono passes through, colour by BT.601 luma (float32)."""
    channels, _, order = _check_encoding(encoding)
    check_image(image)
    if channels == 1:
        if image.ndim != 2:
            raise ImageError(f"{encoding} image must be 2-D, got shape {image.shape}")
        return image
    if image.ndim != 3 or image.shape[2] != channels:
        raise ImageError(f"{encoding} image must have shape (H, W, {channels}), got {image.shape}")
    r, g, b = BT601_RGB
    weights = np.array([r, g, b] if order == "rgb" else [b, g, r], dtype=np.float32)
    return image[:, :, :3].astype(np.float32) @ weights


def array_to_gray(image: np.ndarray) -> np.ndarray:
    """Grayscale of an array read from a file by OpenCV (2-D, BGR or BGRA)."""
    if image.ndim == 2:
        return image
    if image.ndim == 3 and image.shape[2] in (3, 4):
        return to_gray(image, "bgr8" if image.shape[2] == 3 else "bgra8") if image.dtype == np.uint8 \
            else image[:, :, :3].astype(np.float32) @ np.array(BT601_RGB[::-1], dtype=np.float32)
    raise ImageError(f"cannot convert an array of shape {image.shape} to grayscale")


def check_image(image: np.ndarray) -> None:
    """Raise :class:`ImageError` for empty, zero-size or non-finite images."""
    if image is None or image.size == 0 or min(image.shape[:2]) == 0:
        raise ImageError(f"empty image (shape {None if image is None else image.shape})")
    if image.dtype.kind == "f" and not np.isfinite(image).all():
        raise ImageError("image contains non-finite values (NaN or Inf)")


#: A frame is resized to the model's square input. One whose shorter side would be stretched more than this, or
#: longer than ``MAX_ASPECT`` times its shorter side, is no view of a worm (a strip, a few pixels).
MAX_UPSAMPLE = 8.0
MAX_ASPECT = 4.0


def min_view_px(input_px: int) -> int:
    """Return the shortest side of an image a model of ``input_px`` reads (``MAX_UPSAMPLE``)."""
    return math.ceil(input_px / MAX_UPSAMPLE)


def check_view(gray: np.ndarray, input_px: int) -> None:
    """Raise :class:`ImageError` for an image unfit for a model of ``input_px``: empty, small or thin.

    Shapes only: :func:`preprocess` checks the values (NaN, Inf) as it reads them.
    """
    if gray is None or gray.size == 0:
        check_image(gray)  # says "empty"
    height_px, width_px = gray.shape[:2]
    if min(height_px, width_px) < min_view_px(input_px):
        raise ImageError(f"a {width_px}x{height_px} px frame is too small for the model's {input_px} px input "
                         f"(shorter side under {min_view_px(input_px)} px)")
    if max(height_px, width_px) > MAX_ASPECT * min(height_px, width_px):
        raise ImageError(f"a {width_px}x{height_px} px frame is too thin for the model (aspect over {MAX_ASPECT:g}:1)")


#: ``PreprocessSpec.normalize`` choices (see there).
NORMALIZE = ("zscore", "contrast")
#: ``contrast`` inputs times this by default (``PreprocessSpec.contrast_gain``): a crop's contrast (std / mean) is
#: 0.1-0.2 on the simulator's look at 500-1000 px, so inputs stay near unit scale, as z-scored ones are.
CONTRAST_GAIN = 5.0


@dataclass(frozen=True)
class PreprocessSpec:
    """How a frame becomes model input. Stored in every exported model's metadata.

    ``input_px``: square model input side; the frame (or crop) is resized to it with
    INTER_AREA regardless of aspect ratio. ``normalize`` (:data:`NORMALIZE`): ``zscore`` subtracts
    the image's own mean and divides by its standard deviation, so exposure, offset and bit depth do
    not matter; ``contrast`` divides the difference by the mean instead (times ``contrast_gain``,
    stored only for it), so how dark a worm is against the light it blocks survives: gain and bit
    depth do not matter, a camera's black level (an offset) does.
    """

    input_px: int = 500
    resize: str = "INTER_AREA"
    normalize: str = "zscore"
    gray_rule: str = "bt601"
    eps: float = 1e-6
    contrast_gain: float = CONTRAST_GAIN

    def to_dict(self) -> dict:
        """Return the metadata form (``contrast_gain`` only with ``contrast``: z-scored metadata stays as it was)."""
        data = asdict(self)
        if self.normalize != "contrast":
            del data["contrast_gain"]
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "PreprocessSpec":
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown preprocessing fields {sorted(unknown)}")
        spec = cls(**data)
        if spec.resize != "INTER_AREA" or spec.normalize not in NORMALIZE or spec.gray_rule != "bt601":
            raise ValueError(f"unsupported preprocessing {spec}; this version implements "
                             f"INTER_AREA / {' or '.join(NORMALIZE)} / bt601 only")
        if spec.input_px < 8:
            raise ValueError(f"input_px must be >= 8, got {spec.input_px}")
        if not spec.contrast_gain > 0:
            raise ValueError(f"contrast_gain must be > 0, got {spec.contrast_gain}")
        return spec


def preprocess(gray: np.ndarray, spec: PreprocessSpec = PreprocessSpec()) -> np.ndarray:
    """Apply THE preprocessing: grayscale frame of any dtype -> float32 (input_px, input_px), normalised.

    Pass colour images through :func:`to_gray` first.
    """
    check_image(gray)
    if gray.ndim != 2:
        raise ImageError(f"preprocess expects a 2-D grayscale image, got shape {gray.shape}")
    side = spec.input_px
    img = gray if gray.dtype in (np.uint8, np.uint16) else gray.astype(np.float32, copy=False)
    if img.shape != (side, side):
        # Integer frames are resized before the float conversion: ~10x less memory traffic on 5 Mpx.
        img = cv2.resize(img, (side, side), interpolation=cv2.INTER_AREA)
    img = img.astype(np.float32, copy=False)
    mean = float(img.mean())
    if spec.normalize == "zscore":
        scale = float(img.std())
    elif spec.normalize == "contrast":
        scale = mean / spec.contrast_gain
    else:
        raise ValueError(f"normalize must be one of {NORMALIZE}, got {spec.normalize!r}")
    return ((img - mean) / (scale + spec.eps)).astype(np.float32, copy=False)
