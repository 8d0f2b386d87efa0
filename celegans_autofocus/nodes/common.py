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

"""Helpers shared by every node: QoS profiles, Image <-> numpy, declared + validated parameters, main().

Parameters are declared from a list of :class:`Param` with a ``ParameterDescriptor`` (description,
integer/floating-point range, read-only flag, allowed choices). One ``on_set_parameters`` callback
rejects invalid values, both at start-up (YAML/overrides; the node then refuses to start) and at
run time (``ros2 param set`` gets the reason back). :func:`run_node` is every node's ``main()``.
"""
from __future__ import annotations

import array
import copy
import signal
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence, TypeVar

import numpy as np
import rclpy
import yaml
from builtin_interfaces.msg import Time
from rcl_interfaces.msg import (FloatingPointRange, IntegerRange, ParameterDescriptor,
                                SetParametersResult)
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.qos_overriding_options import QoSOverridingOptions
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from ..core.images import ImageError, decode, encode, to_gray

__all__ = [
    "ConfigError", "ImageError", "Param", "Params", "declare_params", "sensor_qos", "reliable_qos",
    "SENSOR_QOS", "RELIABLE_QOS", "matched_qos", "image_to_array", "image_to_gray", "array_to_image",
    "default_encoding", "stamp_to_s", "s_to_stamp", "run_node", "params_from_file", "with_image_qos_overrides",
]


class ConfigError(RuntimeError):
    """A configuration the node cannot run with; :func:`run_node` logs it and exits non-zero."""


# ---------------------------------------------------------------- QoS

def sensor_qos(depth: int = 1) -> QoSProfile:
    """REP-2003 sensor-data profile (best effort, volatile, keep last ``depth``) for image subscribers.

    ``depth=1`` is keep-latest: a slow subscriber sees the newest frame and never a queue.
    A best-effort subscriber matches both best-effort and reliable publishers.
    """
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth,
                      reliability=ReliabilityPolicy.BEST_EFFORT, durability=DurabilityPolicy.VOLATILE)


def reliable_qos(depth: int = 10) -> QoSProfile:
    """Reliable, volatile, keep last ``depth``: publishers and every non-image subscriber."""
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth,
                      reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)


SENSOR_QOS = sensor_qos()
RELIABLE_QOS = reliable_qos()


def matched_qos(node: Node, topic: str, depth: int) -> QoSProfile:
    """For a subscriber that must not lose messages: reliable when every publisher of ``topic`` is, else best effort.

    Best effort matches any publisher; reliable ones deliver every message (recorders, acquisition).
    """
    infos = node.get_publishers_info_by_topic(node.resolve_topic_name(topic))
    if infos and all(i.qos_profile.reliability == ReliabilityPolicy.RELIABLE for i in infos):
        return reliable_qos(depth=depth)
    return sensor_qos(depth=depth)


T = TypeVar("T")


def with_image_qos_overrides(create: Callable[..., T], msg_type: type, topic: str, *args: Any) -> T:
    """Call ``create(msg_type, topic, *args)`` (a publisher or subscription factory) with QoS overrides.

    History, depth and reliability of this image topic can be set at start-up by the read-only parameters
    ``qos_overrides./<ns>/<topic>.<publisher|subscription>.<policy>`` (rclpy's QoSOverridingOptions);
    :class:`ConfigError` names a bad override. A QoSProfile in ``args`` is copied: rclpy applies the
    overrides to the profile it is given, which may be shared with other topics.
    """
    args = tuple(copy.copy(a) if isinstance(a, QoSProfile) else a for a in args)
    try:
        return create(msg_type, topic, *args, qos_overriding_options=QoSOverridingOptions.with_default_policies())
    except (RuntimeError, ParameterException) as exc:  # an unknown policy name, a depth DDS refuses, a wrong type
        raise ConfigError(f"QoS override for {topic}: {exc}") from None


# ---------------------------------------------------------------- images

def image_to_array(msg: Image) -> np.ndarray:
    """sensor_msgs/Image -> (H, W) or (H, W, C) array; :class:`ImageError` for bad encodings/sizes."""
    return decode(msg.data, msg.encoding, msg.height, msg.width, msg.step, bool(msg.is_bigendian))


