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

"""worm_detector_node: finds and tracks the target worm; publishes its crop, position and a debug view.

Subscribes ``camera/image_raw`` (sensor-data QoS, keep latest) and ``focus/offset`` (for the debug
text). Publishes, each with the source image's header:

- ``worm/crop`` (Image, same encoding): a ``fov_px`` square around the target (0 = the whole frame).
  While no worm has been seen the crop is centred on the frame; while the target is lost, on its
  last position. Before any worm has been found the crop is the frame centre.
- ``worm/target`` (PointStamped): x, y = crop centre in the image's pixels (column, row);
  z = frames since the target was last seen (0 = seen in this frame).
- ``worm/target_switch`` (PointStamped, reliable, only when it happens): the tracker chose another worm
  as the target in this frame (the old one was lost for ``reacquire_after_frames``); x, y = the new
  target's crop centre, z = switches so far. The focus controller restarts on the new worm's plane.
- ``worm/debug_image`` (bgr8, about ``debug_width_px`` wide): detections, the target box, the crop window
  and the latest focus offset.

Lengths (``fov_px``, detector sizes) are full-frame pixels at ``full_width_px`` across
(:data:`core.sensor.FULL_FRAME_WH_PX`); frames narrower than that (binned or simulated) are scaled by
width / full_width_px.
Bad frames (unsupported encoding, empty, inconsistent size, unexpected size) are dropped with a
throttled warning; the node keeps running.
"""
from __future__ import annotations

import cv2
import numpy as np
from geometry_msgs.msg import PointStamped
from rclpy.node import Node
from sensor_msgs.msg import Image

from ..core.detection import DetectorConfig, TrackState, WormCropper, crop_image
from ..core.images import ImageError, to_gray
from ..core.sensor import FULL_FRAME_WH_PX
from .common import (ConfigError, Param, array_to_image, declare_params, image_to_array, refuse_inconsistent,
                     reliable_qos, run_node, sensor_qos, stamp_to_s, with_image_qos_overrides)

_DEFAULTS = DetectorConfig()


def _fov(value: int) -> str | None:
    return None if value == 0 or value >= 16 else "must be 0 (full frame) or >= 16 px"


PARAMS = (
    Param("fov_px", 500, "crop side in full-frame px (paper: 500, 750, 1000, 1250; 0 = full frame)",
          range=(0, 20000), check=_fov),
    Param("full_width_px", FULL_FRAME_WH_PX[0], "width of the full sensor frame in px; narrower frames are scaled",
          range=(16, 20000)),
    Param("expected_width_px", 0, "drop frames of another width (0 = accept any)", range=(0, 20000)),
    Param("expected_height_px", 0, "drop frames of another height (0 = accept any)", range=(0, 20000)),
    Param("min_frame_px", 32, "drop frames smaller than this in either dimension", range=(1, 20000)),
    Param("downsample", _DEFAULTS.downsample, "detection works at 1/downsample of the full frame",
          range=(1, 64)),
    Param("background_px", _DEFAULTS.background_px, "median background window, full-frame px",
          range=(3, 5000)),
    Param("threshold_sigma", _DEFAULTS.threshold_sigma, "foreground threshold in robust noise levels",
          range=(0.1, 100.0)),
    Param("smooth_sigma", _DEFAULTS.smooth_sigma, "Gaussian smoothing of the background difference, detection px",
          range=(0.1, 100.0)),
    Param("open_px", _DEFAULTS.open_px, "opening that removes scratches, fibres and specks, full-frame px",
          range=(1, 1000)),
    Param("close_px", _DEFAULTS.close_px, "closing that joins a defocused worm's pieces, full-frame px",
          range=(1, 1000)),
    Param("min_area_px", _DEFAULTS.min_area_px, "smallest worm area, full-frame px^2", range=(0, 10_000_000)),
    Param("min_width_px", _DEFAULTS.min_width_px, "smallest mean worm width, full-frame px (rejects scratches)",
          range=(0.0, 1000.0)),
    Param("min_contrast_ratio", _DEFAULTS.min_contrast_ratio,
          "smallest mean |I - background| / background of a worm (rejects lawn texture)", range=(0.0, 10.0)),
    Param("max_jump_px", 200.0, "largest move of the target between frames, full-frame px",
          range=(1.0, 20000.0)),
    Param("reacquire_after_frames", 5, "frames without the target before switching to another worm",
          range=(1, 10000)),
    Param("select", "nearest_center", "which worm becomes the target", choices=("nearest_center", "largest")),
    Param("debug_width_px", 640, "about the width of worm/debug_image: the frame binned by the nearest whole "
          "factor (0 = no debug image)", range=(0, 4096)),
    Param("offset_max_age_s", 2.0, "focus offsets older than this are shown as stale", range=(0.0, 3600.0)),
)

