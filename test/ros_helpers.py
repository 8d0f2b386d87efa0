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

"""Helpers for node tests on real rclpy (no mocks): a harness with one executor, spin_until, a probe node.

conftest.py registers the fixtures for every test module::

    def test_x(ros_harness):
        node = ros_harness.start(CameraNode, backend="folder", path=str(tmp))
        images = ros_harness.probe.collect("camera/image_raw", Image)
        assert ros_harness.spin_until(lambda: len(images) >= 3, timeout_s=5)

Every test gets its own namespace (``ros_harness.namespace``) so topics of earlier tests never mix in;
conftest.py sets ROS_DOMAIN_ID and ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST for the session.
"""
from __future__ import annotations

import time
import uuid
from typing import Any, Callable

import pytest
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile

from celegans_autofocus.nodes.common import RELIABLE_QOS


def spin_until(executor, predicate: Callable[[], bool], timeout_s: float = 15.0,
               period_s: float = 0.01) -> bool:
    """Spin ``executor`` until ``predicate()`` is true (returns True) or ``timeout_s`` passes (False)."""
    deadline = time.monotonic() + timeout_s
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        executor.spin_once(timeout_sec=period_s)


class Probe(Node):
    """A test node that records messages of any topic and publishes test input."""

    def __init__(self, namespace: str):
        super().__init__("probe", namespace=namespace)
        self.received: dict[str, list] = {}

    def collect(self, topic: str, msg_type: type, qos: QoSProfile = RELIABLE_QOS) -> list:
        """Subscribe to ``topic``; the returned list fills with the messages as they arrive."""
        messages = self.received.setdefault(topic, [])
        self.create_subscription(msg_type, topic, messages.append, qos)
        return messages

    def publisher(self, topic: str, msg_type: type, qos: QoSProfile = RELIABLE_QOS):
        return self.create_publisher(msg_type, topic, qos)


class RosHarness:
    """Nodes of one test on one executor, in a namespace of their own; all destroyed at teardown."""

    def __init__(self):
        self.namespace = "/t" + uuid.uuid4().hex[:10]
        self.executor = SingleThreadedExecutor()
        self.nodes: list[Node] = []
        self.probe = self.add(Probe(self.namespace))

    def add(self, node: Node) -> Node:
        self.nodes.append(node)
        self.executor.add_node(node)
        return node

    def start(self, node_cls: Callable[..., Node], **params: Any) -> Node:
        """Construct ``node_cls`` in the test namespace with ``params`` as parameter overrides."""
        overrides = [Parameter(name, value=value) for name, value in params.items()]
        return self.add(node_cls(namespace=self.namespace, parameter_overrides=overrides))

    def spin_until(self, predicate: Callable[[], bool], timeout_s: float = 15.0) -> bool:
        return spin_until(self.executor, predicate, timeout_s)

    def spin_for(self, duration_s: float) -> None:
        spin_until(self.executor, lambda: False, duration_s)

    def wait_for_subscribers(self, publisher, count: int = 1, timeout_s: float = 15.0) -> bool:
        """Spin until ``publisher`` is matched by ``count`` subscriptions (DDS discovery)."""
        return self.spin_until(lambda: publisher.get_subscription_count() >= count, timeout_s)

    def close(self) -> None:
        for node in self.nodes:
            self.executor.remove_node(node)
            node.destroy_node()
        self.executor.shutdown()


@pytest.fixture(scope="session")
def ros_context():
    """Provide rclpy's default context, initialised once for the test session."""
    owner = not rclpy.ok()
    if owner:
        rclpy.init()
    yield
    if owner:
        rclpy.try_shutdown()


@pytest.fixture
def ros_harness(ros_context):
    harness = RosHarness()
    yield harness
    harness.close()
