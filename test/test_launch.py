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

"""Config files and launch files.

- The config YAMLs are checked against the nodes' declared parameters everywhere (no `launch` needed).
- The launch files' arguments, node selection, namespace, remapping and parameters are checked
  statically (a LaunchContext, no processes) where `launch` and `launch_ros` are importable.
- A launch_testing test starts sim.launch.py (player + detector as real processes) and checks the
  topics; it runs where launch_testing is importable and the package is installed in an ament
  prefix (after `colcon build` and sourcing install/setup.bash). Elsewhere these tests are skipped
  with the reason. This file is also the launch_testing test module: launch_testing runs
  generate_test_description() and the unittest classes below; pytest runs only the test_* functions.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import subprocess
import sys
import time
import unittest
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = {"autofocus.yaml": ROOT / "config" / "autofocus.yaml", "sim.yaml": ROOT / "config" / "sim.yaml"}
LAUNCH_DIR = ROOT / "launch"
NODE_MODULES = {name: f"celegans_autofocus.nodes.{name}" for name in (
    "camera_node", "worm_detector_node", "focus_predictor_node", "stepper_controller_node", "stack_player_node",
    "bag_recorder_node")}
LAUNCH_TEST_NODES = "stack_player_node,worm_detector_node"
LAUNCH_TEST_NS = "/launch_test_sim"
NO_LAUNCH = ("ROS 2 `launch` is not importable here (it has no PyPI wheel; it comes with a ROS 2 install: "
             "source /opt/ros/<distro>/setup.bash)")


# ---------------------------------------------------------------- config files (always run)

def _blocks(path: Path) -> dict[str, dict]:
    data = yaml.safe_load(path.read_text())
    assert all(key.startswith("/**/") for key in data), f"{path}: node keys must be /**/<node> (any namespace)"
    return {key[len("/**/"):]: block["ros__parameters"] for key, block in data.items()}


def _type_error(spec, value) -> str | None:
    default = spec.default
    if isinstance(default, list):
        element = spec.array_type or (type(default[0]) if default else None)
        ok = isinstance(value, list) and all(type(v) is element for v in value)
    else:
        ok = type(value) is type(default)
    return None if ok else f"{spec.name}: {value!r} is not of the declared type of {default!r}"


@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_config_keys_and_values_match_the_declared_parameters(config):
    blocks = _blocks(CONFIGS[config])
    expected = {"autofocus.yaml": {"camera_node", "worm_detector_node", "focus_predictor_node",
                                   "stepper_controller_node", "bag_recorder_node"},
                "sim.yaml": {"stack_player_node", "worm_detector_node", "focus_predictor_node",
                             "stepper_controller_node", "bag_recorder_node"}}[config]
    assert set(blocks) == expected
    problems = []
    for node, params in blocks.items():
        specs = {p.name: p for p in importlib.import_module(NODE_MODULES[node]).PARAMS}
        for name, value in params.items():
            spec = specs.get(name)
            if spec is None:
                problems.append(f"{node}: {name} is not a parameter of the node")
                continue
            error = _type_error(spec, value) or spec.error(value)
            if error is None and spec.range is not None and not spec.range[0] <= value <= spec.range[1]:
                error = f"{name}={value} is outside {spec.range}"
            if error:
                problems.append(f"{node}: {error}")
    assert problems == []


def test_config_wildcards_reach_namespaced_nodes_through_the_rcl_parser(ros_context):
    from celegans_autofocus.nodes.worm_detector_node import WormDetectorNode

    edited = yaml.safe_load(CONFIGS["sim.yaml"].read_text())
    edited["/**/worm_detector_node"]["ros__parameters"]["fov_px"] = 1250
    path = Path(os.environ.get("TMPDIR", "/tmp")) / f"celegans_sim_{os.getpid()}.yaml"
    path.write_text(yaml.safe_dump(edited))
    try:
        node = WormDetectorNode(namespace="/scope7", cli_args=["--ros-args", "--params-file", str(path)])
        assert node.params.fov_px == 1250 and node.params.select == "nearest_center"
        node.destroy_node()
    finally:
        path.unlink()


# ---------------------------------------------------------------- launch files (need `launch`)

def _importable(*modules: str) -> bool:
    try:
        for module in modules:
            importlib.import_module(module)
    except ImportError:
        return False
    return True


# launch.actions, not launch: the repo's launch/ folder alone imports as a namespace package
needs_launch = pytest.mark.skipif(not _importable("launch.actions", "launch_ros.actions"), reason=NO_LAUNCH)
ARGUMENTS = {"config", "model_path", "namespace", "nodes", "image_topic", "use_sim_time", "log_level"}


def _load_launch_file(name: str):
    spec = importlib.util.spec_from_file_location(name.replace(".", "_"), LAUNCH_DIR / name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _arguments(description) -> dict:
    from launch.actions import DeclareLaunchArgument

    return {e.name: e for e in description.entities if isinstance(e, DeclareLaunchArgument)}


def _context(description, **arguments):
    """Make a LaunchContext holding the declared defaults of ``description``, overridden by ``arguments``."""
    from launch import LaunchContext

    context = LaunchContext()
    defaults = {name: "".join(s.perform(context) for s in arg.default_value)
                for name, arg in _arguments(description).items()}
    context.launch_configurations.update({**defaults, **arguments})
    return context


def _group(description) -> tuple[list, dict]:
    """Return (the PushRosNamespace actions, {executable: Node}) of the description's one GroupAction."""
    from launch.actions import GroupAction
    from launch_ros.actions import Node, PushRosNamespace

    groups = [e for e in description.entities if isinstance(e, GroupAction)]
    assert len(groups) == 1
    entities = groups[0].get_sub_entities()
    return ([e for e in entities if isinstance(e, PushRosNamespace)],
            {e.node_executable: e for e in entities if isinstance(e, Node)})


