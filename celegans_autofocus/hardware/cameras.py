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

"""Camera backends behind one small interface: ``open()``, ``read() -> Frame``, ``close()``.

Backends: ``opencv`` (V4L2 device index or path, or anything cv2.VideoCapture opens), ``folder``
(image-folder playback), ``video`` (video-file playback) and ``picamera2`` (Raspberry Pi cameras;
imported only when selected). Frames are 2-D uint8/uint16 (``mono8``/``mono16``) when ``mono`` is
set, else what the source delivers (``bgr8``/``bgra8`` for colour). ``capture_time_s`` is wall-clock
time (``time.time()`` epoch) of the capture.
"""
from __future__ import annotations

import re
import sys
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, NamedTuple

import cv2
import numpy as np

IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp", ".pgm", ".ppm")
BACKENDS = ("opencv", "folder", "video", "picamera2")


class CameraError(RuntimeError):
    """The camera cannot be opened or a frame cannot be read; the message says what to fix."""


class EndOfStream(CameraError):
    """A playback source without ``loop`` has no more frames."""


class Frame(NamedTuple):
    image: np.ndarray
    encoding: str
    capture_time_s: float


def _encoding(image: np.ndarray) -> str:
    if image.ndim == 2:
        return {np.dtype(np.uint8): "mono8", np.dtype(np.uint16): "mono16"}.get(image.dtype, "")
    if image.ndim == 3 and image.dtype == np.uint8 and image.shape[2] in (3, 4):
        return "bgr8" if image.shape[2] == 3 else "bgra8"
    return ""


def to_frame(image: np.ndarray, capture_time_s: float, mono: bool, source: str) -> Frame:
    """Convert an OpenCV array (gray, BGR or BGRA; 8 or 16 bit) -> Frame; colour -> gray by BT.601 if ``mono``."""
    if image is None or image.size == 0:
        raise CameraError(f"{source}: empty frame")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if mono and image.ndim == 3 and image.shape[2] in (3, 4):
        image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY if image.shape[2] == 3 else cv2.COLOR_BGRA2GRAY)
    encoding = _encoding(image)
    if not encoding:
        raise CameraError(f"{source}: unsupported frame {image.shape} {image.dtype} "
                          "(need 8/16-bit gray or 8-bit BGR/BGRA)")
    return Frame(image, encoding, capture_time_s)


class Camera(ABC):
    """A frame source. Use as a context manager or call open()/close()."""

    mono: bool = True

    @abstractmethod
    def open(self) -> None:
        """Acquire the device or source; :class:`CameraError` naming what to fix if impossible."""

    @abstractmethod
    def read(self) -> Frame:
        """Next frame; :class:`CameraError` on a failed read, :class:`EndOfStream` at the end."""

    @abstractmethod
    def close(self) -> None:
        """Release the device (safe to call twice)."""

    def __enter__(self) -> "Camera":
        self.open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class OpenCVCamera(Camera):
    """cv2.VideoCapture on a device index ("0"), a device path ("/dev/video0") or a stream URL.

    ``width``/``height``/``fps``: requested mode (0 = driver default). ``exposure_us`` > 0 sets
    manual exposure (V4L2 exposure_absolute is in units of 100 us); <= 0 leaves auto exposure.
    ``fourcc``: pixel format such as "MJPG", "YUYV", "GREY" ("" = driver default).
    """

    def __init__(self, device: str | int = 0, width: int = 0, height: int = 0, fps: float = 0.0,
                 exposure_us: float = -1.0, fourcc: str = "", mono: bool = True):
        if fourcc and len(fourcc) != 4:
            raise CameraError(f"fourcc must be 4 characters such as 'MJPG', got {fourcc!r}")
        self.device = int(device) if str(device).isdigit() else str(device)
        self.width, self.height, self.fps = width, height, fps
        self.exposure_us, self.fourcc, self.mono = exposure_us, fourcc, mono
        self._cap: cv2.VideoCapture | None = None

    def open(self) -> None:
        api = cv2.CAP_V4L2 if isinstance(self.device, int) and sys.platform.startswith("linux") else cv2.CAP_ANY
        cap = cv2.VideoCapture(self.device, api)
        if not cap.isOpened():
            cap.release()
            hint = (f"check that /dev/video{self.device} exists (v4l2-ctl --list-devices), the camera is "
                    "plugged in and you are in the 'video' group") if isinstance(self.device, int) \
                else "check the device path or stream URL"
            raise CameraError(f"cannot open camera device {self.device!r}: {hint}")
        if self.fourcc:
            cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*self.fourcc))
        for prop, value in ((cv2.CAP_PROP_FRAME_WIDTH, self.width), (cv2.CAP_PROP_FRAME_HEIGHT, self.height),
                            (cv2.CAP_PROP_FPS, self.fps)):
            if value > 0:
                cap.set(prop, value)
        if self.exposure_us > 0:
            cap.set(cv2.CAP_PROP_AUTO_EXPOSURE, 1)  # V4L2: 1 = manual
            cap.set(cv2.CAP_PROP_EXPOSURE, self.exposure_us / 100.0)
        self._cap = cap

    def read(self) -> Frame:
        if self._cap is None:
            raise CameraError(f"camera {self.device!r} is not open")
        if not self._cap.grab():
            raise CameraError(f"camera {self.device!r}: no frame (disconnected or timed out)")
        t_s = time.time()
        ok, image = self._cap.retrieve()
        if not ok:
            raise CameraError(f"camera {self.device!r}: frame could not be decoded")
        return to_frame(image, t_s, self.mono, f"camera {self.device!r}")

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


