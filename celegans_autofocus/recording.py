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

"""rosbag2 recording and reading with ``rosbags`` only: works without rclpy or a ROS install.

Bags are what ``ros2 bag record`` writes: a directory with ``metadata.yaml`` (rosbag2
format version 8) and one ``.mcap`` (default) or ``.db3`` (sqlite3) file, with the message
definitions embedded, so ``ros2 bag info/play`` and rosbags' ``AnyReader`` open them.
Messages are CDR bytes; the helpers below build and serialize the standard messages the
package uses (sensor_msgs/Image, geometry_msgs/PointStamped, sensor_msgs/JointState) with
rosbags' typestore.
"""
from __future__ import annotations

import os
import resource
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from rosbags.highlevel import AnyReader, AnyReaderError
from rosbags.rosbag2 import StoragePlugin, Writer, WriterError
from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

from .core.images import ENCODINGS, ImageError, array_to_gray, check_image, decode, encode, to_gray

STORAGES = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
DATA_SUFFIX = {"mcap": ".mcap", "sqlite3": ".db3"}
MIN_FREE_BYTES = 64 * 2**20
BAG_VERSION = 8
IMAGE_TYPE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE_TYPE = "sensor_msgs/msg/CompressedImage"
POINT_STAMPED_TYPE = "geometry_msgs/msg/PointStamped"
JOINT_STATE_TYPE = "sensor_msgs/msg/JointState"

_TYPESTORE: Typestore | None = None


class BagError(ValueError):
    """A bag that cannot be written or read as asked; the message names the bag and topic."""


def typestore() -> Typestore:
    """Return the newest ROS 2 typestore this rosbags knows (Kilted, else Jazzy), cached."""
    global _TYPESTORE
    if _TYPESTORE is None:
        store = getattr(Stores, "ROS2_KILTED", None) or Stores.ROS2_JAZZY
        _TYPESTORE = get_typestore(store)
    return _TYPESTORE


def serialize(msg: Any) -> bytes:
    """CDR bytes of a typestore message object."""
    return bytes(typestore().serialize_cdr(msg, msg.__msgtype__))


def deserialize(data: bytes | memoryview, msgtype: str) -> Any:
    return typestore().deserialize_cdr(data, msgtype)