@needs_launch
@pytest.mark.parametrize("name", ["autofocus.launch.py", "sim.launch.py"])
def test_launch_files_declare_the_arguments(name):
    module = _load_launch_file(name)
    description = module.generate_launch_description()
    arguments = _arguments(description)
    assert set(arguments) == ARGUMENTS
    defaults = {k: v.default_value[0].perform(None) if v.default_value else None for k, v in arguments.items()}
    sim = name == "sim.launch.py"
    assert Path(defaults["config"]) == CONFIGS["sim.yaml" if sim else "autofocus.yaml"]
    assert defaults["use_sim_time"] == ("true" if sim else "false")
    assert defaults["image_topic"] == "camera/image_raw"
    assert arguments["use_sim_time"].choices == ["true", "false"]
    assert "info" in arguments["log_level"].choices
    nodes = defaults["nodes"].split(",")
    assert ("stack_player_node" in nodes) == sim and ("camera_node" in nodes) != sim
    assert "bag_recorder_node" not in nodes


@needs_launch
@pytest.mark.parametrize("name", ["autofocus.launch.py", "sim.launch.py"])
def test_every_node_in_a_namespace_group_with_its_own_condition(name):
    from launch.conditions import IfCondition

    description = _load_launch_file(name).generate_launch_description()
    pushes, nodes = _group(description)
    assert len(pushes) == 1
    assert set(nodes) == set(_load_launch_file("autofocus.launch.py").ALL_NODES)
    assert all(isinstance(node.condition, IfCondition) for node in nodes.values())
    context = _context(description, nodes="stack_player_node, bag_recorder_node,stack_player_node",
                       namespace="scope7")
    started = {n for n, node in nodes.items() if node.condition.evaluate(context)}
    assert started == {"stack_player_node", "bag_recorder_node"}
    pushes[0].execute(context)
    recorder = nodes["bag_recorder_node"]
    recorder._perform_substitutions(context)
    assert recorder.expanded_node_namespace == "/scope7"


@needs_launch
def test_image_topic_remaps_every_node():
    description = _load_launch_file("autofocus.launch.py").generate_launch_description()
    _, nodes = _group(description)
    context = _context(description, image_topic="/my_cam/image_raw")
    for node in nodes.values():
        node._perform_substitutions(context)
        assert ("camera/image_raw", "/my_cam/image_raw") in node.expanded_remapping_rules


@needs_launch
@pytest.mark.parametrize("use_sim_time", ["true", "false"])
def test_sim_time_the_player_is_the_clock(use_sim_time):
    from launch_ros.utilities import evaluate_parameters, normalize_parameters

    module = _load_launch_file("sim.launch.py")
    base = _load_launch_file("autofocus.launch.py")
    context = _context(module.generate_launch_description(), use_sim_time=use_sim_time)

    def overrides(node: str) -> dict:
        config, values = evaluate_parameters(context, normalize_parameters(base.node_parameters(node)))
        assert Path(config) == CONFIGS["sim.yaml"]
        return values

    player = overrides("stack_player_node")
    assert player["use_sim_time"] is False and player["clock"] == ("sim" if use_sim_time == "true" else "wall")
    for node in set(base.ALL_NODES) - {"stack_player_node"}:
        assert overrides(node)["use_sim_time"] is (use_sim_time == "true")


@needs_launch
def test_model_path_overrides_the_config_only_when_given(tmp_path):
    from launch_ros.utilities import evaluate_parameters, normalize_parameters

    base = _load_launch_file("autofocus.launch.py")
    description = base.generate_launch_description()
    params = normalize_parameters(base.node_parameters("focus_predictor_node"))
    model = tmp_path / "m.onnx"
    model.write_bytes(b"")
    given = evaluate_parameters(_context(description, model_path=str(model)), params)[1]
    assert given["model_path"] == str(model.resolve())
    config = tmp_path / "my.yaml"
    config.write_text(yaml.safe_dump({"/**/focus_predictor_node": {"ros__parameters": {"model_path": "/x.onnx"}}}))
    assert evaluate_parameters(_context(description, config=str(config)), params)[1]["model_path"] == "/x.onnx"