def _natural_key(path: Path) -> list:
    """Sort z_2 before z_10 and z_-3 before z_-1."""
    return [int(tok) if re.fullmatch(r"-?\d+", tok) else tok for tok in re.split(r"(-?\d+)", path.name)]


def image_files(folder: str | Path) -> list[Path]:
    """Image files in ``folder`` (not recursive), naturally sorted."""
    folder = Path(folder)
    return sorted((p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()),
                  key=_natural_key)


class FolderCamera(Camera):
    """Plays the images of a folder in natural order (z_-2, z_-1, z_0, ...); ``loop`` restarts."""

    def __init__(self, path: str | Path, loop: bool = True, mono: bool = True):
        self.path, self.loop, self.mono = Path(path), loop, mono
        self._files: list[Path] = []
        self._next = 0

    def open(self) -> None:
        if not self.path.is_dir():
            raise CameraError(f"image folder {str(self.path)!r} does not exist or is not a folder")
        self._files = image_files(self.path)
        if not self._files:
            raise CameraError(f"image folder {str(self.path)!r} has no images ({', '.join(IMAGE_SUFFIXES)})")
        self._next = 0

    def read(self) -> Frame:
        if not self._files:
            raise CameraError(f"image folder {str(self.path)!r} is not open")
        if self._next >= len(self._files):
            if not self.loop:
                raise EndOfStream(f"image folder {str(self.path)!r}: all {len(self._files)} images played")
            self._next = 0
        path = self._files[self._next]
        self._next += 1
        image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if image is None:
            raise CameraError(f"cannot read image {str(path)!r} (corrupt or unsupported); skipped")
        return to_frame(image, time.time(), self.mono, str(path))

    def close(self) -> None:
        self._files = []


class VideoFileCamera(Camera):
    """Plays a video file (anything OpenCV's FFmpeg backend decodes); ``loop`` restarts at the end."""

    def __init__(self, path: str | Path, loop: bool = True, mono: bool = True):
        self.path, self.loop, self.mono = Path(path), loop, mono
        self._cap: cv2.VideoCapture | None = None

    def open(self) -> None:
        if not self.path.is_file():
            raise CameraError(f"video file {str(self.path)!r} does not exist")
        cap = cv2.VideoCapture(str(self.path))
        if not cap.isOpened():
            cap.release()
            raise CameraError(f"cannot open video file {str(self.path)!r} (corrupt or unsupported codec)")
        self._cap = cap

    def read(self) -> Frame:
        if self._cap is None:
            raise CameraError(f"video file {str(self.path)!r} is not open")
        ok, image = self._cap.read()
        if not ok and self.loop:
            self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, image = self._cap.read()
        if not ok:
            raise EndOfStream(f"video file {str(self.path)!r}: end of video")
        return to_frame(image, time.time(), self.mono, str(self.path))

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