DETECTOR_CONFIG_KEYS = ("downsample", "background_px", "threshold_sigma", "smooth_sigma", "open_px", "close_px",
                        "min_area_px", "min_width_px", "min_contrast_ratio")
DETECTOR_KEYS = {"full_width_px", "max_jump_px", "reacquire_after_frames", "select", *DETECTOR_CONFIG_KEYS}


def cropper_from_params(values: dict) -> WormCropper:
    """Build the detect-track-crop pipeline the node's parameter values describe (ValueError if inconsistent)."""
    return WormCropper(DetectorConfig(**{k: values[k] for k in DETECTOR_CONFIG_KEYS}), fov_px=values["fov_px"],
                       full_width_px=values["full_width_px"], max_jump_px=values["max_jump_px"],
                       reacquire_after_frames=values["reacquire_after_frames"], select=values["select"])


GREEN, GRAY, YELLOW, RED = (0, 200, 0), (160, 160, 160), (0, 220, 255), (0, 0, 255)


class WormDetectorNode(Node):
    NODE_NAME = "worm_detector_node"

    def __init__(self, **kwargs):
        super().__init__(self.NODE_NAME, **kwargs)
        self.params = declare_params(self, PARAMS)
        try:
            self.cropper = cropper_from_params(self.params.as_dict())  # settings checked at start-up
        except ValueError as exc:
            raise ConfigError(f"detector settings: {exc}") from None
        self.last_offset: PointStamped | None = None
        self.frames_processed = 0
        self.frames_dropped = 0
        self.crop_pub = with_image_qos_overrides(self.create_publisher, Image, "worm/crop", reliable_qos(depth=2))
        self.target_pub = self.create_publisher(PointStamped, "worm/target", reliable_qos())
        self.switch_pub = self.create_publisher(PointStamped, "worm/target_switch", reliable_qos(depth=10))
        self.debug_pub = with_image_qos_overrides(self.create_publisher, Image, "worm/debug_image",
                                                  reliable_qos(depth=1))
        with_image_qos_overrides(self.create_subscription, Image, "camera/image_raw", self._on_image,
                                 sensor_qos(depth=1))
        self.create_subscription(PointStamped, "focus/offset", self._on_offset, sensor_qos(depth=1))
        self.params.on_change(self._on_params)
        refuse_inconsistent(self, self.params, cropper_from_params, "detector settings")

    # ------------------------------------------------------------ run-time settings

    def _on_params(self, changed: dict) -> None:
        if set(changed) & DETECTOR_KEYS:
            self.cropper = cropper_from_params(self.params.as_dict())  # checked; target re-chosen
        elif "fov_px" in changed:
            self.cropper.fov_px = self.params.fov_px

    # ------------------------------------------------------------ callbacks

    def _on_offset(self, msg: PointStamped) -> None:
        self.last_offset = msg

    def _drop(self, msg: Image, reason: str) -> None:
        self.frames_dropped += 1
        self.get_logger().warning(f"dropped frame ({msg.width}x{msg.height} {msg.encoding!r}): {reason} "
                                  f"[{self.frames_dropped} dropped so far]", throttle_duration_sec=2.0)

    def _check_size(self, msg: Image) -> str | None:
        p = self.params
        if p.expected_width_px and msg.width != p.expected_width_px or \
                p.expected_height_px and msg.height != p.expected_height_px:
            return f"expected {p.expected_width_px or '*'}x{p.expected_height_px or '*'} px"
        if min(msg.width, msg.height) < p.min_frame_px:
            return f"smaller than min_frame_px = {p.min_frame_px}"
        return None

    def _on_image(self, msg: Image) -> None:
        reason = self._check_size(msg)
        if reason:
            self._drop(msg, reason)
            return
        try:
            image = image_to_array(msg)
            gray = to_gray(image, msg.encoding)
        except ImageError as exc:
            self._drop(msg, str(exc))
            return
        found = self.cropper(gray)
        window = found.window_px
        # the target and a switch first: the crop starts the predictor, whose offset for this frame must not reach
        # the controller before them (on a loaded machine this thread can stall between two publishes)
        target = PointStamped(header=msg.header)
        target.point.x, target.point.y = (float(v) for v in found.center_px)
        target.point.z = float(found.state.lost_frames)
        self.target_pub.publish(target)
        if found.state.switched:
            switch = PointStamped(header=msg.header)
            switch.point.x, switch.point.y = target.point.x, target.point.y
            switch.point.z = float(found.state.switches)
            self.switch_pub.publish(switch)
        self.crop_pub.publish(array_to_image(crop_image(image, window), msg.encoding, header=msg.header))
        if self.params.debug_width_px:
            self.debug_pub.publish(self._debug_image(gray, found.detections, found.state, window, msg))
        self.frames_processed += 1

    # ------------------------------------------------------------ debug view

    def _debug_image(self, gray: np.ndarray, detections, state: TrackState, window, msg: Image) -> Image:
        # bin by a whole factor (2592 -> 648 px for 640): INTER_AREA is ~4x faster than at a fractional one
        factor = max(1, round(gray.shape[1] / self.params.debug_width_px))
        small = cv2.resize(gray, (max(1, gray.shape[1] // factor), max(1, gray.shape[0] // factor)),
                           interpolation=cv2.INTER_AREA)
        k = small.shape[1] / gray.shape[1]
        if small.dtype != np.uint8:
            small = cv2.normalize(small.astype(np.float32), None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
        view = cv2.cvtColor(small, cv2.COLOR_GRAY2BGR)

        def box(b, colour, thickness=1):
            x0, y0, w, h = (round(v * k) for v in b)
            cv2.rectangle(view, (x0, y0), (x0 + w, y0 + h), colour, thickness)

        for det in detections:
            box(det.bbox_px, GREEN if det == state.target else GRAY, 2 if det == state.target else 1)
        box(window, YELLOW)
        cv2.putText(view, self._offset_text(msg), (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6, RED, 2, cv2.LINE_AA)
        status = f"worms {len(detections)}  lost {state.lost_frames}  switches {state.switches}"
        cv2.putText(view, status, (8, view.shape[0] - 10), cv2.FONT_HERSHEY_SIMPLEX, 0.45, YELLOW, 1, cv2.LINE_AA)
        return array_to_image(view, "bgr8", header=msg.header)

    def _offset_text(self, msg: Image) -> str:
        if self.last_offset is None:
            return "focus offset: none yet"
        age_s = stamp_to_s(msg.header.stamp) - stamp_to_s(self.last_offset.header.stamp)
        stale = " (stale)" if age_s > self.params.offset_max_age_s else ""
        return f"focus offset {self.last_offset.point.z:+.1f} steps{stale}"


def main(args: list[str] | None = None) -> int:
    return run_node(WormDetectorNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
