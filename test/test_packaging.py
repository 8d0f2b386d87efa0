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

"""Packaging tests.

Test collection on a ROS machine without torch, pip-installed node executables where
`ros2 run`/`ros2 launch` look, package.xml covering every third-party import.
"""
from __future__ import annotations

import ast
import importlib.util
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest


ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "celegans_autofocus"
NODES = ("camera_node", "worm_detector_node", "focus_predictor_node", "stepper_controller_node",
         "stack_player_node", "bag_recorder_node")
ENV = dict(os.environ, ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")


# ---------------------------------------------------------------- collection without torch

WITHOUT_TORCH = ("import sys; sys.modules.update(torch=None, timm=None, onnxscript=None); import pytest; "
                 "sys.exit(pytest.main(['--collect-only', '-q', '-p', 'no:cacheprovider', 'test']))")


def test_every_test_module_collects_without_torch():
    """A ROS machine has no torch: collection must still list every test.

    The training ones are skipped when run. Where launch_testing is installed its pytest plugin is loaded
    too, as under `colcon test`.
    """
    proc = subprocess.run([sys.executable, "-c", WITHOUT_TORCH], cwd=ROOT, env=ENV, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    collected = {line.split("::")[0] for line in proc.stdout.splitlines() if "::" in line}
    assert collected == {f"test/{p.name}" for p in (ROOT / "test").glob("test_*.py")}


# ---------------------------------------------------------------- pip install

SOURCES = ("setup.py", "setup.cfg", "package.xml", "README.md", "resource", "launch", "config", "models", PACKAGE)


def _source_copy(dest: Path) -> Path:
    """Copy what setup.py needs (the build writes build/ and *.egg-info next to setup.py)."""
    dest.mkdir()
    for name in SOURCES:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif src.exists():
            shutil.copy2(src, dest / name)
    return dest


@pytest.mark.skipif(importlib.util.find_spec("pip") is None, reason="pip is not installed for this Python")
def test_pip_install_puts_the_node_executables_where_ros2_looks(tmp_path):
    """Pip ignores setup.cfg's install_scripts: lib/<package>/<node> must still exist after `pip install`."""
    src = _source_copy(tmp_path / "src")
    prefix = tmp_path / "prefix"
    # --ignore-installed: without it pip would first uninstall this venv's own (editable) install
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
                           "--ignore-installed", "-q", "--prefix", str(prefix), str(src)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lib = prefix / "lib" / PACKAGE
    for node in NODES:
        assert os.access(lib / node, os.X_OK), f"{lib / node} is missing or not executable"
        script = (prefix / "bin" / node).read_text()  # what the launcher runs: pip's console script
        assert f"from {PACKAGE}.nodes.{node} import main" in script
    assert (prefix / "share" / PACKAGE / "launch" / "autofocus.launch.py").is_file()
    assert (prefix / "share" / "ament_index" / "resource_index" / "packages" / PACKAGE).is_file()
    # the launcher starts the real node: a gpio stepper without pins refuses to start with exit code 2
    site = next(prefix.glob("lib/python3*/site-packages"))
    env = dict(ENV, PYTHONPATH=os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]))
    run = subprocess.run([str(lib / "stepper_controller_node"), "--ros-args", "-p", "backend:=gpio"], cwd=tmp_path,
                         env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "needs the step_pin and dir_pin" in run.stdout + run.stderr, run.stderr


def test_colcon_style_install_keeps_the_console_scripts_in_lib(tmp_path):
    """Colcon runs `setup.py install`, which honours setup.cfg: the console scripts themselves go to lib/."""
    src = _source_copy(tmp_path / "src")
    prefix = tmp_path / "prefix"
    site = prefix / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    site.mkdir(parents=True)
    (tmp_path / "egg").mkdir()
    proc = subprocess.run([sys.executable, "setup.py", "egg_info", "--egg-base", str(tmp_path / "egg"),
                           "install", "--prefix", str(prefix), "--single-version-externally-managed",
                           "--record", str(tmp_path / "record.txt")],
                          cwd=src, env=dict(os.environ, PYTHONPATH=str(site)), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for node in NODES:
        script = (prefix / "lib" / PACKAGE / node).read_text()
        assert script.startswith(f"#!{sys.executable}") and f"'console_scripts', '{node}'" in script, script
    assert not (prefix / "bin").exists()


# ---------------------------------------------------------------- package.xml

#: module -> rosdep key, where they differ (ROS packages import under their own name)
ROSDEP_KEYS = {
    "numpy": "python3-numpy", "cv2": "python3-opencv", "yaml": "python3-yaml", "tqdm": "python3-tqdm",
    "matplotlib": "python3-matplotlib", "onnxruntime": "python3-onnxruntime-pip", "rosbags": "python3-rosbags-pip",
    "tifffile": "python3-tifffile-pip", "serial": "python3-serial", "gpiozero": "python3-gpiozero",
    "scipy": "python3-scipy", "onnx": "python3-onnx-pip",
}
#: imported, deliberately not a dependency of the ROS package
NOT_DEPENDENCIES = {
    "torch": "training only: the [train] extra on a workstation",
    "timm": "training only: the [train] extra on a workstation",
    "picamera2": "Raspberry Pi OS ships it; only the picamera2 camera backend imports it",
}
TRAINING = ("training",)  # modules imported only here may be test_depends (the training tests use them)


def _third_party_imports() -> dict[str, set[str]]:
    """Top-level module -> the package folders (core, nodes, training, ...) importing it."""
    found: dict[str, set[str]] = {}
    for path in (ROOT / PACKAGE).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top != PACKAGE:
                    found.setdefault(top, set()).add(path.relative_to(ROOT / PACKAGE).parts[0])
    return found


def _depends() -> dict[str, set[str]]:
    root = ET.parse(ROOT / "package.xml").getroot()
    return {tag: {e.text.strip() for e in root.iter(tag)} for tag in ("depend", "exec_depend", "test_depend")}


def test_package_xml_declares_every_third_party_import():
    deps = _depends()
    runtime = deps["depend"] | deps["exec_depend"]
    imports = _third_party_imports()
    assert {"rclpy", "numpy", "onnxruntime"} <= set(imports)  # the scan works
    missing = []
    for module, where in sorted(imports.items()):
        if module in NOT_DEPENDENCIES:
            continue
        key = ROSDEP_KEYS.get(module, module)
        allowed = runtime | deps["test_depend"] if where <= set(TRAINING) else runtime
        if key not in allowed:
            missing.append(f"{module} ({key}, imported in {', '.join(sorted(where))})")
    assert missing == []


def test_package_xml_test_and_lint_depends():
    tests = _depends()["test_depend"]
    assert {"python3-pytest", "launch_testing", "launch_testing_ros", "ament_copyright", "ament_flake8",
            "ament_pep257", "ament_xmllint"} <= tests


def test_pip_keys_missing_from_rosdistro_are_defined_in_rosdep_yaml():
    """Rosdistro has no tifffile or onnx key (checked in rosdep/python.yaml): rosdep.yaml defines them."""
    import yaml

    defined = yaml.safe_load((ROOT / "rosdep.yaml").read_text())
    deps = _depends()
    used = deps["exec_depend"] | deps["test_depend"]
    for key in ("python3-tifffile-pip", "python3-onnx-pip"):
        assert key in used and set(defined[key]) >= {"debian", "ubuntu"}
