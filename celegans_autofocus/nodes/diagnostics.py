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

"""A node's ``/diagnostics``: one DiagnosticStatus named ``"<node's full name>: <what>"`` every ``period_s``.

Where ``diagnostic_updater`` can be imported (a ROS install; it has no PyPI wheel) its ``Updater`` publishes
the status (and adds its parameter ``diagnostic_updater.period``, default ``period_s``); elsewhere a timer of
the node publishes the same status.
"""
from __future__ import annotations

from typing import Callable

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.node import Node
from std_msgs.msg import Header

from .common import reliable_qos

try:
    import diagnostic_updater
except ImportError:  # no ROS install: publish by hand
    diagnostic_updater = None

#: (DiagnosticStatus level, message, key -> value)
Report = tuple[bytes, str, dict[str, str]]


class NodeDiagnostics:
    """Publishes ``report()`` (and ``hardware_id()``) as the node's diagnostic status ``what``."""

    def __init__(self, node: Node, what: str, period_s: float, report: Callable[[], Report],
                 hardware_id: Callable[[], str]):
        self._node, self._what, self._report, self._hardware_id = node, what, report, hardware_id
        if diagnostic_updater is not None:
            self.updater = diagnostic_updater.Updater(node, period=period_s)
            if hasattr(self.updater, "node_name"):  # diagnostic_updater >= 3.1; older ones name by get_name()
                self.updater.node_name = node.get_fully_qualified_name()
            self.updater.setHardwareID(self._hw())
            self.updater.add(what, self._fill)
        else:
            self.updater = None
            self._pub = node.create_publisher(DiagnosticArray, "/diagnostics", reliable_qos())
            self._timer = node.create_timer(period_s, self.publish)

    @property
    def status_name(self) -> str:
        """Name of the status on /diagnostics."""
        if self.updater is None:
            prefix = self._node.get_fully_qualified_name()
        else:
            prefix = getattr(self.updater, "node_name", self._node.get_name())
        return f"{prefix}: {self._what}"

    def _hw(self) -> str:
        return self._hardware_id() or "none"  # diagnostic_updater's word for "no hardware id"

    def _fill(self, stat):
        """diagnostic_updater task: fill its DiagnosticStatusWrapper."""
        level, message, values = self._report()
        stat.summary(level, message)
        stat.hardware_id = self._hw()
        self.updater.setHardwareID(stat.hardware_id)
        for key, value in values.items():
            stat.add(key, value)
        return stat

    def publish(self) -> None:
        level, message, values = self._report()
        status = DiagnosticStatus(level=level, name=self.status_name, message=message, hardware_id=self._hw(),
                                  values=[KeyValue(key=k, value=v) for k, v in values.items()])
        self._pub.publish(DiagnosticArray(header=Header(stamp=self._node.get_clock().now().to_msg()),
                                          status=[status]))
