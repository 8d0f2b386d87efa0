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

"""ament_python package; also installs with pip into a plain venv.

ROS 2 client libraries are deliberately NOT listed: on a ROS install they come from
the distro, elsewhere the Makefile installs them from requirements-ros.txt.

`ros2 run` and `ros2 launch` start ``<prefix>/lib/celegans_autofocus/<node>``. colcon puts the
console scripts there (setup.cfg's install_scripts); pip ignores that setting and puts them in
``<prefix>/bin``, so a wheel build also writes a launcher per node into lib/ (:class:`NodeLaunchers`).
"""
import os
from glob import glob
from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.install_scripts import install_scripts

PACKAGE = "celegans_autofocus"
NODES = [
    "camera_node",
    "worm_detector_node",
    "focus_predictor_node",
    "stepper_controller_node",
    "stack_player_node",
    "bag_recorder_node",
]
LAUNCHER = """#!/bin/sh
# {node} for `ros2 run` / `ros2 launch` after a pip install: the console script pip wrote into <prefix>/bin.
exec "$(dirname "$0")/../../bin/{node}" "$@"
"""


class NodeLaunchers(install_scripts):
    """install_scripts that also writes ``lib/<package>/<node>`` launchers into the data directory.

    Only when the scripts do not go there already (a wheel, as pip builds it; colcon's
    install_scripts=lib/<package> needs none).
    """

    def run(self):
        super().run()
        lib = Path(self.get_finalized_command("install").install_data) / "lib" / PACKAGE
        if Path(self.install_dir).resolve() == lib.resolve():
            return
        lib.mkdir(parents=True, exist_ok=True)
        for node in NODES:
            path = lib / node
            path.write_text(LAUNCHER.format(node=node))
            os.chmod(path, 0o755)
            self.outfiles.append(str(path))


setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test", "test.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.xml")),
        (f"share/{PACKAGE}/models", glob("models/*.onnx") + glob("models/*.md")),
    ],
    python_requires=">=3.10",
    install_requires=[
        "numpy>=1.23",
        "opencv-python-headless>=4.6",
        "onnxruntime>=1.16",
        "pyyaml>=6",
        "tqdm>=4.60",
        "tifffile>=2022.5",
        "rosbags>=0.10",
        "matplotlib>=3.6",
    ],
    extras_require={
        "train": [
            "torch>=2.1",
            "torchvision>=0.16",
            "timm>=0.9",
            "onnx>=1.15",
            "onnxscript>=0.1",
            "scipy>=1.10",
            "matplotlib>=3.6",
        ],
        "hardware": ["pyserial>=3.5", "gpiozero>=2.0"],
        "test": ["pytest>=7,<9", "pyserial>=3.5", "gpiozero>=2.0", "onnx>=1.15", "scipy>=1.10"],
    },
    zip_safe=True,
    maintainer="celegans_autofocus maintainers",
    description="One-shot CNN autofocus for C. elegans tracking microscopes (ROS 2).",
    license="Apache-2.0",
    cmdclass={"install_scripts": NodeLaunchers},
    entry_points={
        "console_scripts": [f"{PACKAGE.replace('_', '-')}={PACKAGE}.cli:main"]
        + [f"{n}={PACKAGE}.nodes.{n}:main" for n in NODES],
    },
)