PICAMERA2_HINT = ("the picamera2 backend needs the picamera2 module: on Raspberry Pi OS run "
                  "`sudo apt install python3-picamera2` and create the venv with --system-site-packages "
                  "(or `pip install picamera2`)")


class Picamera2Camera(Camera):
    """Raspberry Pi camera (e.g. the HQ camera) through Picamera2, luminance (Y plane) as mono8.

    ``exposure_us`` > 0 sets manual exposure. The capture time comes from the sensor timestamp
    (CLOCK_MONOTONIC ns), converted to wall-clock time.
    """

    def __init__(self, width: int = 0, height: int = 0, fps: float = 0.0, exposure_us: float = -1.0,
                 mono: bool = True, camera_num: int = 0):
        self.width, self.height, self.fps = width, height, fps
        self.exposure_us, self.mono, self.camera_num = exposure_us, mono, camera_num
        self._cam: Any = None

    def open(self) -> None:
        try:
            from picamera2 import Picamera2
        except ImportError as exc:
            raise CameraError(f"{PICAMERA2_HINT} ({exc})") from None
        try:
            cam = Picamera2(self.camera_num)
            main: dict[str, Any] = {"format": "YUV420" if self.mono else "BGR888"}
            if self.width > 0 and self.height > 0:
                main["size"] = (self.width, self.height)
            cam.configure(cam.create_video_configuration(main=main))
            controls: dict[str, Any] = {}
            if self.exposure_us > 0:
                controls.update(ExposureTime=int(self.exposure_us), AeEnable=False)
            if self.fps > 0:
                controls["FrameRate"] = float(self.fps)
            if controls:
                cam.set_controls(controls)
            cam.start()
        except Exception as exc:  # picamera2/libcamera raise many types; all mean "cannot open"
            raise CameraError(f"cannot open Raspberry Pi camera {self.camera_num}: {exc} "
                              "(check the ribbon cable and `rpicam-hello --list-cameras`)") from None
        self._cam = cam

    def read(self) -> Frame:
        if self._cam is None:
            raise CameraError("Raspberry Pi camera is not open")
        request = self._cam.capture_request()
        try:
            image = request.make_array("main")
            sensor_ns = request.get_metadata().get("SensorTimestamp")
        finally:
            request.release()
        t_s = time.time()
        if sensor_ns:
            t_s -= (time.clock_gettime_ns(time.CLOCK_MONOTONIC) - int(sensor_ns)) * 1e-9
        if self.mono and image.ndim == 2:
            height = image.shape[0] * 2 // 3  # YUV420: the first 2/3 of the rows are the Y plane
            image = image[:height]
        return to_frame(image, t_s, self.mono, f"Raspberry Pi camera {self.camera_num}")

    def close(self) -> None:
        if self._cam is not None:
            self._cam.stop()
            self._cam.close()
            self._cam = None


def make_camera(backend: str, *, device: str = "0", path: str = "", width: int = 0, height: int = 0,
                fps: float = 0.0, exposure_us: float = -1.0, fourcc: str = "", loop: bool = True,
                mono: bool = True) -> Camera:
    """Build (not open) the camera of ``backend`` (one of :data:`BACKENDS`)."""
    if backend == "opencv":
        return OpenCVCamera(device, width, height, fps, exposure_us, fourcc, mono)
    if backend in ("folder", "video"):
        if not path:
            raise CameraError(f"the {backend} backend needs a path")
        return (FolderCamera if backend == "folder" else VideoFileCamera)(path, loop, mono)
    if backend == "picamera2":
        return Picamera2Camera(width, height, fps, exposure_us, mono, int(device) if device.isdigit() else 0)
    raise CameraError(f"unknown camera backend {backend!r}; choose one of {', '.join(BACKENDS)}")
