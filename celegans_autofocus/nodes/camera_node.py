"""camera_node: a camera backend as camera/image_raw (sensor_msgs/Image) + camera/camera_info.

Stamps are the capture time of each frame (the node clock's time instead when use_sim_time is on).
A failed read is logged (throttled) and the node keeps going; after ``reopen_after_failures``
consecutive failures it closes and reopens the device. A device that cannot be opened at start-up
stops the node with exit code 2 and a message saying what to fix.

A managed (lifecycle) node (nodes/lifecycle.py): ``configure`` opens the device, ``activate`` starts the
capture, ``deactivate`` stops it, ``cleanup`` closes the device; ``autostart`` (default) does the first two at
start-up. ``camera/image_raw`` and ``camera/camera_info`` take QoS overrides (``qos_overrides.<topic>.publisher.*``).
"""
from __future__ import annotations

from sensor_msgs.msg import CameraInfo, Image

from ..hardware.cameras import BACKENDS, CameraError, EndOfStream, make_camera
from .common import (ConfigError, Param, array_to_image, declare_params, reliable_qos, run_node, s_to_stamp,
                     with_image_qos_overrides)
from .lifecycle import AUTOSTART, ManagedNode

PARAMS = (
    Param("backend", "opencv", "camera backend", choices=BACKENDS, read_only=True),
    Param("device", "0", "opencv: V4L2 device index or path or stream URL; picamera2: camera number",
          read_only=True),
    Param("path", "", "folder: image folder; video: video file", read_only=True),
    Param("loop", True, "folder/video: restart at the end instead of stopping", read_only=True),
    Param("width", 0, "requested frame width in px (0 = driver default)", range=(0, 16384), read_only=True),
    Param("height", 0, "requested frame height in px (0 = driver default)", range=(0, 16384), read_only=True),
    Param("fps", 30.0, "publication rate in frames per second (also requested from the device)",
          range=(0.1, 1000.0)),
    Param("exposure_us", -1.0, "manual exposure in microseconds (<= 0: auto exposure)",
          range=(-1.0, 10_000_000.0), read_only=True),
    Param("fourcc", "", "opencv: pixel format FOURCC such as MJPG, YUYV, GREY ('' = default)",
          check=lambda v: None if len(v) in (0, 4) else "must be empty or 4 characters", read_only=True),
    Param("mono", True, "convert colour frames to mono8 (BT.601 luma)", read_only=True),
    Param("frame_id", "camera_optical_frame", "header.frame_id of the images"),
    Param("reopen_after_failures", 30, "reopen the device after this many failed reads in a row (0 = never)",
          range=(0, 100000)),
    AUTOSTART,
)


class CameraNode(ManagedNode):
    """Lifecycle: configure opens the device, activate starts the capture timer, cleanup closes the device."""

    NODE_NAME = "camera_node"

    def __init__(self, **kwargs):
        super().__init__(self.NODE_NAME, **kwargs)
        self.params = declare_params(self, PARAMS)
        self.camera = None
        self.image_pub = self.info_pub = self.timer = None
        self.frames_published = 0
        self.read_failures = 0
        self.params.on_change(self._on_params)
        if self.params.autostart:
            self.autostart()

    def configure(self) -> None:
        p = self.params
        try:
            camera = make_camera(p.backend, device=p.device, path=p.path, width=p.width, height=p.height,
                                 fps=p.fps, exposure_us=p.exposure_us, fourcc=p.fourcc, loop=p.loop, mono=p.mono)
            camera.open()
        except CameraError as exc:
            raise ConfigError(str(exc)) from None
        self.camera = camera
        qos = reliable_qos(depth=2)
        self.image_pub = with_image_qos_overrides(self.create_lifecycle_publisher, Image, "camera/image_raw", qos)
        self.info_pub = with_image_qos_overrides(self.create_lifecycle_publisher, CameraInfo, "camera/camera_info",
                                                 qos)
        source = p.device if p.backend in ("opencv", "picamera2") else p.path
        self.get_logger().info(f"{p.backend} camera open ({source}), publishing at up to {p.fps:g} fps")

    def activate(self) -> None:
        self.read_failures = 0
        self.timer = self.create_timer(1.0 / self.params.fps, self._capture)

    def deactivate(self) -> None:
        if self.timer is not None:
            self.destroy_timer(self.timer)
            self.timer = None

    def cleanup(self) -> None:
        for pub in (self.image_pub, self.info_pub):
            if pub is not None:
                self.destroy_lifecycle_publisher(pub)
        self.image_pub = self.info_pub = None
        if self.camera is not None:
            self.camera.close()
            self.camera = None

    def _on_params(self, changed: dict) -> None:
        if "fps" in changed and self.timer is not None and not self.timer.is_canceled():
            self.timer.timer_period_ns = int(1e9 / changed["fps"])

    def _capture(self) -> None:
        try:
            frame = self.camera.read()
        except EndOfStream as exc:
            self.get_logger().info(f"{exc}; stopping playback")
            self.timer.cancel()
            return
        except CameraError as exc:
            self._read_failed(exc)
            return
        self.read_failures = 0
        stamp = self.get_clock().now().to_msg() if self.get_parameter("use_sim_time").value \
            else s_to_stamp(frame.capture_time_s)
        msg = array_to_image(frame.image, frame.encoding, frame_id=self.params.frame_id)
        msg.header.stamp = stamp
        info = CameraInfo(header=msg.header, height=msg.height, width=msg.width)
        self.image_pub.publish(msg)
        self.info_pub.publish(info)
        self.frames_published += 1

    def _read_failed(self, exc: CameraError) -> None:
        self.read_failures += 1
        self.get_logger().warning(f"read failed ({self.read_failures} in a row): {exc}", throttle_duration_sec=2.0)
        limit = self.params.reopen_after_failures
        if limit and self.read_failures % limit == 0:
            self.get_logger().warning("reopening the camera")
            self.camera.close()
            try:
                self.camera.open()
            except CameraError as reopen_exc:
                self.get_logger().error(f"reopen failed: {reopen_exc}", throttle_duration_sec=5.0)


def main(args: list[str] | None = None) -> int:
    return run_node(CameraNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
