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

"""bag_recorder_node: record topics of any type into a rosbag2 bag (MCAP or sqlite3) with rosbags.

It subscribes to each configured topic as soon as the graph shows its type, receives the
serialized bytes (``raw=True``, no deserialization) and writes them stamped with the receive time
(node clock, so sim time under ``use_sim_time``), as ``ros2 bag record`` does. Images
(sensor_msgs/Image) are re-encoded downscaled when ``image_scale`` < 1. The bag is closed
(``metadata.yaml`` written) when the node shuts down. When the disk (or the file size limit) leaves less than
``min_free_mb`` or the bag's directory is removed, recording stops: the bag is closed with what it has, one
error line says why, and the node keeps running without recording.
"""
from __future__ import annotations

import importlib
import time
from pathlib import Path

from rclpy.node import Node

from ..core.images import ImageError
from ..recording import IMAGE_TYPE, STORAGES, BagError, BagRecorder, downscale_image_cdr, typestore
from .common import ConfigError, Param, declare_params, matched_qos, run_node

DEFAULT_TOPICS = ["camera/image_raw", "focus/offset", "stepper/joint_states", "sim/ground_truth",
                  "worm/target"]

PARAMS = [
    Param("bag_path", "", "bag directory to create (must not exist); empty: autofocus_<date>_<time> "
          "in the working directory", read_only=True),
    Param("storage", "mcap", "rosbag2 storage plugin", choices=tuple(STORAGES), read_only=True),
    Param("topics", DEFAULT_TOPICS, "topics to record (relative names resolve in the node's namespace)",
          read_only=True, check=lambda v: None if len(v) > 0 else "at least one topic is needed"),
    Param("image_scale", 1.0, "scale factor for sensor_msgs/Image (1.0 = as received)", range=(0.01, 1.0)),
    Param("min_free_mb", 64.0, "stop recording (and close the bag) when less than this would be left free",
          range=(1.0, 1e6), read_only=True),
    Param("discovery_period_s", 0.5, "how often to look for topics not yet subscribed", range=(0.05, 10.0),
          read_only=True),
]


def message_class(msgtype: str) -> type:
    """Return the rclpy message class of ``pkg/msg/Name``."""
    pkg, kind, name = msgtype.split("/")
    return getattr(importlib.import_module(f"{pkg}.{kind}"), name)


class BagRecorderNode(Node):
    NODE_NAME = "bag_recorder"

    def __init__(self, **kwargs) -> None:
        super().__init__(self.NODE_NAME, **kwargs)
        self.params = declare_params(self, PARAMS)
        path = self.params.bag_path or time.strftime("autofocus_%Y_%m_%d-%H_%M_%S")
        try:
            self.recorder = BagRecorder(Path(path), storage=self.params.storage,
                                        min_free_bytes=int(self.params.min_free_mb * 2**20))
        except BagError as exc:
            raise ConfigError(str(exc)) from None
        self._wanted = {self.resolve_topic_name(t): t for t in self.params.topics}
        self._subs: dict[str, object] = {}
        self.recording = True
        self.dropped: dict[str, int] = {}
        self.get_logger().info(f"recording {sorted(self._wanted)} to {self.recorder.path} ({self.params.storage})")
        self._timer = self.create_timer(self.params.discovery_period_s, self._discover)
        self._discover()

    @property
    def all_subscribed(self) -> bool:
        """Return True once every configured topic is subscribed (or was refused with an error logged)."""
        return set(self._subs) == set(self._wanted)

    @property
    def messages_handled(self) -> int:
        """Return how many messages were written to the bag or dropped so far (a caller waits for it to settle)."""
        return sum(self.recorder.counts.values()) + sum(self.dropped.values())

    def _discover(self) -> None:
        types = dict(self.get_topic_names_and_types())
        for topic in sorted(set(self._wanted) - set(self._subs)):
            if topic not in types:
                continue
            msgtype = types[topic][0]
            if len(types[topic]) > 1:
                self.get_logger().warning(f"{topic} has several types {types[topic]}; recording {msgtype}")
            if msgtype not in typestore().types:
                self.get_logger().error(f"cannot record {topic}: message type {msgtype} is unknown to rosbags")
                self._subs[topic] = None
                continue
            try:
                cls = message_class(msgtype)
            except (ImportError, AttributeError, ValueError):
                self.get_logger().error(f"cannot record {topic}: message type {msgtype} is not importable")
                self._subs[topic] = None
                continue
            self.recorder.add_topic(topic, msgtype)
            self._subs[topic] = self.create_subscription(
                cls, topic, self._callback(topic, msgtype), matched_qos(self, topic, depth=100), raw=True)
            self.get_logger().info(f"subscribed to {topic} ({msgtype})")
        if self.all_subscribed:
            self._timer.cancel()

    def _callback(self, topic: str, msgtype: str):
        scale_images = msgtype == IMAGE_TYPE

        def write(data: bytes) -> None:
            t_ns = self.get_clock().now().nanoseconds
            scale = self.params.image_scale
            if scale_images and scale < 1.0:
                try:
                    data = downscale_image_cdr(data, scale)
                except (ImageError, ValueError) as exc:
                    self.dropped[topic] = self.dropped.get(topic, 0) + 1
                    self.get_logger().warning(f"{topic}: not recorded, cannot downscale: {exc}",
                                              throttle_duration_sec=5.0)
                    return
            try:
                self.recorder.write(topic, data, t_ns)
            except BagError as exc:
                self._stop_recording(str(exc))

        return write

    def _stop_recording(self, why: str) -> None:
        """Say once why the bag cannot take more (disk full, directory removed, ...) and unsubscribe.

        The node keeps running, so that nothing else in the launch stops with the recorder.
        """
        if not self.recording:
            return
        self.recording = False
        self.get_logger().error(why)
        self._timer.cancel()
        for sub in self._subs.values():
            if sub is not None:
                self.destroy_subscription(sub)
        self._subs = {}

    def destroy_node(self) -> None:
        try:
            self.recorder.close()
        except BagError as exc:
            self.get_logger().error(str(exc))
        counts = ", ".join(f"{t}: {n}" for t, n in self.recorder.counts.items()) or "nothing"
        self.get_logger().info(f"closed {self.recorder.path}: {counts}")
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    return run_node(BagRecorderNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
