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

"""Test session set-up: DDS on loopback and a domain of our own, before anything starts rclpy.

The rclpy fixtures of test/ros_helpers.py (``ros_context``, ``ros_harness``) are registered here for every
test module, where rclpy is installed.
"""
import importlib.util
import os

os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("ROS_DOMAIN_ID", str(100 + os.getpid() % 100))

if importlib.util.find_spec("rclpy") is not None:
    from ros_helpers import ros_context, ros_harness  # noqa: E402,F401  (fixtures)