def _time(t_ns: int) -> Any:
    cls = typestore().types["builtin_interfaces/msg/Time"]
    t_ns = int(t_ns)
    return cls(sec=t_ns // 1_000_000_000, nanosec=t_ns % 1_000_000_000)


def header(t_ns: int, frame_id: str = "") -> Any:
    """std_msgs/Header stamped ``t_ns`` (nanoseconds since the epoch or since sim start)."""
    return typestore().types["std_msgs/msg/Header"](stamp=_time(t_ns), frame_id=frame_id)


def stamp_ns(msg_header: Any) -> int:
    """Nanoseconds of a message header's stamp."""
    return int(msg_header.stamp.sec) * 1_000_000_000 + int(msg_header.stamp.nanosec)


def scale_image(image: np.ndarray, image_scale: float) -> np.ndarray:
    """Downscale by ``image_scale`` in (0, 1] with INTER_AREA (1.0 returns ``image``)."""
    if not 0.0 < image_scale <= 1.0:
        raise ValueError(f"image_scale must be in (0, 1], got {image_scale}")
    if image_scale == 1.0:
        return image
    h, w = image.shape[:2]
    size = (max(1, round(w * image_scale)), max(1, round(h * image_scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def image_msg(image: np.ndarray, t_ns: int, frame_id: str = "camera", encoding: str = "mono8",
              image_scale: float = 1.0) -> Any:
    """sensor_msgs/Image of ``image`` (2-D for mono, H x W x C for colour), optionally downscaled."""
    check_image(image)
    image = scale_image(image, image_scale)
    data, step = encode(image, encoding)
    return typestore().types[IMAGE_TYPE](
        header=header(t_ns, frame_id), height=image.shape[0], width=image.shape[1],
        encoding=encoding, is_bigendian=0, step=step, data=np.frombuffer(data, dtype=np.uint8))


def point_stamped_msg(x: float, y: float, z: float, t_ns: int, frame_id: str = "camera") -> Any:
    """geometry_msgs/PointStamped (e.g. ``focus/offset``: z = signed steps to focus)."""
    ts = typestore().types
    return ts[POINT_STAMPED_TYPE](header=header(t_ns, frame_id),
                                  point=ts["geometry_msgs/msg/Point"](x=float(x), y=float(y), z=float(z)))


def joint_state_msg(names: Sequence[str], position: Sequence[float], t_ns: int,
                    velocity: Sequence[float] = (), effort: Sequence[float] = (),
                    frame_id: str = "") -> Any:
    """sensor_msgs/JointState (``stepper/joint_states``: position in steps)."""
    return typestore().types[JOINT_STATE_TYPE](
        header=header(t_ns, frame_id), name=list(names),
        position=np.asarray(position, dtype=np.float64), velocity=np.asarray(velocity, dtype=np.float64),
        effort=np.asarray(effort, dtype=np.float64))


def image_from_msg(msg: Any, msgtype: str) -> np.ndarray:
    """Grayscale array of a sensor_msgs/Image (any supported encoding) or CompressedImage."""
    if msgtype == IMAGE_TYPE:
        arr = decode(msg.data, msg.encoding, msg.height, msg.width, msg.step, bool(msg.is_bigendian))
        return to_gray(arr, msg.encoding)
    if msgtype == COMPRESSED_IMAGE_TYPE:
        buf = np.asarray(msg.data, dtype=np.uint8)
        arr = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED) if buf.size else None
        if arr is None:
            raise ImageError(f"cannot decode CompressedImage (format {msg.format!r}, {buf.size} bytes)")
        gray = array_to_gray(arr)
        check_image(gray)
        return gray
    raise BagError(f"{msgtype} is not an image type; expected {IMAGE_TYPE} or {COMPRESSED_IMAGE_TYPE}")


def downscale_image_cdr(data: bytes | memoryview, image_scale: float) -> bytes:
    """Re-encode a serialized sensor_msgs/Image at ``image_scale`` (same encoding and header)."""
    msg = deserialize(data, IMAGE_TYPE)
    if msg.encoding not in ENCODINGS:
        raise ImageError(f"cannot downscale encoding {msg.encoding!r}; supported: {', '.join(ENCODINGS)}")
    arr = decode(msg.data, msg.encoding, msg.height, msg.width, msg.step, bool(msg.is_bigendian))
    small = scale_image(arr, image_scale)
    payload, step = encode(np.ascontiguousarray(small), msg.encoding)
    msg.height, msg.width, msg.step, msg.is_bigendian = small.shape[0], small.shape[1], step, 0
    msg.data = np.frombuffer(payload, dtype=np.uint8)
    return serialize(msg)


class BagRecorder:
    """Write a rosbag2 bag (``storage`` 'mcap' or 'sqlite3') from CDR bytes; a context manager.

    ``add_topic`` registers a topic with its full type name (e.g. ``sensor_msgs/msg/Image``);
    types the typestore does not know need ``msgdef`` (the .msg text; its hash is computed).
    The bag directory must not exist yet. ``close`` writes ``metadata.yaml``.

    Out of room or gone: before each message ``write`` checks that the bag's data file still exists and that
    the message plus ``min_free_bytes`` fit (free disk space, and the process's file size limit). If not, or
    if the write itself fails, the recording stops: the bag is closed while there is still room for its
    index and ``metadata.yaml``, so what was written stays a readable bag, ``stopped`` says why and every
    later ``write`` raises :class:`BagError` with that reason.
    """

    def __init__(self, path: str | Path, storage: str = "mcap", min_free_bytes: int = MIN_FREE_BYTES) -> None:
        if storage not in STORAGES:
            raise BagError(f"unknown bag storage {storage!r}; choose one of {', '.join(STORAGES)}")
        self.path = Path(path)
        self.storage = storage
        self.min_free_bytes = int(min_free_bytes)
        self.bytes_written = 0
        self.stopped: str | None = None
        self._data_file = self.path / f"{self.path.name}{DATA_SUFFIX[storage]}"
        try:
            self._writer = Writer(self.path, version=BAG_VERSION, storage_plugin=STORAGES[storage])
            self._writer.open()
        except WriterError as exc:
            raise BagError(f"cannot create bag {self.path}: {exc}") from None
        self._connections: dict[str, Any] = {}
        self.counts: dict[str, int] = {}

    @property
    def topics(self) -> dict[str, str]:
        """Return topic -> message type registered so far."""
        return {t: c.msgtype for t, c in self._connections.items()}

    def add_topic(self, topic: str, msgtype: str, msgdef: str | None = None,
                  rihs01: str | None = None) -> None:
        """Register ``topic`` (once). ``msgtype`` as ``pkg/msg/Name`` (``pkg/Name`` is accepted).

        Relative topic names are stored absolute (``/camera/image_raw``), as ``ros2 bag`` does.
        """
        topic = absolute_topic(topic)
        self._check_open()
        if topic in self._connections:
            if self._connections[topic].msgtype != _full_type(msgtype):
                raise BagError(f"bag {self.path}: topic {topic} already has type "
                               f"{self._connections[topic].msgtype}, not {msgtype}")
            return
        full = _full_type(msgtype)
        store = typestore()
        if msgdef is None and full not in store.types:
            raise BagError(f"bag {self.path}: unknown message type {full!r} for topic {topic}; "
                           "pass its msgdef (the .msg text)")
        if msgdef is not None and rihs01 is None:
            rihs01 = _hash_msgdef(full, msgdef)
        try:
            self._connections[topic] = self._writer.add_connection(
                topic, full, typestore=store, msgdef=msgdef, rihs01=rihs01)
        except (WriterError, KeyError) as exc:
            raise BagError(f"bag {self.path}: cannot add topic {topic} ({full}): {exc}") from None
        self.counts[topic] = 0

    def write(self, topic: str, cdr_bytes: bytes | memoryview, t_ns: int) -> None:
        """Append one serialized message received (or stamped) at ``t_ns``."""
        topic = absolute_topic(topic)
        try:
            conn = self._connections[topic]
        except KeyError:
            raise BagError(f"bag {self.path}: topic {topic} was not added") from None
        self._check_open()
        data = bytes(cdr_bytes)
        self._check_room(len(data))
        try:
            self._writer.write(conn, int(t_ns), data)
        except (OSError, sqlite3.Error) as exc:
            self._stop(f"writing failed: {exc}")
        self.counts[topic] += 1
        self.bytes_written += len(data)

    def _check_open(self) -> None:
        if self._writer is None:
            raise BagError(self.stopped or f"bag {self.path} is closed")

    def _check_room(self, size_bytes: int) -> None:
        """Stop unless the data file exists and the next ``size_bytes`` fit.

        They fit when, with what the writer still buffers and ``min_free_bytes``, they stay within the free
        disk space and the file size limit (RLIMIT_FSIZE).
        """
        try:
            on_disk = os.stat(self._data_file).st_size
            fs = os.statvfs(self.path)
        except FileNotFoundError:
            self._stop(f"{self._data_file} was removed while recording")
        file_limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
        file_room = float("inf") if file_limit == resource.RLIM_INFINITY else file_limit - on_disk
        room = min(fs.f_bavail * fs.f_frsize, file_room)
        need = max(0, self.bytes_written - on_disk) + size_bytes + self.min_free_bytes
        if need > room:
            self._stop(f"out of room: {room / 2**20:.1f} MB left for the bag (disk or file size limit), "
                       f"{need / 2**20:.1f} MB needed to write the next message and still close the bag")

    def _stop(self, reason: str) -> None:
        """Stop recording for ``reason``: close the bag with what it has and raise :class:`BagError`."""
        self.stopped = f"bag {self.path}: recording stopped after {sum(self.counts.values())} messages: {reason}"
        try:
            self.close()
        except BagError as exc:
            self.stopped += f"; {exc}"
        else:
            self.stopped += "; the bag was closed and is readable"
        raise BagError(self.stopped)

    def write_msg(self, topic: str, msg: Any, t_ns: int) -> None:
        """Serialize a typestore message, add its topic if new, and write it."""
        self.add_topic(topic, msg.__msgtype__)
        self.write(topic, serialize(msg), t_ns)

    def close(self) -> None:
        """Write the index and ``metadata.yaml`` (once); :class:`BagError` if that fails."""
        writer, self._writer = self._writer, None
        if writer is not None:
            try:
                writer.close()
            except (OSError, sqlite3.Error) as exc:
                raise BagError(f"cannot close bag {self.path}: {exc}") from None

    def __enter__(self) -> "BagRecorder":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _hash_msgdef(msgtype: str, msgdef: str) -> str:
    """RIHS01 hash of a message type given by its .msg text (standard types it uses come from the store)."""
    store = get_typestore(getattr(Stores, "ROS2_KILTED", None) or Stores.ROS2_JAZZY)
    try:
        store.register(get_types_from_msg(msgdef, msgtype))
        return store.hash_rihs01(msgtype)
    except Exception as exc:  # rosbags raises several parser/typesys errors
        raise BagError(f"bad message definition for {msgtype}: {exc}") from None


def absolute_topic(topic: str) -> str:
    """``camera/image_raw`` -> ``/camera/image_raw`` (how ``ros2 bag record`` names topics)."""
    if not topic or topic.strip("/") == "":
        raise BagError(f"bad topic name {topic!r}")
    return topic if topic.startswith("/") else "/" + topic


def _full_type(msgtype: str) -> str:
    parts = msgtype.split("/")
    if len(parts) == 2:
        return f"{parts[0]}/msg/{parts[1]}"
    if len(parts) == 3 and all(parts):
        return msgtype
    raise BagError(f"bad message type name {msgtype!r}; expected pkg/msg/Name")


class BagReader:
    """Open a rosbag2 (or ROS 1) bag with AnyReader; a context manager with clear errors.

    ``topics`` maps topic -> message type; ``require(topic, types)`` raises :class:`BagError`
    naming the missing topic and what the bag has; ``messages(topics)`` yields
    ``(topic, msgtype, t_ns, msg)`` in time order.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise BagError(f"bag {self.path} does not exist")
        if self.path.is_dir() and not (self.path / "metadata.yaml").exists():
            raise BagError(f"bag {self.path} has no metadata.yaml (not a rosbag2 directory; "
                           "for a bag cut short, try `ros2 bag reindex`)")
        try:
            self._reader = AnyReader([self.path], default_typestore=typestore())
            self._reader.open()
        except (AnyReaderError, OSError, ValueError, KeyError) as exc:
            raise BagError(f"cannot open bag {self.path} (truncated or corrupt?): "
                           f"{exc or type(exc).__name__}") from None
        self.topics: dict[str, str] = {t: info.msgtype for t, info in self._reader.topics.items()}

    def describe(self) -> str:
        """``topic (type)`` list of the bag, for error messages."""
        return ", ".join(f"{t} ({m})" for t, m in sorted(self.topics.items())) or "no topics"

    def resolve(self, topic: str) -> str | None:
        """Return the bag's name for ``topic``.

        Exact, with or without the leading slash, or, for a relative name, the one topic ending in
        ``/topic`` (recorded in some namespace).
        """
        for name in (topic, absolute_topic(topic), topic.lstrip("/")):
            if name in self.topics:
                return name
        if not topic.startswith("/"):
            ends = [t for t in self.topics if t.endswith("/" + topic)]
            if len(ends) == 1:
                return ends[0]
        return None

    def require(self, topic: str, msgtypes: Sequence[str]) -> tuple[str, str]:
        """Check the bag has ``topic`` with one of ``msgtypes``; return (bag's topic name, type)."""
        name = self.resolve(topic)
        if name is None:
            raise BagError(f"bag {self.path} has no topic {topic!r}; it has: {self.describe()}")
        if self.topics[name] not in msgtypes:
            raise BagError(f"bag {self.path}: topic {name} has unsupported message type "
                           f"{self.topics[name]}; expected {' or '.join(msgtypes)}")
        return name, self.topics[name]

    def count(self, topic: str) -> int:
        """Count the messages on ``topic`` (the bag's name for it) according to the bag's index."""
        return int(self._reader.topics[topic].msgcount) if topic in self.topics else 0

    def messages(self, topics: Sequence[str]) -> Iterator[tuple[str, str, int, Any]]:
        conns = [c for c in self._reader.connections if c.topic in set(topics)]
        try:
            for conn, t_ns, raw in self._reader.messages(connections=conns):
                yield conn.topic, conn.msgtype, int(t_ns), self._reader.deserialize(raw, conn.msgtype)
        except (AnyReaderError, OSError, ValueError, KeyError, EOFError) as exc:
            raise BagError(f"bag {self.path} is truncated or corrupt: {exc or type(exc).__name__}") from None

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    def __enter__(self) -> "BagReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
