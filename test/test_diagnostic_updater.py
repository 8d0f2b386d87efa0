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

"""The nodes' /diagnostics from diagnostic_updater, where it can be imported (a ROS install; no PyPI wheel).

Its Updater (nodes/diagnostics.py) publishes the same status name and content as the hand-made publisher
used elsewhere.
"""
from __future__ import annotations

import importlib.util

import pytest
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus

from celegans_autofocus.nodes.stepper_controller_node import StepperControllerNode

pytestmark = pytest.mark.skipif(importlib.util.find_spec("diagnostic_updater") is None,
                                reason="diagnostic_updater is not installed (it comes with a ROS install)")


def test_controller_status_is_published_by_diagnostic_updater(ros_harness):
    node = ros_harness.start(StepperControllerNode, diagnostics_period_s=0.2, autostart=False)
    assert node.diagnostics.updater is not None
    assert node.get_parameter("diagnostic_updater.period").value == 0.2  # the Updater's own parameter
    diagnostics = ros_harness.probe.collect("/diagnostics", DiagnosticArray)
    name = node.diagnostics.status_name

    def latest(predicate=lambda s: True) -> DiagnosticStatus | None:
        found = [s for d in diagnostics for s in d.status if s.name == name and predicate(s)]
        return found[-1] if found else None

    assert ros_harness.spin_until(lambda: latest(lambda s: "unconfigured" in s.message), timeout_s=10)
    assert latest().level == DiagnosticStatus.WARN and latest().hardware_id == "simulated"
    node.trigger_configure()
    node.trigger_activate()
    assert ros_harness.spin_until(lambda: latest(lambda s: s.level == DiagnosticStatus.WARN
                                                 and "watchdog" in s.message), timeout_s=10)
    values = {kv.key: kv.value for kv in latest().values}
    assert values["lifecycle_state"] == "active" and values["position_steps"] == "0"
    if hasattr(node.diagnostics.updater, "node_name"):  # diagnostic_updater >= 3.1 names it as we do
        assert name == f"{node.get_fully_qualified_name()}: focus stepper"
