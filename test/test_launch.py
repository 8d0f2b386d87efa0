"""Config files and launch files.

- The config YAMLs are checked against the nodes' declared parameters everywhere (no `launch` needed).
- The launch files' argument handling runs where `launch` and `launch_ros` are importable.
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

from ros_helpers import ros_context  # noqa: F401  (fixture)

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = {"autofocus.yaml": ROOT / "config" / "autofocus.yaml", "sim.yaml": ROOT / "config" / "sim.yaml"}
LAUNCH_DIR = ROOT / "launch"
NODE_MODULES = {name: f"celegans_autofocus.nodes.{name}" for name in (
    "camera_node", "worm_detector_node", "focus_predictor_node", "stepper_controller_node", "stack_player_node")}
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
                                   "stepper_controller_node"},
                "sim.yaml": {"stack_player_node", "worm_detector_node", "focus_predictor_node",
                             "stepper_controller_node"}}[config]
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

def _require_launch() -> None:
    # launch.actions, not launch: the repo's launch/ folder alone imports as a namespace package
    pytest.importorskip("launch.actions", reason=NO_LAUNCH)
    pytest.importorskip("launch_ros", reason=NO_LAUNCH)


def _load_launch_file(name: str):
    _require_launch()
    spec = importlib.util.spec_from_file_location(name.replace(".", "_"), LAUNCH_DIR / name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _defaults(description) -> dict[str, str]:
    """Declared launch arguments -> their default values as text."""
    from launch import LaunchContext
    from launch.actions import DeclareLaunchArgument

    return {e.name: "".join(sub.perform(LaunchContext()) for sub in e.default_value)
            for e in description.entities if isinstance(e, DeclareLaunchArgument)}


def _context(**arguments):
    from launch import LaunchContext

    context = LaunchContext()
    defaults = {"config": str(CONFIGS["sim.yaml"]), "model_path": "", "namespace": "", "use_sim_time": "false",
                "log_level": "info", "nodes": "stack_player_node,worm_detector_node"}
    context.launch_configurations.update({**defaults, **arguments})
    return context


@pytest.mark.parametrize("name", ["autofocus.launch.py", "sim.launch.py"])
def test_launch_files_declare_the_arguments(name):
    module = _load_launch_file(name)
    defaults = _defaults(module.generate_launch_description())
    assert set(defaults) == {"config", "model_path", "namespace", "nodes", "use_sim_time", "log_level"}
    assert Path(defaults["config"]) == CONFIGS["sim.yaml" if name == "sim.launch.py" else "autofocus.yaml"]


def test_launch_selects_nodes_and_checks_arguments(tmp_path):
    base = _load_launch_file("autofocus.launch.py")
    actions = base.node_actions(_context(nodes="stack_player_node, worm_detector_node,stack_player_node"))
    assert [a.node_executable for a in actions] == ["stack_player_node", "worm_detector_node"]
    assert all(a.node_package == "celegans_autofocus" for a in actions)
    with pytest.raises(ValueError, match="unknown node.*camera_nod.*choose from"):
        base.node_actions(_context(nodes="camera_nod"))
    with pytest.raises(FileNotFoundError, match="missing.yaml"):
        base.node_actions(_context(config=str(tmp_path / "missing.yaml")))
    with pytest.raises(FileNotFoundError, match="nomodel.onnx"):
        base.node_actions(_context(model_path=str(tmp_path / "nomodel.onnx")))
    with pytest.raises(ValueError, match="use_sim_time"):
        base.node_actions(_context(use_sim_time="maybe"))
    nodes = _defaults(base.generate_launch_description())["nodes"]
    assert "camera_node" in nodes and "stack_player_node" not in nodes


def _require_installed_package() -> None:
    _require_launch()
    pytest.importorskip("launch_testing", reason=NO_LAUNCH)
    from ament_index_python.packages import PackageNotFoundError, get_package_prefix

    try:
        get_package_prefix("celegans_autofocus")
    except (PackageNotFoundError, OSError):  # OSError: no AMENT_PREFIX_PATH at all
        pytest.skip("celegans_autofocus is not in an ament prefix (colcon build, then source install/setup.bash)")


def test_sim_launch_with_launch_testing():
    """Runs this file under launch_testing: sim.launch.py starts real node processes."""
    _require_installed_package()
    env = dict(os.environ, ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
               PYTHONPATH=os.pathsep.join(filter(None, [str(Path(__file__).parent), os.environ.get("PYTHONPATH")])))
    proc = subprocess.run([sys.executable, "-m", "launch_testing.launch_test", __file__], env=env,
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
            self.assertEqual((crop.width, crop.height), (125, 125))  # sim.yaml: fov_px 500 at 648 px wide
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