def image_to_gray(msg: Image) -> np.ndarray:
    """sensor_msgs/Image -> 2-D grayscale (uint8/uint16 for mono, float32 BT.601 luma for colour)."""
    return to_gray(image_to_array(msg), msg.encoding)


def default_encoding(image: np.ndarray) -> str:
    """Return the encoding of an OpenCV-style array: mono8/mono16 for 2-D, bgr8/bgra8 for colour uint8."""
    if image.ndim == 2 and image.dtype == np.uint8:
        return "mono8"
    if image.ndim == 2 and image.dtype == np.uint16:
        return "mono16"
    if image.ndim == 3 and image.dtype == np.uint8 and image.shape[2] in (3, 4):
        return "bgr8" if image.shape[2] == 3 else "bgra8"
    raise ImageError(f"no sensor_msgs encoding for an array of shape {image.shape} and dtype {image.dtype}")


def array_to_image(image: np.ndarray, encoding: str | None = None, header: Header | None = None,
                   frame_id: str | None = None) -> Image:
    """Array -> sensor_msgs/Image (little endian). ``header`` is copied; ``frame_id`` overrides it."""
    encoding = encoding or default_encoding(image)
    data, step = encode(image, encoding)
    msg = Image()
    if header is not None:
        msg.header = header
    if frame_id is not None:
        msg.header.frame_id = frame_id
    msg.height, msg.width = int(image.shape[0]), int(image.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = 0
    msg.step = step
    msg.data = array.array("B", data)
    return msg


def stamp_to_s(stamp: Time) -> float:
    """builtin_interfaces/Time -> seconds."""
    return stamp.sec + stamp.nanosec * 1e-9


def stamp_ns(stamp: Time) -> int | None:
    """builtin_interfaces/Time -> nanoseconds; None for a stamp no clock makes (sec < 0 or nanosec >= 1e9)."""
    if stamp.sec < 0 or not 0 <= stamp.nanosec < 1_000_000_000:
        return None
    return stamp.sec * 1_000_000_000 + stamp.nanosec


def s_to_stamp(t_s: float) -> Time:
    """Seconds -> builtin_interfaces/Time (non-negative)."""
    ns = max(0, int(round(t_s * 1e9)))
    return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


# ---------------------------------------------------------------- parameters

ParamValue = bool | int | float | str | list


@dataclass(frozen=True)
class Param:
    """One declared parameter. The type is the default's type (write floats as 5.0 in YAML).

    ``range``: inclusive (min, max) for int/float parameters, enforced by the descriptor.
    ``choices``: allowed values. ``check``: returns an error text for a bad value, else None.
    ``read_only``: fixed after start-up (device, backend, paths).
    ``array_type``: the element type of an array parameter whose default is empty (``float``,
    ``int``, ``str`` or ``bool``); such a parameter reads as ``[]`` until it is set.
    """

    name: str
    default: ParamValue
    description: str
    range: tuple[float, float] | None = None
    step: float = 0
    choices: tuple = ()
    read_only: bool = False
    check: Callable[[Any], str | None] | None = None
    array_type: type | None = None

    def declared_value(self) -> Any:
        """Return what ``declare_parameters`` gets: the default, or the array type when the default is []."""
        if isinstance(self.default, list) and not self.default:
            types = {float: Parameter.Type.DOUBLE_ARRAY, int: Parameter.Type.INTEGER_ARRAY,
                     str: Parameter.Type.STRING_ARRAY, bool: Parameter.Type.BOOL_ARRAY}
            if self.array_type not in types:
                raise TypeError(f"parameter {self.name}: an empty default needs array_type")
            return types[self.array_type]
        return self.default

    def descriptor(self) -> ParameterDescriptor:
        desc = ParameterDescriptor(name=self.name, description=self.description, read_only=self.read_only)
        if self.choices:
            desc.additional_constraints = "one of: " + ", ".join(map(str, self.choices))
        if self.range is not None:
            lo, hi = self.range
            if isinstance(self.default, bool) or not isinstance(self.default, (int, float)):
                raise TypeError(f"parameter {self.name}: a range needs an int or float default")
            if isinstance(self.default, int):
                desc.integer_range = [IntegerRange(from_value=int(lo), to_value=int(hi), step=int(self.step))]
            else:
                desc.floating_point_range = [FloatingPointRange(from_value=float(lo), to_value=float(hi),
                                                                step=float(self.step))]
        return desc

    def error(self, value: Any) -> str | None:
        """Why ``value`` is not allowed (beyond type and range, which rclpy checks), or None."""
        if self.choices and value not in self.choices:
            return f"{self.name}={value!r} is not one of {', '.join(map(repr, self.choices))}"
        if self.check is not None:
            reason = self.check(value)
            if reason:
                return f"{self.name}={value!r}: {reason}"
        return None


class Params:
    """Current values of a node's declared parameters, kept up to date on every accepted change.

    Read as attributes (``params.fps``) or items (``params["fps"]``). ``on_change(fn)`` registers
    ``fn(changed: dict[name, value])``, called after a run-time change was accepted.
    """

    def __init__(self, node: Node, specs: Sequence[Param]):
        self._specs = {p.name: p for p in specs}
        self._values: dict[str, Any] = {}
        self._listeners: list[Callable[[dict[str, Any]], None]] = []
        self._declared = False
        node.add_on_set_parameters_callback(self._validate)
        node.add_post_set_parameters_callback(self._apply)
        try:
            node.declare_parameters("", [(p.name, p.declared_value(), p.descriptor()) for p in specs])
        except ParameterException as exc:
            raise ConfigError(f"invalid parameter: {exc}") from None
        self._declared = True

    def _validate(self, params: list[Parameter]) -> SetParametersResult:
        errors = [err for p in params if p.name in self._specs and p.value is not None
                  for err in [self._specs[p.name].error(p.value)] if err]
        return SetParametersResult(successful=not errors, reason="; ".join(errors))

    def _apply(self, params: list[Parameter]) -> None:
        changed = {p.name: self._specs[p.name].default if p.value is None else p.value
                   for p in params if p.name in self._specs}
        self._values.update(changed)
        if self._declared and changed:
            for listener in self._listeners:
                listener(changed)

    def on_change(self, listener: Callable[[dict[str, Any]], None]) -> None:
        self._listeners.append(listener)

    def __getitem__(self, name: str) -> Any:
        return self._values[name]

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["_values"][name]
        except KeyError:
            raise AttributeError(name) from None

    def as_dict(self) -> dict[str, Any]:
        return dict(self._values)


def refuse_inconsistent(node: Node, params: Params, build: Callable[[dict[str, Any]], Any], what: str) -> None:
    """Refuse a run-time change for which ``build(all values)`` raises ValueError.

    These are settings valid alone but not together; ``"<what>: <error>"`` is the reason given.
    """

    def check(changes: list[Parameter]) -> SetParametersResult:
        values = {**params.as_dict(), **{c.name: c.value for c in changes}}
        try:
            build(values)
        except (ValueError, TypeError) as exc:
            return SetParametersResult(successful=False, reason=f"{what}: {exc}")
        return SetParametersResult(successful=True)

    node.add_on_set_parameters_callback(check)


def params_from_file(path: str | Path, node_name: str) -> dict[str, Any]:
    """Return the ``ros__parameters`` a ROS 2 parameter file gives a node named ``node_name``.

    Blocks ``/**``, then ``/**/<name>``, ``<name>`` or ``/<name>`` apply (later blocks win), in any namespace,
    as rclpy would apply them. :class:`ConfigError` names the file when it is unreadable or not a
    parameter file.
    """
    try:
        blocks = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read the parameter file {path}: {exc}") from None
    if not isinstance(blocks, dict):
        raise ConfigError(f"{path} is not a ROS 2 parameter file (a mapping of node names)")
    values: dict[str, Any] = {}
    for key in ("/**", f"/**/{node_name}", node_name, f"/{node_name}"):
        block = blocks.get(key)
        if block is None:
            continue
        if not isinstance(block, dict) or not isinstance(block.get("ros__parameters", {}), dict):
            raise ConfigError(f"{path}: block {key!r} needs a ros__parameters mapping")
        values.update(block.get("ros__parameters", {}))
    return values


def declare_params(node: Node, specs: Iterable[Param]) -> Params:
    """Declare ``specs`` on ``node`` with descriptors and validation; :class:`ConfigError` if invalid."""
    return Params(node, list(specs))


# ---------------------------------------------------------------- main

#: Set when Ctrl-C (SIGINT) asked the node to stop.
stop_requested = threading.Event()
_cleaning_up = threading.Event()


def _on_sigint(signum: int, frame) -> None:
    """Stop the node on the first Ctrl-C.

    Later ones (ros2 launch forwards the terminal's) and any during the clean-up are only noted, so they
    cannot break the clean-up.
    """
    first = not stop_requested.is_set()
    stop_requested.set()
    if first and not _cleaning_up.is_set():
        raise KeyboardInterrupt


def construct(node_cls: type[Node], **kwargs) -> Node:
    """Build ``node_cls(**kwargs)``, destroying a half-built node if the constructor raises.

    The half-built node is destroyed before the error propagates, so rclpy's shutdown never calls its
    ``destroy_node`` on attributes that were never set.

    The node's own ``destroy_node`` runs first (it releases what was opened, e.g. a serial port); if it
    fails on the half-built node, the base ``Node.destroy_node`` frees the rcl handles instead.
    """
    node = node_cls.__new__(node_cls)
    try:
        node.__init__(**kwargs)
    except BaseException:
        _destroy_half_built(node)
        raise
    return node


def _destroy_half_built(node: Node) -> None:
    try:
        node.destroy_node()
        return
    except Exception:  # the constructor's error is the one to report
        pass
    try:
        Node.destroy_node(node)
    except Exception:  # Node.__init__ itself failed: nothing was created or tracked
        pass


def run_node(node_cls: type[Node], args: list[str] | None = None,
             fatal: tuple[type[BaseException], ...] = ()) -> int:
    """Every node's ``main()``: init, construct, spin, shut down; returns the exit code.

    :class:`ConfigError`, rclpy parameter errors and ``fatal`` exception types raised while the
    node starts or runs are logged as one clear message and give exit code 2 (no traceback), also
    when the node was only half built (see :func:`construct`).
    """
    name = getattr(node_cls, "NODE_NAME", getattr(node_cls, "__name__", "node"))
    expected = (ConfigError, ParameterException, *fatal)
    stop_requested.clear()
    _cleaning_up.clear()
    previous_sigint = None
    if threading.current_thread() is threading.main_thread():
        previous_sigint = signal.signal(signal.SIGINT, _on_sigint)  # rclpy.init() chains its handler to this
    rclpy.init(args=args)
    node = None
    code = 0
    try:
        node = construct(node_cls)
        rclpy.spin(node)
    except expected as exc:
        _cleaning_up.set()
        logger = node.get_logger() if node is not None else rclpy.logging.get_logger(name)
        logger.fatal(f"{'stopped' if node is not None else 'cannot start'}: {exc}")
        code = 2
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except RuntimeError:
        if rclpy.ok() and not stop_requested.is_set():
            raise
        # Ctrl-C arrived while rclpy was taking a message (pybind11 reports the interrupted conversion as a
        # RuntimeError instead of KeyboardInterrupt), or rclpy's own signal handler shut the context down before
        # ours ran and the executor then failed on it (RCLError: context not valid). A normal stop, not a crash.
    finally:
        _cleaning_up.set()
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
        if previous_sigint is not None:
            # After a Ctrl-C or a fatal error the process is on its way out: ignore the SIGINTs ros2 launch sends,
            # which would otherwise kill it while Python exits. Else the caller's handler is back.
            stopping = stop_requested.is_set() or code != 0
            signal.signal(signal.SIGINT, signal.SIG_IGN if stopping else previous_sigint)
    return code