@needs_launch
def test_bad_arguments_fail_the_launch_with_one_line(tmp_path):
    base = _load_launch_file("autofocus.launch.py")
    description = base.generate_launch_description()
    with pytest.raises(ValueError, match="unknown node.*camera_nod.*choose from"):
        base.check_arguments(_context(description, nodes="camera_nod"))
    with pytest.raises(ValueError, match="nodes:= is empty"):
        base.check_arguments(_context(description, nodes=" , "))
    with pytest.raises(FileNotFoundError, match="missing.yaml"):
        base.check_arguments(_context(description, config=str(tmp_path / "missing.yaml")))
    with pytest.raises(FileNotFoundError, match="nomodel.onnx"):
        base.check_arguments(_context(description, model_path=str(tmp_path / "nomodel.onnx")))
    assert base.check_arguments(_context(description, nodes="bag_recorder_node")) == []


@needs_launch
def test_the_loop_nodes_are_required_the_recorder_is_not():
    from launch.actions import Shutdown

    _, nodes = _group(_load_launch_file("autofocus.launch.py").generate_launch_description())
    required = {name for name, node in nodes.items() if any(isinstance(a, Shutdown) for a in node.get_sub_entities())}
    assert required == set(nodes) - {"bag_recorder_node"}


def _require_installed_package() -> None:
    if not _importable("launch.actions", "launch_ros.actions", "launch_testing"):
        pytest.skip(NO_LAUNCH)
    from ament_index_python.packages import PackageNotFoundError, get_package_prefix

    try:
        get_package_prefix("celegans_autofocus")
    except (PackageNotFoundError, OSError):  # OSError: no AMENT_PREFIX_PATH at all
        pytest.skip("celegans_autofocus is not in an ament prefix (colcon build, then source install/setup.bash)")


def test_sim_launch_with_launch_testing():
    """Run this file under launch_testing as `launch_test test/test_launch.py` would.

    The test folder is not on the path; sim.launch.py starts real node processes.
    """
    _require_installed_package()
    env = dict(os.environ, ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    proc = subprocess.run([sys.executable, "-m", "launch_testing.launch_test", __file__], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]


# ---------------------------------------------------------------- the launch_testing part

def generate_test_description():
    """sim.launch.py with the player and the detector (no model needed), in a namespace of its own."""
    from launch import LaunchDescription
    from launch.actions import IncludeLaunchDescription
    from launch.launch_description_sources import PythonLaunchDescriptionSource
    from launch_testing.actions import ReadyToTest

    sim = IncludeLaunchDescription(PythonLaunchDescriptionSource(str(LAUNCH_DIR / "sim.launch.py")),
                                   launch_arguments={"nodes": LAUNCH_TEST_NODES, "namespace": LAUNCH_TEST_NS}.items())
    return LaunchDescription([sim, ReadyToTest()])


class TestSimPipelinePublishes(unittest.TestCase):
    __test__ = False  # run by launch_testing, not collected by pytest

    def test_player_and_detector_topics(self):
        import rclpy
        from geometry_msgs.msg import PointStamped
        from sensor_msgs.msg import Image

        from celegans_autofocus.nodes.common import reliable_qos

        rclpy.init()
        try:
            node = rclpy.create_node("launch_test_probe", namespace=LAUNCH_TEST_NS)
            got = {"camera/image_raw": [], "sim/ground_truth": [], "worm/crop": [], "worm/target": []}
            for topic, msgs in got.items():
                msg_type = PointStamped if topic in ("sim/ground_truth", "worm/target") else Image
                node.create_subscription(msg_type, topic, msgs.append, reliable_qos())
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not all(len(m) >= 2 for m in got.values()):
                rclpy.spin_once(node, timeout_sec=0.1)
            self.assertTrue(all(len(m) >= 2 for m in got.values()), {k: len(v) for k, v in got.items()})
            crop = got["worm/crop"][-1]
            self.assertEqual((crop.width, crop.height), (375, 375))  # sim.yaml: fov_px 500 at 1944 px wide
            truth = got["sim/ground_truth"][0].point  # no controller: the lens stays at initial_z_steps 0
            self.assertEqual((truth.x, truth.z), (0.0, truth.y))
            self.assertLess(abs(truth.y - 120.0), 30.0)  # sim.yaml: best plane starts at 120, drifts 2 steps/s
            node.destroy_node()
        finally:
            rclpy.shutdown()


def _post_shutdown(cls):
    try:
        import launch_testing
    except ImportError:
        return cls
    return launch_testing.post_shutdown_test()(cls)


@_post_shutdown
class TestSimPipelineShutdown(unittest.TestCase):
    __test__ = False  # run by launch_testing, not collected by pytest

    def test_nodes_exit_cleanly(self, proc_info):
        import launch_testing.asserts

        launch_testing.asserts.assertExitCodes(proc_info)
